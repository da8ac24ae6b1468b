"""Per-token log-probs of given text under a causal LM: chat rows' completions or plain text.

- `scored_logps`: each row's scored tokens' log-probs given its context, batched and padded.
- `encode_chat_rows`: chat rows → (prompt ids, completion ids), the completion being the
  assistant turn exactly as the chat template writes it, EOS included.
- `position_nll` / `completion_position_nll`: the mean NLL of the completion's first token, of
  its last token (the template's end-of-turn EOS) and of the tokens between. A base model that
  never saw its chat template leaves the first and the EOS positions far above the rest after
  LoRA SFT (demo/corpus.py tells the measured case), which the average perplexity hides.

SFT reports the last two (sft/train.py); eval/likelihood.py builds perplexity and KL on them.
"""
from __future__ import annotations

from typing import Sequence

import torch

from core.generation import chat_prompt
from core.logps import token_logps

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


def position_nll(logps: list[torch.Tensor]) -> dict[str, float]:
    """{"first", "eos", "other"}: mean NLL of each row's first scored token, of its last one, and
    of all tokens between (over tokens). A one-token row counts as both first and last."""
    rows = [x for x in logps if x.numel()]
    if not rows:
        return {"first": float("nan"), "eos": float("nan"), "other": float("nan")}
    middle = torch.cat([x[1:-1] for x in rows])
    return {"first": -sum(float(x[0]) for x in rows) / len(rows),
            "eos": -sum(float(x[-1]) for x in rows) / len(rows),
            "other": -float(middle.mean()) if middle.numel() else float("nan")}


def completion_position_nll(model, tok, rows: Sequence[dict], batch_size: int = 16,
                            max_length: int = 512) -> dict[str, float]:
    """position_nll of chat rows' completions (a row cut at max_length has no EOS: keep it short)."""
    return position_nll(scored_logps(model, encode_chat_rows(tok, rows, max_length), tok.pad_token_id, batch_size))
