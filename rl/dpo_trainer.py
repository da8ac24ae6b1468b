"""TRL's DPOTrainer, one level down: the loss comes from `rl.dpo_loss` with a per-example ε.

What TRL 1.16 keeps doing (unchanged): tokenizing the pairs with the chat template, the frozen
"ref" adapter (or precomputed reference log-probs), the fused LM head that returns per-token
log-probs without materialising (B, T, V) logits, checkpoints, evaluation and logging.

What changes, and why each override is needed:
- `PreferenceCollator` adds the `label_smoothing` column to TRL's batches as a (B,) tensor.
- `_set_signature_columns_if_needed`: the Trainer drops every dataset column not in this list
  before collation, so ε must be named here or it never reaches the batch.
- `compute_ref_log_probs`: TRL forwards every batch key it does not know as a model kwarg; the
  precompute pass sends it our collated batch, so ε is taken out first.
- `compute_loss`: TRL computes its losses inline with one global ε (and ignores ε for "sigmoid"),
  so the policy forward + reference log-probs are done as TRL does and the tensors handed to
  the pure `pair_losses` / `pair_metrics` below (which also add the optional NLL term).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from rl.dpo_loss import dpo_loss

SMOOTHING = "label_smoothing"
# batch keys that are not model inputs (TRL's own list plus our column)
NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", SMOOTHING}


@dataclass
class PreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, plus `label_smoothing` (B,) float32 when the examples carry it."""

    def torch_call(self, examples):
        batch = super().torch_call(examples)
        if SMOOTHING in examples[0]:
            batch[SMOOTHING] = torch.tensor([float(e[SMOOTHING]) for e in examples], dtype=torch.float32)
        return batch


def pair_losses(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    n_tokens: torch.Tensor,
    beta: float,
    loss_type: str,
    label_smoothing: torch.Tensor | float = 0.0,
    nll_coef: float = 0.0,
) -> torch.Tensor:
    """Per-pair losses from a TRL batch laid out [chosen; rejected].

    With nll_coef α > 0, α times the chosen answer's negative log-likelihood per token is added to
    each pair's loss: DPO alone may lower the chosen answer's likelihood as long as the rejected
    one falls faster, and the NLL term keeps the chosen answer likely (Pang et al. 2024, iterative
    RPO; Llama 3 adds it with α = 0.2 to DPO on its own policy's pairs, Dubey et al. 2024).

    Args:
        policy_logps, ref_logps: (2B,) summed completion log-probs, chosen rows first.
        n_tokens: (2B,) completion lengths; "ipo" divides by them, as TRL 1.16 does (see the
            docstring of rl/dpo_loss.py), so β means the same as in TRL's IPO recipes.
        label_smoothing: (B,) per-pair ε or a number.

    Returns:
        (B,) losses.
    """
    if loss_type == "ipo":
        lengths = n_tokens.clamp(min=1).to(policy_logps.dtype)  # (2B,)
        policy_logps, ref_logps = policy_logps / lengths, ref_logps / lengths
    policy_chosen, policy_rejected = policy_logps.chunk(2)  # (B,), (B,)
    ref_chosen, ref_rejected = ref_logps.chunk(2)  # (B,), (B,)
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type,
                            label_smoothing)
    if nll_coef:
        chosen_logps, chosen_tokens = policy_logps.chunk(2)[0], n_tokens.chunk(2)[0].clamp(min=1)
        if loss_type == "ipo":  # already divided by the lengths above
            chosen_tokens = torch.ones_like(chosen_tokens)
        losses = losses - nll_coef * chosen_logps / chosen_tokens.to(chosen_logps.dtype)
    return losses


def pair_metrics(policy_logps: torch.Tensor, ref_logps: torch.Tensor, n_tokens: torch.Tensor,
                 beta: float) -> dict[str, float]:
    """TRL's reward metrics plus a drift estimate, from (2B,) [chosen; rejected] tensors.

    rewards/* are the implicit rewards β(log π − log π_ref) of the summed log-probs (TRL's
    definition, whatever the loss type). `kl` is the mean over both responses of
    (log π_ref(y) − log π(y)) per completion token: a Monte-Carlo estimate of KL(π_ref ‖ π)
    per token when the responses were sampled from the reference (the SFT policy generates
    the pairs in collect/). When DPO over-optimises, both log-probs fall (the collapse into
    repetition seen on the tiny demo model), and this number climbs before accuracy says anything.
    """
    logratios = (policy_logps - ref_logps).detach()  # (2B,)
    chosen_rewards, rejected_rewards = (beta * logratios).chunk(2)  # (B,), (B,)
    policy_chosen, policy_rejected = policy_logps.detach().chunk(2)
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "logps/chosen": policy_chosen.mean().item(),
        "logps/rejected": policy_rejected.mean().item(),
        "kl": (-logratios.sum() / n_tokens.sum().clamp(min=1)).item(),
    }


class SmoothedDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is `rl.dpo_loss.dpo_loss` with a per-pair `label_smoothing` column,
    plus `nll_coef` times the chosen answers' per-token NLL (pair_losses)."""

    def __init__(self, *args, nll_coef: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.nll_coef = nll_coef

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if SMOOTHING not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SMOOTHING]

    def compute_ref_log_probs(self, model, inputs):
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != SMOOTHING})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("SmoothedDPOTrainer does not return logits (compute_metrics is unsupported); "
                             "its metrics are logged to log.jsonl instead")
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]  # (2B, T)
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)  # (2B, T)
        n_tokens = completion_mask[:, 1:].sum(dim=1)  # (2B,) labels are shifted by one in the head
        model_kwargs = {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}
        # Policy: TRL's fused head gives (2B, T-1) per-token log-probs, 0 outside the completion.
        outputs = model(**model_kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        policy_logps = outputs.log_probs[:, -(labels.size(1) - 1):].sum(dim=1)  # (2B,)
        # Reference: precomputed columns, or TRL's forward under the frozen "ref" adapter.
        if self.precompute_ref_logps:
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])  # (2B,)
        else:
            ref_logps = torch.cat(self.compute_ref_log_probs(model, inputs))  # (2B,)
        ref_logps = ref_logps.to(policy_logps)
        eps = inputs.get(SMOOTHING, self.label_smoothing)  # (B,) column, else TRL's global number

        losses = pair_losses(policy_logps, ref_logps, n_tokens, self.beta, self.loss_types[0], eps,
                             self.nll_coef)  # (B,)

        gathered = self.accelerator.gather((policy_logps.detach(), ref_logps, n_tokens))
        for key, value in pair_metrics(*gathered, beta=self.beta).items():
            self._metrics[mode][key].append(value)
        if isinstance(eps, torch.Tensor):
            self._metrics[mode]["label_smoothing"].append(self.accelerator.gather(eps).mean().item())
        return losses.mean()
