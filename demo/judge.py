"""The demo's gold oracle as the judge the stages take, and the rule for when the CLI passes it.

A run is a demo run when its data came from `rlhf data demo`, which records `"domain": "demo"` in
<run>/data/metrics.json. For a demo run `rlhf reward` and `rlhf eval` get the oracle as their gold
judge (the reward model's accuracy against gold, the eval's gold columns and safety verdicts); for
any other run they get none and report no gold numbers. `rlhf demo` always passes it.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from demo import oracle

DOMAIN = "demo"  # the value of "domain" in <run>/data/metrics.json


def is_demo_run(run: str | Path) -> bool:
    path = Path(run) / "data" / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("domain") == DOMAIN
    except (OSError, ValueError, AttributeError):
        return False


def eval_judge(run: str | Path):
    """The judge for `rlhf eval --run RUN`: the oracle for a demo run, else None."""
    return oracle if is_demo_run(run) else None


def reward_gold():
    """The reward stage's gold metrics with the oracle as judge (reward.train.GoldMetrics)."""
    from eval.gold import reward_gold_metrics

    return partial(reward_gold_metrics, oracle)


def reward_gold_for_run(run: str | Path):
    """The gold metrics for `rlhf reward --run RUN`: with the oracle for a demo run, else None."""
    return reward_gold() if is_demo_run(run) else None
