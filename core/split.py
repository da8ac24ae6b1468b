"""The one rule that holds out prompts, for every stage (SFT validation, reward model, DPO).

A prompt is held out when a hash of (seed, its key) falls below `val_fraction`; the key is
core.prompts.prompt_key (normalized text, system messages left out):

    u = int(sha256(f"{seed}:{key}")[:16], 16) / 2**64      # uniform in [0, 1)
    held out  ⇔  u < val_fraction

So the side a prompt lands on depends only on the prompt, the seed and the fraction: not on the
file's order, its other rows, the process (no salted `hash()`) or the stage reading it. The reward
model and DPO therefore hold out the same prompts from the same preference file, and adding rows
never moves an existing prompt to the other side. Every row of a prompt lands on the same side,
so nothing is validated on a question that was trained on.

The held-out share of prompts is val_fraction in expectation, not exactly. With at least two
distinct prompts both sides are non-empty: when no prompt falls below the threshold the one
with the smallest u is held out, and when all do the one with the largest u trains.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from core.config import UserError
from core.prompts import prompt_key


def held_out_score(key: str, seed: int) -> float:
    """u in [0, 1) for a prompt key: the first 64 bits of sha256("seed:key")."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_prompt(rows: Sequence[dict], val_fraction: float, seed: int = 0,
                    key: Callable[[dict], str] | None = None,
                    max_held_out: int | None = None) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows by the rule above; both keep the input order. `key(row)` defaults
    to prompt_key(row["prompt"]). val_fraction 0 holds nothing out. max_held_out caps the held-out
    prompts at the ones with the smallest u: the same as a lower fraction, so still nested."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(f"val_fraction must be a number, got {type(val_fraction).__name__}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rows = list(rows)
    if val_fraction == 0 or not rows:
        return rows, []
    key = key or (lambda r: prompt_key(r["prompt"]))
    keys = [key(r) for r in rows]
    scores = {k: held_out_score(k, seed) for k in keys}
    if len(scores) < 2:
        raise UserError(f"all {len(rows)} rows share one prompt ({keys[0][:60]!r}); holding out prompts "
                        "without leakage needs at least two")
    val_keys = {k for k, u in scores.items() if u < val_fraction}
    if not val_keys:
        val_keys = {min(scores, key=scores.get)}
    elif len(val_keys) == len(scores):
        val_keys.discard(max(scores, key=scores.get))
    if max_held_out is not None and len(val_keys) > max_held_out:
        val_keys = set(sorted(val_keys, key=scores.get)[:max(1, max_held_out)])
    train = [r for r, k in zip(rows, keys) if k not in val_keys]
    val = [r for r, k in zip(rows, keys) if k in val_keys]
    return train, val


def describe_split(train: Sequence[dict], val: Sequence[dict], key: Callable[[dict], Any] | None = None) -> dict:
    """Sizes of a split for metrics.json and run cards; n_shared_prompts should be 0."""
    key = key or (lambda r: prompt_key(r["prompt"]))
    train_keys, val_keys = {key(r) for r in train}, {key(r) for r in val}
    n = len(train) + len(val)
    return {"n_train": len(train), "n_val": len(val), "val_fraction": len(val) / n if n else 0.0,
            "n_train_prompts": len(train_keys), "n_val_prompts": len(val_keys),
            "n_shared_prompts": len(train_keys & val_keys)}
