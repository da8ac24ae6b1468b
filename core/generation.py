"""Batched chat generation with the KV cache: the one way every stage samples a policy.

Prompts are formatted with the tokenizer's chat template (the same as training), padded on the
LEFT so every row's next token sits at the same position, and decoding stops at EOS.
"""
from __future__ import annotations

from typing import Iterable

import torch
from jinja2 import TemplateError

from core.config import UserError
from core.prompts import as_messages


def apply_template(tok, messages: list[dict], **kwargs):
    """tok.apply_chat_template, with a template that refuses the conversation (e.g. one without
    a system role given a system prompt) reported as a UserError naming the roles."""
    try:
        return tok.apply_chat_template(messages, **kwargs)
    except TemplateError as e:
        roles = "/".join(m["role"] for m in messages)
        raise UserError(f"the chat template of {getattr(tok, 'name_or_path', 'the tokenizer')} cannot render "
                        f"a conversation with roles {roles}: {e}") from e


def chat_prompt(tok, prompt: str | list[dict]) -> str:
    """The prompt (a string, or the conversation's messages with any system prompt and earlier
    turns) rendered by the chat template, ready for the assistant's answer."""
    return apply_template(tok, as_messages(prompt), add_generation_prompt=True, tokenize=False)


def encode_prompts(tok, prompts: list, device) -> dict[str, torch.Tensor]:
    texts = [chat_prompt(tok, p) for p in prompts]
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        # the template already wrote any BOS it wants; don't let the tokenizer add a second one
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = side
    return {k: v.to(device) for k, v in enc.items()}


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


@torch.no_grad()
def generate(model, tok, prompts: list, *, max_new_tokens: int = 96, temperature: float = 0.0,
             top_p: float = 1.0, batch_size: int = 32, seed: int | None = None,
             return_ids: bool = False) -> list[str] | list[tuple[str, list[int]]]:
    """Responses for chat prompts; temperature 0 = greedy. Deterministic for a seed."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if seed is not None:
        torch.manual_seed(seed)
    out = []
    for batch in _batches(list(prompts), batch_size):
        enc = encode_prompts(tok, batch, device)
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, use_cache=True)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        seqs = model.generate(**enc, **kwargs)
        for row in seqs[:, enc["input_ids"].shape[1]:].tolist():
            ids = _until_eos(row, tok.eos_token_id, tok.pad_token_id)
            text = tok.decode(ids, skip_special_tokens=True).strip()
            out.append((text, ids) if return_ids else text)
    model.train(was_training)
    return out


def _until_eos(ids: list[int], eos: int, pad: int) -> list[int]:
    """Cut at the first EOS (kept) and drop trailing padding."""
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids
