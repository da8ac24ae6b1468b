"""`rlhf ppo`: PPO on the SFT LoRA policy against the reward model (our own loop: TRL has none).

The loop, checkpoints, watchdog rollback and run card are rl/pg_loop.py's, shared with RLOO; this
module is what PPO adds: a value function (an adapter + head on the same base, rl/ppo_model.py),
per-token GAE advantages (rl/rollout.py make_experience) and the update below, ppo_epochs ×
minibatches of clipped policy + value loss (rl/ppo_math.py), one AdamW step each.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from core.config import ConfigError, PPOConfig
from core.logps import token_logps
from rl import pg_loop
from rl.pg_loop import mean_stats, minibatches, optimizer_step, sample_stats
from rl.ppo_math import policy_loss, value_loss
from rl.ppo_model import POLICY, VALUE
from rl.rollout import Rollout, make_experience, value_metrics


def check_config(cfg: PPOConfig) -> None:
    pg_loop.check_config(cfg)
    if not 1 <= cfg.mini_batch_size <= cfg.batch_size:
        raise ConfigError(f"mini_batch_size must be in [1, batch_size={cfg.batch_size}], got {cfg.mini_batch_size}")


def make_optimizer(model, cfg: PPOConfig) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    policy = [p for n, p in named if f".{POLICY}." in n]
    value = [p for n, p in named if f".{POLICY}." not in n]
    return torch.optim.AdamW([{"params": policy, "lr": cfg.learning_rate},
                              {"params": value, "lr": cfg.value_learning_rate}], weight_decay=cfg.weight_decay)


def ppo_update(model, optimizer, accelerator, r: Rollout, cfg: PPOConfig) -> dict[str, float]:
    """ppo_epochs passes over the rollout in shuffled minibatches: one AdamW step each."""
    stats: dict[str, list] = defaultdict(list)
    for idx, seq, n in minibatches(r, cfg.ppo_epochs, cfg.mini_batch_size):
        mask = r.response_mask[idx, :n]
        # loss = policy loss + vf_coef · value loss, whose two terms share no parameter: two
        # backward passes give the same gradient with half the peak activation memory. The
        # first skips DDP's all-reduce; the second reduces every gradient (policy ones too).
        with accelerator.no_sync(model):
            logps = token_logps(model(**seq, part=POLICY), r.response_ids[idx, :n], mask, cfg.temperature)
            pg_loss, pg = policy_loss(logps, r.logps[idx, :n], r.advantages[idx, :n], mask, cfg.clip_eps)
            accelerator.backward(pg_loss)
        values = model(**seq, part=VALUE)  # (b, n)
        vf_loss, vf = value_loss(values, r.values[idx, :n], r.returns[idx, :n], mask, cfg.clip_eps_value)
        accelerator.backward(cfg.vf_coef * vf_loss)
        grad_norm = optimizer_step(accelerator, optimizer, cfg.max_grad_norm)
        for k, v in {"policy_loss": pg_loss, "value_loss": vf_loss, "grad_norm": grad_norm, **pg, **vf}.items():
            stats[k].append(v.detach())
    return mean_stats(accelerator, stats, r.input_ids.device)


def rollout_metrics(accelerator, r: Rollout) -> dict:
    """Per-response statistics gathered from every process, token statistics averaged."""
    out = sample_stats(accelerator, r)
    vm = value_metrics(r)
    means = accelerator.reduce(torch.stack([v.float() for v in vm.values()]), "mean")
    out.update({k: float(v) for k, v in zip(vm, means)})
    return out


PPO = pg_loop.Algo(
    name="ppo", value=True, optimizer=make_optimizer, experience=make_experience, update=ppo_update,
    metrics=rollout_metrics,
    describe=lambda cfg: "PPO on the SFT LoRA policy, with policy, reference and value adapters on one copy of "
                         "the base")


def main(cfg: PPOConfig, reward_fn=None) -> dict:
    """Train the PPO policy; returns metrics. `reward_fn(prompts, responses) -> scores` replaces
    the run's reward model (tests use synthetic ones); each prompt is a message list."""
    check_config(cfg)
    return pg_loop.run(PPO, cfg, reward_fn)
