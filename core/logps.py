"""Log-probabilities of given tokens under a model's logits: pure, shared by DPO and PPO.

The caller aligns labels with logits (labels[:, t] is the token predicted by logits[:, t], i.e.
labels = input_ids[:, 1:] for logits[:, :-1]); these functions do no shifting.
"""
from __future__ import annotations

import torch


def token_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token log π(label_t | ·) under softmax(logits / temperature).

    Dividing by the sampling temperature makes the log-probs those of the distribution the
    tokens were actually sampled from (Huang et al. 2024, "N+ implementation details", detail on
    temperature); without it PPO's ratio is off from the first step.

    Args:
        logits: (B, T, V).  labels: (B, T) token ids; masked positions may hold anything,
            e.g. -100.  mask: (B, T) 1 = valid; None = every position.  temperature > 0.

    Returns:
        (B, T) float32 log-probs, 0 at masked positions.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    if mask is not None:
        labels = labels.masked_fill(mask == 0, 0)  # ignore-index ids like -100 would break gather
    # One row at a time so the float32 copy of the logits is (T, V), not (B, T, V): the full
    # upcast of a bf16 batch with a 150k vocabulary costs gigabytes. float32 because bf16
    # log-probs are too coarse for a PPO ratio.
    rows = []
    for row_logits, row_labels in zip(logits, labels):
        z = row_logits.float() / temperature  # (T, V)
        picked = z.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)  # (T,)
        rows.append(picked - torch.logsumexp(z, dim=-1))  # (T,)
    out = torch.stack(rows)  # (B, T)
    if mask is not None:
        out = out * mask.to(out.dtype)
    return out


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Summed log-probs Σ_t mask_t · log π(label_t | ·): logits (B, T, V), labels and mask (B, T) → (B,).

    Divide by mask.sum(-1) for the per-token average (TRL's IPO and `sigmoid_norm` use that).
    """
    return token_logps(logits, labels, mask, temperature).sum(dim=-1)  # (B,)
