"""The demo's gold oracle as an eval judge (measurement only, never a training reward).

The oracle knows the demo shop's facts; for other data it cannot judge, so `applies` checks
that it recognises most of the held-out prompts before the eval uses it.
"""
from __future__ import annotations

import numpy as np


def applies(prompts: list[str], min_share: float = 0.5) -> bool:
    """True when the oracle recognises (parses) at least `min_share` of the prompts."""
    from demo import oracle

    if not prompts:
        return False
    return sum(oracle.recognises(p) for p in prompts) / len(prompts) >= min_share


def judge(prompts: list[str], responses: list[str]) -> dict[str, list]:
    """Per-row oracle verdicts: overall score (1-5), aspects, fact_correct (None: no fact to
    check), harmful and refusal flags."""
    from demo import oracle

    scores = [oracle.score(p, r) for p, r in zip(prompts, responses)]
    return {
        "overall": [s["overall"] for s in scores],
        "aspects": [{a: s[a] for a in oracle.ASPECTS} for s in scores],
        "fact_correct": [oracle.fact_correct(p, r) for p, r in zip(prompts, responses)],
        "harmful": [oracle.is_harmful(p, r) for p, r in zip(prompts, responses)],
        "refusal": [oracle.is_refusal(p, r) for p, r in zip(prompts, responses)],
    }


def summarize(verdicts: dict[str, list]) -> dict[str, float | dict]:
    """Means of `judge`'s per-row verdicts: gold_overall, fact_accuracy (over checkable rows),
    aspects."""
    checked = [f for f in verdicts["fact_correct"] if f is not None]
    aspects = verdicts["aspects"]
    return {
        "gold_overall": float(np.mean(verdicts["overall"])) if verdicts["overall"] else float("nan"),
        "fact_accuracy": float(np.mean(checked)) if checked else float("nan"),
        "aspects": {a: float(np.mean([row[a] for row in aspects])) for a in (aspects[0] if aspects else {})},
    }
