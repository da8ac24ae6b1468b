"""On-policy pairs for DPO: answers sampled from the starting policy, ranked by the reward model.

For every training prompt (the run's, as PPO and RLOO use them, or else the preference file's)
the starting policy (the SFT adapter, or the previous round's DPO adapter in a loop) answers
`onpolicy_samples` times; the reward model scores the answers, and the best against the worst
becomes a pair when their scores differ by at least `onpolicy_min_gap` (in the reward model's
standard deviations over its training answers, the same normalization PPO and RLOO use:
rl/pg_inputs.py). This is the "best-of-N vs worst-of-N" recipe of iterative DPO (Xiong et al.
2024, "Iterative Preference Learning from Human Feedback"; Dong et al. 2024, "RLHF Workflow";
Llama 3's rejection-sampled preference pairs), and the pairs of West-of-N (Pace et al. 2024). Why
it can help where the annotators' pairs are already the policy's own samples:
- the reward model picks from k answers, not 2, so the chosen answer is the policy's best one and
  the rejected its worst: a larger, clearer gap than two random samples;
- DPO learns from the policy's own distribution (Tajwar et al. 2024: preference fine-tuning
  gains most from on-policy, "negative-gradient" data), and every training prompt can give a
  pair, also those whose human pair was dropped as a tie or as "both bad" or never collected.
It helps only as far as the reward model ranks well: on the demo, pairs ranked by its plain reward
model taught DPO little, and pairs ranked by one trained with mismatched negatives cut harmful
help without lifting the win rates beyond the noise (docs/demo-results.md, "On-policy DPO").

The reward model thereby labels pairs, the way it gives PPO its reward; it never sees the
held-out pairs' labels. The pairs are written to <out>/onpolicy_pairs.jsonl with both scores, so
a person can read what the reward model preferred.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from core.io import read_jsonl, write_jsonl
from core.prompts import prompt_key, prompt_value

PAIRS_FILE = "onpolicy_pairs.jsonl"


def distinct_prompts(prompts: Sequence) -> list:
    """Each prompt once (the same core.prompts.prompt_key counts as the same prompt), in order."""
    seen, out = set(), []
    for prompt in prompts:
        key = prompt_key(prompt)
        if key not in seen:
            seen.add(key)
            out.append(prompt)
    return out


def sampling_prompts(cfg, rows: Sequence[dict]) -> tuple[list, Path | None]:
    """(prompts, the file they came from): `onpolicy_prompts`; else the run's prompts file when it
    exists (rows tagged 'eval' left out, rl/pg_inputs.py); else the preference rows' prompts (None)."""
    from rl.pg_inputs import load_train_prompts

    path = Path(cfg.onpolicy_prompts) if cfg.onpolicy_prompts else Path(cfg.run) / "data" / "prompts.jsonl"
    if cfg.onpolicy_prompts or path.exists():
        return distinct_prompts(load_train_prompts(path)), path
    return distinct_prompts([r["prompt"] for r in rows]), None


def best_worst(answers: Sequence[str], scores: Sequence[float], min_gap: float) -> tuple[int, int] | None:
    """(best, worst) indices among one prompt's answers, or None when no pair qualifies.

    Empty answers never count; of identical answers (after stripping) only the first does, so a
    pair never holds one text twice. Ties go to the earlier answer. None when fewer than two
    distinct answers remain or the best score exceeds the worst by less than min_gap."""
    seen, keep = set(), []
    for i, a in enumerate(answers):
        text = a.strip()
        if text and text not in seen:
            seen.add(text)
            keep.append(i)
    if len(keep) < 2:
        return None
    best = max(keep, key=lambda i: (scores[i], -i))
    worst = min(keep, key=lambda i: (scores[i], i))
    if scores[best] - scores[worst] < min_gap:
        return None
    return best, worst


def pairs_from_samples(prompts: Sequence, samples: Sequence[Sequence[str]], scores: Sequence[Sequence[float]],
                       min_gap: float) -> list[dict]:
    """Pairs from k answers per prompt: samples[s][i] is prompt i's s-th answer, scores[s][i] its score."""
    rows = []
    for i, prompt in enumerate(prompts):
        answers = [s[i] for s in samples]
        values = [float(s[i]) for s in scores]
        pick = best_worst(answers, values, min_gap)
        if pick is None:
            continue
        b, w = pick
        rows.append({"prompt": prompt_value(prompt), "chosen": answers[b], "rejected": answers[w],
                     "chosen_score": round(values[b], 4), "rejected_score": round(values[w], 4),
                     "source": "onpolicy"})
    return rows


def sample_answers(model, tok, prompts: list, k: int, *, seed: int, temperature: float, max_new_tokens: int,
                   batch_size: int) -> list[list[str]]:
    """k sampled answers per prompt, with a progress bar; the s-th round of samples uses seed + s."""
    from tqdm.auto import tqdm

    from core.generation import generate

    out = []
    with tqdm(total=k * len(prompts), unit="answer", desc="dpo on-policy samples", dynamic_ncols=True) as bar:
        for s in range(k):
            answers = []
            for i in range(0, len(prompts), batch_size):
                chunk = prompts[i: i + batch_size]
                answers += generate(model, tok, chunk, max_new_tokens=max_new_tokens, temperature=temperature,
                                    batch_size=batch_size, seed=seed + 7919 * s + i)
                bar.update(len(chunk))
            out.append(answers)
    return out


def build_pairs(cfg, rows: Sequence[dict], model_path: Path, sft_path: Path, reward_path: Path, out: Path,
                policy, tok, reward_fn=None) -> tuple[list[dict], dict]:
    """Sample, score and pair (the module docstring); returns (pairs, stats). With `resume` and a
    pairs file in `out`, that file is read instead, so a resumed run trains on the same pairs.
    `reward_fn(prompts, responses) -> scores` replaces the reward model (tests)."""
    from core.models import load_policy
    from rl.pg_inputs import load_reward_fn

    path = out / PAIRS_FILE
    if cfg.resume and path.exists():
        pairs = read_jsonl(path)
        print(f"[dpo] resume: {len(pairs)} on-policy pairs from {path}")
        return pairs, {"onpolicy_pairs": len(pairs), "onpolicy_reused": True}
    prompts, source = sampling_prompts(cfg, rows)
    t0 = time.time()
    model = load_policy(model_path, policy, tok, adapter=sft_path, load_in_4bit=cfg.load_in_4bit)
    samples = sample_answers(model, tok, prompts, cfg.onpolicy_samples, seed=cfg.seed,
                             temperature=cfg.onpolicy_temperature, max_new_tokens=cfg.onpolicy_max_new_tokens,
                             batch_size=cfg.onpolicy_batch_size)
    del model
    sample_seconds = time.time() - t0
    if reward_fn is None:
        reward_fn, _ = load_reward_fn(reward_path, cfg.run, policy.device)
    scores = [reward_fn(prompts, s) for s in samples]  # the scorer runs without gradients
    pairs = pairs_from_samples(prompts, samples, scores, cfg.onpolicy_min_gap)
    write_jsonl(path, pairs)
    gaps = [p["chosen_score"] - p["rejected_score"] for p in pairs]
    stats = {"onpolicy_prompts": len(prompts), "onpolicy_pairs": len(pairs),
             "onpolicy_mean_gap": round(sum(gaps) / len(gaps), 4) if gaps else None,
             "onpolicy_sample_seconds": round(sample_seconds, 1),
             "onpolicy_seconds": round(time.time() - t0, 1)}
    print(f"[dpo] {len(pairs)} on-policy pairs from {len(prompts)} prompts ({source or 'the preference file'}) "
          f"x {cfg.onpolicy_samples} answers (reward gap >= {cfg.onpolicy_min_gap}) → {path}")
    return pairs, stats
