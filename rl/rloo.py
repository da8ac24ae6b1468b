"""`rlhf rloo`: REINFORCE Leave-One-Out (Ahmadian et al. 2024) on the SFT LoRA policy against
the reward model, on PPO's loop (rl/pg_loop.py) without a value function.

Each iteration samples k = num_generations responses for each of batch_size prompts. A response's
reward is the reward model's score (after the missing-EOS penalty) minus β times its summed KL to
the reference, the SFT policy (rl/rloo_math.py sequence_rewards, the row sums of PPO's per-token
rewards); its advantage is that reward minus the mean reward of the k − 1 other responses to the
same prompt (Kool et al. 2019). The loss is REINFORCE on the response's summed log-prob; with
num_iterations > 1 passes over one batch it is PPO-clipped on the sequence ratio (as TRL's).

Shared with PPO, not copied: the rollout (rl/rollout.py policy_experience: sampling, scoring, the
missing-EOS penalty, log-probs of policy and reference, the per-token KL estimate), the reward
normalization, the KL controller, the watchdog and its rollback, checkpoints and exact resume, the
run card (rl/pg_loop.py), and the model: policy and reference adapters on one copy of the base
(rl/ppo_model.py with value=False).

Why not TRL's RLOOTrainer (trl 1.16, trl/trainer/rloo_trainer.py): it would fit in part. It takes
a PeftModel with the SFT adapter and copies it into a frozen "ref" adapter on the same base (the
reference is the SFT policy, as here), takes our reward model as a plain callable reward function
(its custom head is not an AutoModelForSequenceClassification, so only the callable form works),
and runs on the CPU through the Trainer's own device handling rather than core/device.py. What
does not fit: it has none of the shared pieces above, so the watchdog with rollback to the last
good checkpoint, the missing-EOS penalty, the k3 estimator and adaptive β, and resume that
reproduces the uninterrupted run would be written again inside Trainer callbacks, and the run
directory (log.jsonl columns the report draws and the watchdog reads) would differ from PPO's.
Measured with bench/ppo_throughput.py --trl (docs/architecture.md has the table): one iteration
took 1.58x as long in RLOOTrainer, with 3.2x the peak memory. So: our own RLOO, on the parts it
shares with PPO; an iteration costs 0.45x PPO's (no value passes, one pass over the batch).
"""
from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict

import torch

from core.config import ConfigError, LoraFields, RLOOConfig
from core.logps import token_logps
from rl import pg_loop
from rl.pg_loop import mean_stats, minibatches, optimizer_step, sample_stats
from rl.ppo_math import masked_mean
from rl.ppo_model import POLICY
from rl.rloo_math import leave_one_out_advantages, rloo_loss, sequence_rewards
from rl.rollout import Rollout, policy_experience


def check_config(cfg: RLOOConfig) -> None:
    pg_loop.check_config(cfg)
    shape = [f.name for f in dataclasses.fields(LoraFields)
             if f.name != "load_in_4bit" and getattr(cfg, f.name) != getattr(LoraFields, f.name)]
    if shape:  # they shape PPO's value adapter; RLOO has none and trains the SFT adapter itself
        print(f"[rloo] {', '.join(shape)} ignored: RLOO trains the SFT policy's own LoRA adapter, whose shape "
              "the sft stage set", file=sys.stderr)
    if cfg.num_generations < 2:
        raise ConfigError(f"num_generations must be >= 2 (the leave-one-out baseline is the mean of the others), "
                          f"got {cfg.num_generations}")
    if cfg.num_iterations < 1:
        raise ConfigError(f"num_iterations must be >= 1, got {cfg.num_iterations}")
    rollouts = cfg.batch_size * cfg.num_generations
    if not 1 <= cfg.mini_batch_size <= rollouts:
        raise ConfigError(f"mini_batch_size must be in [1, batch_size × num_generations = {rollouts}], "
                          f"got {cfg.mini_batch_size}")


def make_optimizer(model, cfg: RLOOConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                             weight_decay=cfg.weight_decay)


@torch.no_grad()
def rloo_experience(model, tok, prompts: list, reward_fn, cfg: RLOOConfig, kl_coef: float) -> Rollout:
    """k samples of each prompt (consecutive rows), one leave-one-out advantage per response."""
    k = cfg.num_generations
    r = policy_experience(model, tok, [p for p in prompts for _ in range(k)], reward_fn, cfg, kl_coef)
    advantages = leave_one_out_advantages(sequence_rewards(r.scores, r.kl, r.response_mask, kl_coef), k)
    if cfg.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    r.advantages = advantages
    return r


def rloo_update(model, optimizer, accelerator, r: Rollout, cfg: RLOOConfig) -> dict[str, float]:
    """num_iterations passes over the rollout in shuffled minibatches: one AdamW step each."""
    old = (r.logps * r.response_mask).sum(-1)  # (B,) log π_old(y|x)
    clip_eps = cfg.clip_eps if cfg.num_iterations > 1 else 0.0  # one pass: ρ = 1, plain REINFORCE
    stats: dict[str, list] = defaultdict(list)
    for idx, seq, n in minibatches(r, cfg.num_iterations, cfg.mini_batch_size):
        mask = r.response_mask[idx, :n]
        logps = token_logps(model(**seq, part=POLICY), r.response_ids[idx, :n], mask, cfg.temperature)
        loss, m = rloo_loss(logps.sum(-1), old[idx], r.advantages[idx], clip_eps)
        accelerator.backward(loss)
        grad_norm = optimizer_step(accelerator, optimizer, cfg.max_grad_norm)
        for key, v in {"policy_loss": loss, "grad_norm": grad_norm, **m}.items():
            stats[key].append(v.detach())
    return mean_stats(accelerator, stats, r.input_ids.device)


def rollout_metrics(accelerator, r: Rollout) -> dict:
    """Per-response statistics gathered from every process; entropy and the spread of the
    advantages averaged."""
    out = sample_stats(accelerator, r)
    local = torch.stack([r.entropy.float(), r.advantages.abs().mean().float(),
                         masked_mean(r.logps, r.response_mask).float()])
    names = ("entropy", "advantage_abs_mean", "logp_mean")
    out.update({k: float(v) for k, v in zip(names, accelerator.reduce(local, "mean"))})
    return out


RLOO = pg_loop.Algo(
    name="rloo", value=False, optimizer=make_optimizer, experience=rloo_experience, update=rloo_update,
    metrics=rollout_metrics,
    describe=lambda cfg: f"RLOO on the SFT LoRA policy, k = {cfg.num_generations} samples per prompt, with policy "
                         f"and reference adapters on one copy of the base")


def main(cfg: RLOOConfig, reward_fn=None) -> dict:
    """Train the RLOO policy; returns metrics. `reward_fn(prompts, responses) -> scores` replaces
    the run's reward model (tests use synthetic ones); each prompt is a message list."""
    check_config(cfg)
    return pg_loop.run(RLOO, cfg, reward_fn)
