"""RLOO's math, as pure tensor functions.

Sources: Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free!" (the leave-one-out
baseline); Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs" (RLOO for RLHF: the whole response is one action, its
reward the reward-model score minus β times the summed KL to the reference).

Conventions: k responses are sampled per prompt and laid out prompt by prompt, so a flat batch of
B = P·k rows reshapes to (P, k). Token tensors are (B, T) with mask 1 on real response tokens;
padding never enters a sum. Metrics are detached 0-d tensors.
"""
from __future__ import annotations

import torch


def sequence_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """R = score − β · Σ_t kl_t over each response's valid tokens: (B,), (B, T), (B, T) → (B,).

    The same reward PPO spreads over the tokens (rl.ppo_math.per_token_rewards: its row sums
    are these), taken whole: RLOO treats the response as a single action."""
    return score - kl_coef * (kl * mask.to(kl.dtype)).sum(-1)


def leave_one_out_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i − mean_{j ≠ i} R_j within each prompt's group of k: (P·k,) → (P·k,).

    The baseline excludes the sample itself, so it is independent of that sample's action and the
    gradient estimate stays unbiased (Kool et al. 2019). Equivalently A_i = k/(k−1) · (R_i − mean R).
    A group's advantages sum to 0."""
    if k < 2:
        raise ValueError(f"leave-one-out needs k >= 2 samples per prompt, got {k}")
    if rewards.numel() % k:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of k={k}")
    grouped = rewards.view(-1, k)  # (P, k)
    baseline = (grouped.sum(-1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def rloo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REINFORCE on the sequence log-prob, as a loss to minimize; optionally PPO-clipped.

    ρ = exp(log π(y|x) − log π_old(y|x)) per response (log-probs summed over its tokens);
    clip_eps = 0: loss = mean(−A · ρ), whose gradient at ρ = 1 is −A · ∇ log π(y|x), plain REINFORCE;
    clip_eps > 0: loss = mean(max(−A ρ, −A clip(ρ, 1 − ε, 1 + ε))) (Schulman et al. 2017 on whole
    responses, as TRL's RLOOTrainer), which bounds how far later passes over one batch move.

    Args: logp (B,) with grad; old_logp, advantages (B,) (detached here: constants).
    Returns: loss (0-d); metrics `clipfrac` (share of responses where the clipped term is the
        max), `ratio` (mean ρ), `approx_kl` (mean (ρ − 1) − log ρ: k3 of KL(π_old ‖ π))."""
    log_ratio = logp - old_logp.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = -adv * ratio
    if clip_eps > 0:
        clipped = -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
        per_sample = torch.maximum(unclipped, clipped)
    else:
        clipped, per_sample = unclipped, unclipped
    with torch.no_grad():
        metrics = {"clipfrac": (clipped > unclipped).float().mean(), "ratio": ratio.mean(),
                   "approx_kl": ((ratio - 1) - log_ratio).mean()}
    return per_sample.mean(), metrics
