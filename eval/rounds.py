"""Round k against round k-1, in round k's eval (core/rounds.py: round k >= 2 is <run>/rounds/<k>/).

Three things, in metrics.json's `rounds`:
- `win_rates`: each RL policy of round k against the same algorithm's policy of round k-1 on the
  held-out prompts, greedy and sampled, from both rounds' eval samples: by the gold judge (when
  there is one) and by round k's reward model, which re-scores round k-1's answers so both sides
  are judged by one model; each with its style-controlled rate (eval/style_control.py).
- `reward_on_new_items`: the reward models of rounds k-1 and k on round k's new pairs: the ones
  round k's reward model held out (`heldout`), which neither model trained on, and, for round
  k-1's model, every round-k pair (`all`, none of which it saw). Accuracy against the annotators'
  labels, and against the gold judge on the pairs gold decides (eval.gold.gold_agreement).
- `proxy_vs_gold`: per round and policy, the mean gain over SFT by that round's reward model (the
  proxy the policy was trained on) and by the gold judge, on sampled answers: the points of
  Gao et al. (2022)'s proxy-vs-gold picture, round after round.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core import registry
from core.io import read_jsonl
from core.prompts import prompt_text
from core.rounds import rounds_up_to, store_round_of
from eval.metrics import outcomes, win_rate_with_ci
from eval.style_control import style_controlled_win_rate


def _by_prompt(rows: list[dict], policy: str, decoding: str) -> dict[str, dict]:
    return {r["prompt"]: r for r in rows
            if r["policy"] == policy and r["decoding"] == decoding and r["set"] == "heldout"}


def round_win_rates(now: list[dict], before: list[dict], prompts: dict[str, object], scorer,
                    n_boot: int, seed: int) -> list[dict]:
    """now/before: eval sample rows of rounds k and k-1; prompts: prompt text -> the prompt as
    the reward model takes it."""
    out = []
    for alg in registry.names():
        for decoding in ("greedy", "sampled"):
            a, b = _by_prompt(now, alg, decoding), _by_prompt(before, alg, decoding)
            common = [p for p in a if p in b]
            if not common:
                continue
            ra, rb = [a[p]["response"] for p in common], [b[p]["response"] for p in common]
            judged = {}
            if all(a[p]["overall"] is not None and b[p]["overall"] is not None for p in common):
                judged["gold"] = ([a[p]["overall"] for p in common], [b[p]["overall"] for p in common])
            if scorer is not None:
                asked = [prompts.get(p, p) for p in common]
                judged["reward"] = (scorer.score(asked, ra), scorer.score(asked, rb))
            for judge, (sa, sb) in judged.items():
                style = style_controlled_win_rate(ra, rb, outcomes(sa, sb), n_boot=n_boot, seed=seed)
                out.append({"policy": alg, "judge": judge, "decoding": decoding,
                            **win_rate_with_ci(sa, sb, n_boot=n_boot, seed=seed), "style_controlled": style})
    return out


def _accuracy(scorer, rows: list[dict], judge) -> dict:
    """A reward model on preference rows: accuracy against the labels, and against gold."""
    from eval.gold import gold_agreement

    import torch

    if not rows:
        return {"n": 0}
    asked = [r["prompt"] for r in rows]
    delta = torch.tensor(scorer.score(asked, [r["chosen"] for r in rows])) - \
        torch.tensor(scorer.score(asked, [r["rejected"] for r in rows]))
    out = {"n": len(rows), "accuracy": round(float((delta > 0).float().mean()), 4)}
    if judge is not None:
        texts = [prompt_text(p) for p in asked]
        if all(judge.recognises(t) for t in texts):
            diff = [judge.score(t, r["chosen"])["overall"] - judge.score(t, r["rejected"])["overall"]
                    for t, r in zip(texts, rows)]
            gold = gold_agreement(delta, diff)
            out.update({"accuracy_gold": gold.get("heldout_accuracy_gold"), "gold_pairs": gold["gold_pairs"]})
    return out


def reward_on_new_items(k: int, now: Path, before: Path, scorer, judge, device) -> dict | None:
    """Round k-1's and round k's reward models on round k's pairs (see the module docstring)."""
    from reward.score import load_scorer

    val, train = now / "reward" / "val.jsonl", now / "reward" / "train.jsonl"
    if scorer is None or not val.exists() or not (before / "reward").exists():
        return None
    number = store_round_of(now)  # the round number the store gave round k's items
    heldout = [r for r in read_jsonl(val) if r.get("round") == number]
    every = heldout + [r for r in read_jsonl(train) if r.get("round") == number] if train.exists() else heldout
    previous = load_scorer(before / "reward", device=device)
    return {"heldout": {"before": _accuracy(previous, heldout, judge), "after": _accuracy(scorer, heldout, judge)},
            "all": {"before": _accuracy(previous, every, judge)}}


def proxy_vs_gold(rounds: list[tuple[int, Path]], current: dict | None = None) -> list[dict]:
    """Per round and RL policy: mean gain over SFT by the round's reward model and by gold
    (sampled answers; gold None without a gold judge). current: round k's policies (its
    metrics.json is written after this runs)."""
    out = []
    for j, path in rounds:
        file = path / "eval" / "metrics.json"
        policies = current if j == rounds[-1][0] and current is not None else \
            json.loads(file.read_text())["policies"] if file.exists() else None
        if not policies or "sft" not in policies:
            continue
        base = policies["sft"].get("sampled") or policies["sft"]["greedy"]
        for alg in registry.names():
            if alg not in policies:
                continue
            mine = policies[alg].get("sampled") or policies[alg]["greedy"]
            gold = mine.get("gold_overall")
            out.append({"round": j, "policy": alg,
                        "proxy_gain": _gain(mine.get("rm_score"), base.get("rm_score")),
                        "gold_gain": _gain(gold, base.get("gold_overall"))})
    return out


def _gain(a, b):
    return None if a is None or b is None or np.isnan(a) or np.isnan(b) else round(float(a - b), 4)


def compare(run: str | Path, samples: list[dict], prompts: list, policies: dict, scorer, judge,
            n_boot: int, seed: int, device=None) -> dict | None:
    """metrics.json's `rounds` for round k's eval (None for a run's first round)."""
    rounds = rounds_up_to(run)
    if len(rounds) < 2:
        return None
    (j, before), (k, now) = rounds[-2], rounds[-1]
    path = before / "eval" / "samples.jsonl"
    out = {"round": k, "previous": j, "proxy_vs_gold": proxy_vs_gold(rounds, policies)}
    if not path.exists():
        return out | {"missing": str(path)}
    asked = {prompt_text(p): p for p in prompts}
    out["win_rates"] = round_win_rates(samples, read_jsonl(path), asked, scorer, n_boot, seed)
    out["reward_on_new_items"] = reward_on_new_items(k, now, before, scorer, judge, device)
    return out
