"""PPO for language models: the math, as pure tensor functions.

Sources: Schulman et al. 2016 (GAE), Schulman et al. 2017 (PPO), Ziegler et al. 2019 (KL
penalty, adaptive controller), Stiennon et al. 2020 (per-token KL, score at EOS), Huang et al.
2024 "The N+ implementation details of RLHF with PPO" (masking, whitening, value clipping).

Conventions: tensors are (B, T) over response tokens; mask is 1 on real tokens and 0 on padding,
and padding never enters a statistic, a loss or a KL. Valid tokens are contiguous in each row
(padding on the left or the right, never in the middle). Metrics are detached 0-d tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over positions where mask = 1 (over all of them, or along `dim`).

    An empty mask gives NaN rather than a silent 0, so a batch with no valid token is noticed.
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum()
    return (x * mask).sum(dim) / mask.sum(dim)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over positions where mask = 1 (a 0-d tensor)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError("unbiased masked_var needs at least two valid positions")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x − mean) / std with mean and std over valid positions only; padded positions are 0.

    shift_mean=False adds the mean back (only rescales), the form used for rewards; advantages
    are whitened fully (Huang et al. 2024, "whiten advantages").
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from the sampled token's log-probs (Schulman's k1-k3).

      k1 = log π − log π_ref                 unbiased, can be negative per token
      k2 = ½ (log π − log π_ref)²            biased, low variance
      k3 = (r − 1) − log r, r = π_ref / π    unbiased and ≥ 0

    Shape in = shape out, e.g. (B, T). No clamping: an overflowing k3 should be seen, not hidden.
    """
    d = logp - ref_logp  # log π − log π_ref
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.expm1(-d) + d  # (r − 1) − log r with log r = −d; expm1 is exact near 0
    raise ValueError(f"unknown KL estimator {kind!r}; expected 'k1', 'k2' or 'k3'")


def per_token_rewards(
    score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """r_t = −kl_coef · kl_t at every valid token, plus the RM score at the last valid one.

    Stiennon et al. 2020, "Learning to summarize from human feedback"; Ouyang et al. 2022,
    InstructGPT. The last valid token
    is the EOS of a completed response; penalizing responses without EOS (Huang et al. 2024) is
    done to `score` before this call. A row with no valid token gets no score.

    Args: score (B,), kl (B, T), mask (B, T).   Returns: (B, T), 0 at padded positions.
    """
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask  # (B, T)
    T = mask.shape[1]
    positions = torch.arange(1, T + 1, device=mask.device, dtype=mask.dtype)  # (T,)
    last = (mask * positions).argmax(dim=1)  # (B,) index of the last valid token
    has_token = mask.sum(dim=1) > 0  # (B,)
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += torch.where(has_token, score.to(rewards.dtype), 0.0)
    return rewards


@torch.no_grad()
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, Eq. 16).

    δ_t = r_t + γ V_{t+1} − V_t, with V = 0 beyond the last valid token (the episode ends at EOS);
    A_t = Σ_l (γλ)^l δ_{t+l};  returns R_t = A_t + V_t (the value targets).
    Computed without gradient: advantages and returns are targets, never differentiated.

    Args: rewards, values, mask: (B, T).   Returns: advantages, returns: (B, T), 0 at padding.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask  # padded values/rewards must not leak in
    T = values.shape[1]
    advantages = torch.zeros_like(values)
    next_adv = torch.zeros_like(values[:, 0])  # (B,)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(next_adv)  # 0 after the end
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]  # a pad cuts the recursion
        advantages[:, t] = next_adv
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, Eq. 7), as a loss to minimize.

    ρ_t = exp(log π − log π_old);  L_t = max(−ρ_t A_t, −clip(ρ_t, 1 − ε, 1 + ε) A_t);
    loss = masked mean of L_t over all valid tokens of the batch (token-level average).

    Args: logp (B, T) with grad; old_logp, advantages, mask (B, T) (detached here: constants).
    Returns: loss (0-d); metrics `clipfrac` (share of tokens where the clipped term is the max),
        `approx_kl` (mean of (ρ − 1) − log ρ, the k3 estimate of KL(π_old ‖ π)), `ratio` (mean ρ).
    """
    log_ratio = logp - old_logp.detach()  # (B, T)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = -adv * ratio  # (B, T)
    clipped = -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (Huang et al. 2024, "clip the value loss like the policy loss").

    V_clip = V_old + clip(V − V_old, −ε, ε);  loss = ½ · masked mean of max((V − R)², (V_clip − R)²).

    Args: values (B, T) with grad; old_values, returns, mask (B, T).
    Returns: loss (0-d); metrics `vf_clipfrac` (share of tokens where the clipped term is the max).
    """
    old_values, returns = old_values.detach(), returns.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -clip_eps_value, clip_eps_value)
    err = (values - returns) ** 2  # (B, T)
    err_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        metrics = {"vf_clipfrac": masked_mean((err_clipped > err).float(), mask)}
    return loss, metrics


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: (B, T, V) → (B, T).

    H = logsumexp(z) − Σ_v softmax(z)_v z_v, which needs no log of a probability that underflows.
    """
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


@torch.no_grad()
def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var[R − V] / Var[R] over valid tokens: 1 = perfect value head, 0 = no better than a constant,
    < 0 = worse. NaN when the returns have no variance."""
    return 1 - masked_var(returns - values, mask, unbiased=False) / masked_var(returns, mask, unbiased=False)


class AdaptiveKLController:
    """Ziegler et al. 2019 (§2.2): steer the KL coefficient towards a target KL.

    error = clip(KL / target − 1, −0.2, 0.2);  β ← β (1 + error · n_steps / horizon).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be positive")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        error = min(max(float(current_kl) / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """A constant KL coefficient with the same interface as AdaptiveKLController."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        return self.value
