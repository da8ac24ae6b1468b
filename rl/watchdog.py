"""PPO watchdogs: pure decisions over the logged history, no model and no I/O.

Two failure modes end a PPO run early (rl/ppo.py then rolls back to the last good checkpoint and
says so):
- drift: the KL to the reference passes a hard limit, whatever the reward says;
- reward hacking (Gao et al. 2022; the length and EOS pathologies of Huang et al. 2024): the
  reward model's score rises while responses grow much longer, stop ending with EOS, or the score
  becomes mostly a function of length. A rising score is required for these three: a policy that
  gets longer while its score falls is bad, but it is not hacking the reward model.

"start" is the mean of the first `window` iterations, "recent" the mean of the last `window`
(including the current one); the hacking rules wait until the two do not overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_kl: float = 0.0  # KL per response, nats; 0 = off (same for every limit)
    max_length_ratio: float = 0.0
    max_eos_drop: float = 0.0
    max_reward_length_corr: float = 0.0
    window: int = 5

    @classmethod
    def from_config(cls, cfg) -> "Limits":
        return cls(cfg.max_kl, cfg.max_length_ratio, cfg.max_eos_drop, cfg.max_reward_length_corr,
                   cfg.watch_window)


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    return sum(vals) / len(vals) if vals else math.nan


def check(history: list[dict], current: dict, limits: Limits) -> str | None:
    """Why the run must stop now, or None. `history` holds the earlier iterations' metrics and
    `current` this one's, each with kl, score, response_length, eos_rate, reward_length_corr."""
    if limits.max_kl and current["kl"] > limits.max_kl:
        return f"KL to the reference {current['kl']:.3f} nats passed the limit max_kl={limits.max_kl:g}"
    rows, w = history + [current], max(1, limits.window)
    if len(rows) < 2 * w:
        return None
    start, recent = rows[:w], rows[-w:]
    score0, score1 = _mean(start, "score"), _mean(recent, "score")
    if not score1 > score0:  # also False for NaN
        return None
    rising = f"the reward-model score rose {score0:.3f} → {score1:.3f} while"
    len0, len1 = _mean(start, "response_length"), _mean(recent, "response_length")
    if limits.max_length_ratio and len1 > limits.max_length_ratio * len0:
        return (f"reward hacking: {rising} the mean response length grew {len0:.1f} → {len1:.1f} tokens "
                f"(> max_length_ratio={limits.max_length_ratio:g} × start)")
    eos0, eos1 = _mean(start, "eos_rate"), _mean(recent, "eos_rate")
    if limits.max_eos_drop and eos1 < eos0 - limits.max_eos_drop:
        return (f"reward hacking: {rising} the EOS rate fell {eos0:.2f} → {eos1:.2f} "
                f"(more than max_eos_drop={limits.max_eos_drop:g})")
    corr = _mean(recent, "reward_length_corr")
    if limits.max_reward_length_corr and corr > limits.max_reward_length_corr:
        return (f"reward hacking: {rising} the score-length correlation averaged {corr:.2f} "
                f"(> max_reward_length_corr={limits.max_reward_length_corr:g})")
    return None
