"""What reward training adds for a later round of the loop (loop/rounds.py): weights by round, and
continuing an earlier round's reward model instead of starting from a new head.

Weighting the newest round's pairs up trains the model hardest where the current policy's answers
are, the distribution the next RL update will be scored on. Continuing from the previous round's
model keeps what it learned, so fewer passes over every round's pairs can reach the same accuracy.
The hold-out rule (core/split.py) keeps a prompt on the same side in every round with the same seed
and val_fraction, so a continued model never trained on this round's held-out prompts.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.config import ConfigError, MissingFileError, RewardConfig
from core.device import DevicePolicy
from reward.model import META_FILE, load_reward_model, new_aspect_head


def round_weights(rows: list[dict], recent_weight: float) -> list[float]:
    """Per-pair loss weights: `recent_weight` for the newest round's pairs, 1 for earlier rounds'
    (a pair without a round counts as round 1), scaled to mean 1 so the learning rate keeps its
    meaning. One round, or recent_weight 1: every weight is 1."""
    rounds = [r.get("round") or 1 for r in rows]
    newest = max(rounds, default=1)
    raw = [recent_weight if k == newest and min(rounds) < newest else 1.0 for k in rounds]
    mean = sum(raw) / len(raw) if raw else 1.0
    return [w / mean for w in raw]


def check_init(cfg: RewardConfig, model_path: Path) -> None:
    """`init` must be a reward model trained from the backbone this run names (a user error otherwise)."""
    meta_path = Path(cfg.init) / META_FILE
    if not meta_path.exists():
        raise MissingFileError(f"key 'init': {cfg.init} is not a reward model directory (no {META_FILE})")
    base = json.loads(meta_path.read_text())["base_model"]
    if Path(base).resolve() != model_path.resolve():
        raise ConfigError(f"key 'init': {cfg.init} was trained from {base}, not from this run's model {model_path}")


def continued_model(cfg: RewardConfig, policy: DevicePolicy, aspect_heads: bool):
    """The reward model in cfg.init, to train further: backbone (or LoRA adapter), score head and
    aspect head as saved; a new aspect head when it has none and the data has ratings."""
    rm, _, _ = load_reward_model(cfg.init, policy.device, trainable=True)
    if aspect_heads and rm.aspect_head is None:
        rm.aspect_head = new_aspect_head(rm.hf_model.config.hidden_size).to(policy.device)
    elif not aspect_heads:
        rm.aspect_head = None
    rm.reward_type, rm.aspect_weights = cfg.reward_type, dict(cfg.aspect_weights)
    rm.gate_threshold, rm.gate_scale = cfg.gate_threshold, cfg.gate_scale
    return rm.train()
