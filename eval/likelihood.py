"""Likelihood-based eval metrics: perplexity of given text and KL between two policies.

- `completion_perplexity`: exp of the mean NLL per completion token of chat rows (prompt →
  completion, the prompt formatted with the chat template as in training, loss on the
  completion only: the number SFT's validation perplexity reports).
- `text_perplexity`: exp of the mean NLL per token of plain documents (the base corpus), to
  see catastrophic forgetting: an aligned policy that got much worse here forgot language.
- `kl_per_response`: Monte-Carlo KL(π || ref) = E_y~π [Σ_t log π(y_t) − log ref(y_t)], on
  responses sampled from π, with both models' logits divided by the sampling temperature
  (the KL of the two distributions the responses were actually drawn from at serving time).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from core.generation import chat_prompt
from core.likelihood import Encoded, encode_chat_rows, scored_logps
from core.policies import use_policy


def _perplexity(logps: list[torch.Tensor]) -> float:
    n = sum(x.numel() for x in logps)
    return math.exp(-sum(float(x.sum()) for x in logps) / n) if n else float("nan")


def completion_perplexity(model, tok, rows: Sequence[dict], batch_size: int = 16, max_length: int = 512) -> float:
    return _perplexity(scored_logps(model, encode_chat_rows(tok, rows, max_length), tok.pad_token_id, batch_size))


def text_perplexity(model, tok, docs: Sequence[str], batch_size: int = 16, max_length: int = 256) -> float:
    """Each document's first max_length tokens; the first token is context only."""
    rows = []
    for doc in docs:
        ids = tok(doc, add_special_tokens=False)["input_ids"][:max_length]
        if len(ids) >= 2:
            rows.append((ids[:1], ids[1:]))
    return _perplexity(scored_logps(model, rows, tok.pad_token_id, batch_size)) if rows else float("nan")


def kl_per_response(policy_logps: list[torch.Tensor], ref_logps: list[torch.Tensor]) -> float:
    """Mean over responses of Σ_t (log π − log ref): nats per response."""
    if len(policy_logps) != len(ref_logps):
        raise ValueError(f"{len(policy_logps)} policy rows but {len(ref_logps)} reference rows")
    if not policy_logps:
        return float("nan")
    return float(sum(float((p - r).sum()) for p, r in zip(policy_logps, ref_logps)) / len(policy_logps))


def response_rows(tok, prompts: Sequence[str], response_ids: Sequence[list[int]]) -> list[Encoded]:
    """(chat prompt ids, generated ids) rows for scoring sampled responses."""
    return [(tok(chat_prompt(tok, p), add_special_tokens=False)["input_ids"], list(ids))
            for p, ids in zip(prompts, response_ids) if ids]


def policy_kl(model, tok, name: str, ref: str, prompts: Sequence[str], response_ids: Sequence[list[int]],
              temperature: float, batch_size: int = 16) -> float:
    """KL(name || ref) per response on `name`'s sampled responses; `model` holds both policies
    as adapters (core.policies.attach_adapters; 'base' = adapters off)."""
    rows = response_rows(tok, prompts, response_ids)
    with use_policy(model, name) as m:
        mine = scored_logps(m, rows, tok.pad_token_id, batch_size, temperature)
    with use_policy(model, ref) as m:
        theirs = scored_logps(m, rows, tok.pad_token_id, batch_size, temperature)
    return kl_per_response(mine, theirs)
