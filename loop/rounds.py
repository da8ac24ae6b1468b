"""Rounds: round k+1 of the loop collects comparison items from round k's policies and trains on
what every round has collected (core/rounds.py says where each round lives).

Round k >= 2, after round k-1's eval:
    collect  items in the run's one annotation store, tagged round k: samples of round k-1's best
             policy (`best_policy`) against the best policy of the round before (round 2: SFT) and
             against SFT; then votes (people in the app, or the demo's simulated annotators);
             this round's pairs go to <round>/collect/preferences.jsonl and every round's to
             <round>/collect/preferences_all.jsonl
    reward   retrained from the backbone on every round's pairs (preferences_all.jsonl); or, with
             round_reward "continue", trained further from round k-1's reward model on them
    dpo      continues round k-1's DPO adapter on this round's new pairs, with that adapter as
             the reference: iterative DPO (Xu et al. 2023, "Some things are more cringe than
             others"; Yuan et al. 2024, "Self-rewarding language models"); or, with
             round_dpo_pairs "all", on every round's pairs so far (the demo's choice: on its
             400-odd new pairs a round, DPO barely moved, see demo/sizes.py)
    ppo/rloo continue round k-1's adapters against the new reward model (the `init` option),
             with SFT still the KL reference (Touvron et al. 2023 trained Llama 2-Chat over five
             rounds of fresh preferences)
    eval     SFT and this round's policies; eval/rounds.py adds the comparison with round k-1

Why PPO and RLOO keep SFT as the reference: with round k-1's policy as the reference each round
gets a fresh KL budget, and on the demo (seed 0) both drifted further from SFT (KL 1.5 -> 2.5 nats
for PPO) while the new reward model's win rate over round 1 rose and gold's fell (PPO greedy:
0.71 by the reward model, 0.25 by gold). DPO has no reward model to over-optimize; its implicit
reward is defined against the policy that produced the starting point.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from core import registry
from core.config import UserError
from core.io import read_jsonl, write_json, write_jsonl
from core.rounds import STORE_ROUND, locate, round_dir

from .collect import AwaitingVotes, CollectConfig, count_pairs, waiting_message

NEW_PAIRS = "preferences.jsonl"  # this round's pairs (DPO's data)
ALL_PAIRS = "preferences_all.jsonl"  # every round's pairs so far (the reward model's data)


@dataclass
class RoundCollectConfig(CollectConfig):
    """Round k >= 2's annotation step; `run` is the round's directory (core/rounds.py)."""
    round: int = 2
    policy: str = "auto"  # whose samples the items carry: auto (best_policy) or an RL algorithm
    first_preferences: str = ""  # round 1's pairs: the loop's --preferences or <run>/collect/preferences.jsonl


def store_url(root: Path, db: str) -> str:
    """The run's one annotation store: db, else round 1's SQLite file."""
    return db or str(root / "collect" / "annotations.db")


def store_round(cfg: RoundCollectConfig) -> int:
    """The round number round k's items carry in the store: k, unless the store already holds
    items of round k or later that this attempt did not make (an earlier attempt at round k
    whose inputs have changed since, or items imported by hand): then the next free number, so
    the old items keep their votes and are never exported as this round's. Kept in
    <round>/collect/store_round.json while the attempt lasts (forget_store_round)."""
    from sqlalchemy import func, select

    from collect.commands import store_for
    from collect.store import Item

    path = Path(cfg.run) / "collect" / STORE_ROUND
    if path.exists():
        return json.loads(path.read_text())["round"]
    root, k = locate(cfg.run)
    store = store_for(root, store_url(root, cfg.db))
    try:
        with store.read() as s:
            highest = s.scalar(select(func.max(Item.round))) or 0
    finally:
        store.close()
    number = k if highest < k else highest + 1
    write_json(path, {"round": number, "loop_round": k})
    return number


def forget_store_round(out: Path, status: str) -> None:
    """Stage.on_fresh of collect@k: a new attempt (other inputs) takes a new store round."""
    if status == "stale":
        (out / STORE_ROUND).unlink(missing_ok=True)


def best_policy(prev: Path, choice: str = "auto") -> str:
    """Round `prev`'s policy whose samples the next round's items carry. auto: the RL policy with
    the highest win rate over SFT by people's blind A/B votes where there are any, else by the
    reward model (sampled decoding first, as the policy would be served). Never the gold oracle:
    it is a measurement, not a part of the loop."""
    if choice != "auto":
        return choice
    path = prev / "eval" / "metrics.json"
    if not path.exists():
        raise UserError(f"{path}: missing; the next round picks its policy from this round's eval")
    rates = [w for w in json.loads(path.read_text())["win_rates"]
             if w["b"] == "sft" and w["a"] in registry.names() and w.get("win_rate") is not None]
    for judge in ("human", "reward"):
        for decoding in ("sampled", "greedy"):
            found = [w for w in rates if w["judge"] == judge and w.get("decoding", "sampled") == decoding]
            if found:
                return max(found, key=lambda w: w["win_rate"])["a"]
    found = [a for a in registry.names() if (prev / a / "adapter_config.json").exists()]
    if not found:
        raise UserError(f"{prev}: no RL policy to sample the next round's items from")
    return found[0]


def rivals(root: Path, k: int) -> list[str]:
    """What round k's items compare the best policy with: the best policy of round k-2 (as an
    adapter directory; round 2 has none before SFT) and SFT."""
    if k <= 2:
        return ["sft"]
    before = json.loads((round_dir(root, k - 1) / "collect" / "metrics.json").read_text())["policy"]
    return [str(round_dir(root, k - 2) / before), "sft"]


def sample_items(cfg: RoundCollectConfig) -> dict:
    """Store round k's comparison items (a re-run stores only the missing ones)."""
    from collect.generate import generate_pairs

    root, k = locate(cfg.run)
    prev = round_dir(root, k - 1)
    best = best_policy(prev, cfg.policy)
    against = rivals(root, k)
    per_rival, number = max(1, cfg.n_pairs // len(against)), store_round(cfg)
    for other in against:
        generate_pairs(prev, policy=best, vs=other, n=per_rival, temperature=cfg.temperature, top_p=cfg.top_p,
                       max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed + k,
                       device=cfg.device, threads=cfg.threads,
                       tokenizer_fixes={"eos_token": cfg.eos_token, "chat_template": cfg.chat_template},
                       db=store_url(root, cfg.db), round_no=number, workers=cfg.workers)
    return {"round": k, "store_round": number, "policy": best, "from_round": k - 1, "vs": against}


def previous_pairs(cfg: RoundCollectConfig) -> Path:
    root, k = locate(cfg.run)
    if k == 2:
        return Path(cfg.first_preferences) if cfg.first_preferences else root / "collect" / "preferences.jsonl"
    return round_dir(root, k - 1) / "collect" / ALL_PAIRS


def write_pairs(cfg: RoundCollectConfig, min_agreement: float = 0.0) -> dict:
    """This round's pairs, and every round's (the previous file's rows, marked round 1 where they
    carry no round, then this round's)."""
    from collect.commands import export

    root, k = locate(cfg.run)
    out = Path(cfg.run) / "collect"
    stats = export(root, min_agreement=min_agreement, min_votes=cfg.min_votes, db=store_url(root, cfg.db),
                   round_no=store_round(cfg), out=out / NEW_PAIRS)
    before = [{"round": 1, **row} for row in read_jsonl(previous_pairs(cfg))]
    write_jsonl(out / ALL_PAIRS, before + read_jsonl(out / NEW_PAIRS))
    return {"n_items": stats["n_items"], "n_pairs": stats["n_pairs"], "n_pairs_all": len(before) + stats["n_pairs"],
            "excluded": stats["excluded"], "flagged_annotators": stats["flagged_annotators"]}


def people_votes(cfg: RoundCollectConfig, argv: list[str] | None = None) -> None:
    """The annotators' votes on this round's items: stop (AwaitingVotes) until they give enough pairs."""
    root, k = locate(cfg.run)
    number = store_round(cfg)
    n_pairs, stats = count_pairs(root, cfg.min_votes, cfg.db, round_no=number)
    if n_pairs < cfg.min_pairs:
        raise AwaitingVotes(waiting_message(root, n_pairs, stats, cfg.min_pairs, argv, cfg.db, round_no=number))


def collect_round(cfg: RoundCollectConfig, votes: Callable[[RoundCollectConfig], dict | None]) -> dict:
    """Round k's annotation step: items, votes (`votes(cfg)`: people_votes, or simulated ones),
    the pairs files and <round>/collect/metrics.json."""
    info = sample_items(cfg)
    extra = votes(cfg) or {}
    metrics = {**info, **write_pairs(cfg, min_agreement=extra.pop("min_agreement", 0.0)), **extra}
    write_json(Path(cfg.run) / "collect" / "metrics.json", metrics)
    print(f"[loop] round {info['round']}: {metrics['n_pairs']} new pairs ({info['policy']} of round "
          f"{info['from_round']} vs {', '.join(Path(v).name for v in info['vs'])}), "
          f"{metrics['n_pairs_all']} over every round")
    return metrics


def round_configs(configs: dict, root: Path, k: int, collect: CollectConfig, policy: str,
                  first_preferences: str, dpo_pairs: str = "new", reward_from: str = "anew") -> dict:
    """Round k's stage configs: round 1's (`configs`, loop.run.stage_configs) on round k's
    directory, with the inputs the module docstring lists."""
    run, prev = round_dir(root, k), round_dir(root, k - 1)
    out = {"collect": RoundCollectConfig(**{**vars(collect), "run": str(run)}, round=k, policy=policy,
                                         first_preferences=first_preferences),
           "reward": replace(configs["reward"], run=str(run), data=str(run / "collect" / ALL_PAIRS),
                             init=str(prev / "reward") if reward_from == "continue" else "")}
    for a in registry.ALGORITHMS:
        if "preferences" in a.inputs:  # DPO: the previous round's adapter is start and reference
            changes = {"sft": str(prev / a.name), "data": str(run / "collect" / (ALL_PAIRS if dpo_pairs == "all"
                                                                                 else NEW_PAIRS))}
        else:  # PPO, RLOO: start from it, the reference stays SFT
            changes = {"init": str(prev / a.name)}
        out[a.name] = replace(configs[a.name], run=str(run), **changes)
    store = store_url(root, collect.db)
    out["eval"] = replace(configs["eval"], run=str(run), policies=",".join(("sft", *registry.names())), db=store)
    return out
