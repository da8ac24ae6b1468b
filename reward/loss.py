"""Reward-model losses and calibration: pure tensor functions, no model or batch dict.

Every loss returns per-example values of shape (B,); the caller reduces (usually `.mean()`),
so weighting, gradient accumulation and distributed gathers stay the caller's choice.
Metrics are detached 0-d tensors (gatherable across processes; call `.item()` to log).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Number = float | int


def pairwise_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | Number | None = None,
    target: torch.Tensor | Number | None = None,
    center_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bradley-Terry pairwise ranking loss with optional margin, soft labels and centering.

    With Δ = r_c − r_r − m:
      hard labels (target None):  L = −log σ(Δ)                            InstructGPT Eq. 1;
                                                                           margin m: Llama 2 Eq. 2
      soft labels, target p:      L = −p log σ(Δ) − (1 − p) log σ(−Δ)
                                    = softplus(−Δ) + (1 − p) Δ             (same thing, rearranged)
      reward centering:           L += c · (r_c + r_r)²                    Eisenstein et al. 2023

    The centering term is added per example, so `loss.mean()` equals Eisenstein et al.'s
    c · mean((r_c + r_r)²) over the batch. It pulls the sum of the two rewards towards 0,
    which makes scores comparable across prompts, because the BT loss only sees differences.

    With soft labels the margin enters both terms (Δ includes m): p is the share of annotators
    preferring y_c, and m shifts where the model's predicted preference σ(Δ) is read off.

    Args:
        r_chosen, r_rejected: (B,) scalar rewards.
        margin: None, a number, or (B,) per-example margins (see `margin_from_ratings`).
        target: None (hard labels, p = 1), a number, or (B,) per-example p in [0, 1].
        center_coef: c ≥ 0; 0 disables centering.

    Returns:
        loss: (B,) per-example loss.
        metrics: `accuracy` (share with r_c − r_r > 0; a tie counts as wrong), `margin` (mean of
            r_c − r_r, without m), `reward_sum_sq` (mean of (r_c + r_r)², the centering statistic,
            reported even when c = 0 so reward drift shows in the logs). All detached, 0-d.
    """
    raw = r_chosen - r_rejected  # (B,)
    delta = raw if margin is None else raw - torch.as_tensor(margin, dtype=raw.dtype, device=raw.device)
    if target is None:
        loss = -F.logsigmoid(delta)  # (B,); logsigmoid stays finite where log(sigmoid(x)) gives -inf
    else:
        p = torch.as_tensor(target, dtype=raw.dtype, device=raw.device)
        if ((p < 0) | (p > 1)).any():
            raise ValueError("target must lie in [0, 1]")
        loss = -p * F.logsigmoid(delta) - (1 - p) * F.logsigmoid(-delta)  # (B,)
    sum_sq = (r_chosen + r_rejected) ** 2  # (B,)
    if center_coef:
        loss = loss + center_coef * sum_sq
    with torch.no_grad():
        metrics = {
            "accuracy": (raw > 0).float().mean(),
            "margin": raw.float().mean(),
            "reward_sum_sq": sum_sq.float().mean(),
        }
    return loss, metrics


def length_offset(coef: torch.Tensor | Number, log_len_diff: torch.Tensor) -> torch.Tensor:
    """A length covariate as a margin: with m = −w · (log len_c − log len_r), `pairwise_loss`
    fits P(chosen ≻ rejected) = σ(r_c − r_r + w · log(len_c / len_r)).

    A learned w absorbs the share of the preferences that response length explains (log
    length, as in AlpacaEval's length-controlled win rate, Dubois et al. 2024), so the reward
    r need not learn it; the term is dropped when scoring. This is the pairwise-loss form of
    a separate length head (ODIN, Chen et al. 2024) with the length measured, not learned.
    Reward models otherwise learn length as a proxy of quality (Singhal et al. 2023).

    Args:
        coef: w, a scalar (a learnable 0-d tensor in training).
        log_len_diff: (B,) log(len_chosen / len_rejected), lengths in response tokens.
    Returns: (B,) margins, differentiable in coef.
    """
    return -coef * log_len_diff


def margin_from_ratings(
    gap: torch.Tensor | Number,
    mode: str = "scaled",
    scale: float = 1.0,
    max_gap: float = 4.0,
) -> torch.Tensor | float:
    """Map annotators' rating gap (chosen's 1-5 rating minus rejected's) to a BT margin m.

    Llama 2 (Touvron et al. 2023, Eq. 2 and its margin table) uses a discrete margin per
    preference degree: "large" {3, 2, 1, 0} and "small" {1, 2/3, 1/3, 0} for
    significantly / better / slightly / negligibly better. A rating gap plays that role here:

      "off":    m = 0                                   plain Bradley-Terry
      "raw":    m = max(gap, 0)                         one logit per rating point, like
                                                        Llama 2's large margin
      "scaled": m = scale · clip(gap, 0, max_gap) / max_gap   in [0, scale]; scale = 1 is the
                                                        small margin (max_gap = 4 on a 1-5 scale)

    A negative gap (the ratings contradict the vote) and a missing one (NaN, no ratings) give
    m = 0: a margin should only ask for a larger difference in the voted direction, never
    push the other way. `gap` may be averaged over annotators, so it need not be an integer.

    Returns a tensor for tensor input, a float for a number.
    """
    is_number = not isinstance(gap, torch.Tensor)
    g = torch.nan_to_num(torch.as_tensor(gap, dtype=torch.float32), nan=0.0).clamp(min=0.0)
    if mode == "off":
        m = torch.zeros_like(g)
    elif mode == "raw":
        m = g
    elif mode == "scaled":
        if max_gap <= 0:
            raise ValueError("max_gap must be positive")
        m = scale * g.clamp(max=max_gap) / max_gap
    else:
        raise ValueError(f"unknown margin mode {mode!r}; expected 'off', 'raw' or 'scaled'")
    return m.item() if is_number else m


def expected_calibration_error(
    probs: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 10,
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of binary predictions (Guo et al. 2017), for a reliability plot.

    probs are predicted P(label = 1), e.g. σ(r_c − r_r) for "chosen beats rejected". Each
    prediction is ŷ = [p > 0.5] with confidence max(p, 1 − p) (p = 0.5 predicts 0, matching
    `pairwise_loss`'s accuracy where a tie is wrong). Confidences are put into n_bins
    equal-width bins (lo, hi] over [0, 1];

        ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|.

    Args:
        probs: (N,) in [0, 1].  labels: (N,) 0/1 or bool.

    Returns:
        ece: float.
        bins: the non-empty bins in increasing order, each {"lo", "hi", "confidence" (mean),
            "accuracy", "count"}.
    """
    probs = probs.detach().double().flatten()  # (N,)
    labels = labels.detach().flatten().to(torch.bool)  # (N,)
    if probs.numel() == 0:
        raise ValueError("expected_calibration_error needs at least one prediction")
    if probs.shape != labels.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)} differ in shape")
    conf = torch.maximum(probs, 1 - probs)  # (N,)
    correct = ((probs > 0.5) == labels).double()  # (N,)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1], right=False)  # (N,) bin b holds (edges[b], edges[b+1]]
    n = conf.numel()
    ece = 0.0
    bins = []
    for b in range(n_bins):
        sel = idx == b
        count = int(sel.sum())
        if count == 0:
            continue
        c, a = conf[sel].mean().item(), correct[sel].mean().item()
        ece += count / n * abs(a - c)
        bins.append({"lo": edges[b].item(), "hi": edges[b + 1].item(), "confidence": c, "accuracy": a, "count": count})
    return ece, bins
