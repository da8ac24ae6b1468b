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
from core.logps import token_logps
from core.policies import use_policy

Encoded = tuple[list[int], list[int]]  # (context ids, scored ids)


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _pad(rows: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, L) input ids, attention mask and scored-token mask (aligned with labels
    = input_ids[:, 1:], so (B, L-1))."""
    longest = max(len(c) + len(s) for c, s in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    scored = torch.zeros((len(rows), longest - 1), dtype=torch.long)
    for i, (ctx, tgt) in enumerate(rows):
        seq = ctx + tgt
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        scored[i, max(0, len(ctx) - 1): len(seq) - 1] = 1  # label t+1 predicted at position t
    return ids, attn, scored


@torch.no_grad()
def scored_logps(model, rows: list[Encoded], pad_id: int, batch_size: int = 16,
                 temperature: float = 1.0) -> list[torch.Tensor]:
    """Per-token log-probs of each row's scored ids given its context: a list of (len(scored),)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    for batch in _batches(rows, batch_size):
        ids, attn, scored = _pad(batch, pad_id)
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits[:, :-1]
        lp = token_logps(logits, ids[:, 1:].to(device), scored.to(device), temperature).cpu()
        out += [row[m.bool()] for row, m in zip(lp, scored)]
    model.train(was_training)
    return out


def _perplexity(logps: list[torch.Tensor]) -> float:
    n = sum(x.numel() for x in logps)
    return math.exp(-sum(float(x.sum()) for x in logps) / n) if n else float("nan")


def encode_chat_rows(tok, rows: Sequence[dict], max_length: int = 512) -> list[Encoded]:
    """Chat rows {"prompt", "completion"} (strings or message lists) → (prompt ids, completion ids).
    The completion is the assistant turn as the chat template writes it, EOS included."""
    out = []
    for row in rows:
        prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        completion = (row["completion"] if isinstance(row["completion"], list)
                      else [{"role": "assistant", "content": row["completion"]}])
        head = chat_prompt(tok, prompt)
        full = tok.apply_chat_template(prompt + completion, tokenize=False)
        ctx = tok(head, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"][:max_length]
        if ids[: len(ctx)] != ctx or len(ids) <= len(ctx):
            continue  # a template that rewrites earlier turns or a row cut to nothing: not comparable
        out.append((ctx, ids[len(ctx):]))
    return out


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
