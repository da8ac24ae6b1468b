"""DPO-family losses on summed sequence log-probs: pure tensor functions.

Relation to TRL 1.16 (`trl/trainer/dpo_trainer.py`, `DPOTrainer._compute_loss`, checked against
the installed source): TRL computes its losses inline in `_compute_loss` (it needs the model);
there is no pure loss function to compare against, so the correspondence is stated here:

- "sigmoid": TRL's `-F.logsigmoid(beta * delta_score)` is our formula with ε = 0. TRL 1.16 does
  NOT apply `label_smoothing` to "sigmoid" (older TRL did; 1.16 uses it only for "robust",
  "exo_pair", "aot", "aot_unpaired"), and it is one float for the run. Conservative DPO with a
  per-example ε therefore needs our loss, not a TRL config flag.
- "ipo": TRL divides each completion's log-ratio by its number of completion tokens before
  (Δ − 1/(2β))²; we follow Azar et al. on whatever log-probs we are given. Passing per-token
  averages (`sequence_logps(...) / mask.sum(-1)`) gives TRL's value; summed log-probs give the
  paper's.
- "robust": same formula as TRL, and the same rule 0 ≤ ε < 0.5; ours also takes a (B,) ε.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "robust")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example DPO-family losses.

    h = β[(log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))]     Rafailov et al. 2023, Eq. 7

      "sigmoid": L = −(1 − ε) log σ(h) − ε log σ(−h)     DPO (ε = 0); conservative DPO (Mitchell 2023)
      "ipo":     L = (h/β − 1/(2β))²                      Azar et al. 2023, Eq. 17 (τ = β)
      "robust":  L = [(1 − ε)(−log σ(h)) − ε(−log σ(−h))] / (1 − 2ε)     Chowdhury et al. 2024

    ε (`label_smoothing`) is a number or a (B,) tensor: per-example smoothing from annotator
    disagreement (our extension; see `smoothing_from_agreement`). Conservative DPO treats ε as
    the probability that the label is wrong and softens the target; robust DPO debiases the loss
    for labels flipped with probability ε, which blows up as ε → 0.5, hence ε < 0.5 there.
    "sigmoid" requires 0 ≤ ε ≤ 0.5 (above 0.5 the pair is more likely reversed: flip it in the
    data). "ipo" takes no ε.

    The reference log-probs are detached here: the reference is a constant by definition, so a
    caller that forgot `torch.no_grad()` does not train it.

    Args:
        *_logps: (B,) summed log-probs of each response (see `core.logps.sequence_logps`).
        beta: β > 0.

    Returns:
        losses: (B,).
        chosen_rewards, rejected_rewards: (B,) implicit rewards β(log π − log π_ref), detached.
    """
    if beta <= 0:
        raise ValueError("beta must be positive")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()  # (B,)
    h = beta * (chosen_logratios - rejected_logratios)  # (B,)
    eps = torch.as_tensor(label_smoothing, dtype=h.dtype, device=h.device)  # () or (B,)
    if eps.dim() > 1 or (eps.dim() == 1 and eps.shape != h.shape):
        raise ValueError(f"label_smoothing must be a number or shape {tuple(h.shape)}, got {tuple(eps.shape)}")

    if loss_type == "sigmoid":
        if ((eps < 0) | (eps > 0.5)).any():
            raise ValueError("label_smoothing must lie in [0, 0.5] for the 'sigmoid' loss")
        losses = -(1 - eps) * F.logsigmoid(h) - eps * F.logsigmoid(-h)
    elif loss_type == "ipo":
        if (eps != 0).any():
            raise ValueError("the 'ipo' loss takes no label_smoothing")
        losses = (h / beta - 1 / (2 * beta)) ** 2
    else:  # robust
        if ((eps < 0) | (eps >= 0.5)).any():
            raise ValueError("label_smoothing must lie in [0, 0.5) for the 'robust' loss")
        losses = (-(1 - eps) * F.logsigmoid(h) + eps * F.logsigmoid(-h)) / (1 - 2 * eps)

    chosen_rewards = beta * chosen_logratios.detach()  # (B,)
    rejected_rewards = beta * rejected_logratios.detach()  # (B,)
    return losses, chosen_rewards, rejected_rewards


def smoothing_from_agreement(
    agreement: torch.Tensor | float,
    n_votes: torch.Tensor | int,
    max_eps: float = 0.4,
    prior: float = 1.0,
) -> torch.Tensor | float:
    """Per-example ε for conservative/robust DPO from how many annotators agreed.

    agreement is the share of the n_votes annotators who voted with the majority (2/3, 1.0, ...),
    so n·(1 − agreement) voted against it. The raw estimate 1 − agreement says a pair with one
    vote, or three unanimous ones, is certainly right; shrink it towards 1/2 with `prior`
    pseudo-votes on each side (Laplace's rule of succession for prior = 1):

        ε = (n·(1 − agreement) + prior) / (n + 2·prior),   then clipped to [0, max_eps].

    E.g. prior = 1: 1 vote → 1/3; 3 of 3 → 1/5; 2 of 3 → 2/5; 10 of 10 → 1/12.
    prior = 0 gives the raw 1 − agreement. max_eps < 0.5 keeps ε valid for the robust loss
    and keeps a split vote from being trained as no signal at all.

    Returns a tensor if either input is a tensor, else a float.
    """
    if not 0 <= max_eps < 0.5:
        raise ValueError("max_eps must lie in [0, 0.5)")
    if prior < 0:
        raise ValueError("prior must be non-negative")
    is_number = not isinstance(agreement, torch.Tensor) and not isinstance(n_votes, torch.Tensor)
    a = torch.as_tensor(agreement, dtype=torch.float32)
    n = torch.as_tensor(n_votes, dtype=torch.float32)
    if (n < 1).any():
        raise ValueError("n_votes must be at least 1")
    if ((a < 0) | (a > 1)).any() or a.isnan().any():
        raise ValueError("agreement must lie in [0, 1]")
    eps = ((n * (1 - a) + prior) / (n + 2 * prior)).clamp(0.0, max_eps)
    return eps.item() if is_number else eps
