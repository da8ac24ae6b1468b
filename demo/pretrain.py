"""Pretrain the tiny embedded base model: a small Llama from scratch on the demo corpus, on CPU.

A plain PyTorch loop (nanoGPT-style), not a Trainer: on this project's CPUs TRL/HF defaults
(bf16, checkpointing) were measured an order of magnitude slower, and a loop this small is
easier to read than a trainer's config. The result is saved as an ordinary HF model directory,
so every later stage loads it exactly the way it would load a real model.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from core.io import append_jsonl, write_json
from demo.tokenizer import EOT

# Defaults (demo.config.BaseConfig holds the ones `rlhf base` uses), measured on the 2-core CPU
# with the demo corpus (~0.7 MB, ~200k tokens at vocab 3.2k), 5.2M params:
# - 120 steps of 16 x 256 tokens at lr 1e-3: held-out loss 2.0 nats (unigram entropy 5.5);
# - 220 such steps: 0.80, and the model answered nearly every question with the same sentence;
# - 440 steps of 8 x 256 (the same tokens, twice the updates) at lr 2e-3: 0.57, and the answers
#   follow the question. lr 3e-3 trained slower; 4e-3 stalled near the unigram loss.
# - the first 90% of those steps on 16 x 128 blocks (the same tokens), measured the same day on the
#   demo corpus, seed 0: 230 s instead of 246, held-out loss (on 256-token blocks) 0.451 instead
#   of 0.480 (bench/base_seq_warmup.py: 1.03-1.17x per step over five runs).
DEFAULT_MAX_STEPS = 440
DEFAULT_LR = 2e-3
DEFAULT_WARMUP = 30


def pack_documents(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Tokenize, join with <|endoftext|>, cut into (N, seq_len) blocks; the tail is dropped.

    If the text is shorter than one block, it becomes one shorter block, so a tiny held-out
    split still gives a loss.
    """
    eot = tokenizer.convert_tokens_to_ids(EOT)
    # The backend tokenizer directly: no "longer than model_max_length" warning for long docs.
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ids: list[int] = []
    for enc in encodings:
        ids.extend(enc.ids)
        ids.append(eot)
    n_blocks = len(ids) // seq_len
    if n_blocks == 0:
        return torch.tensor([ids], dtype=torch.long)
    return torch.tensor(ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)


def split_documents(texts: list[str], val_frac: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out whole documents (not blocks), so held-out loss measures unseen text."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(texts) * val_frac)) if len(texts) > 1 else 0
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [texts[i] for i in train], [texts[i] for i in val]


def build_model(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int,
                num_kv_heads: int, intermediate_size: int, max_positions: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,  # at this size the embedding is a large share of all params
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # Decay matrices only (nanoGPT): decaying norm gains pulls them toward 0 for no benefit.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # betas (0.9, 0.95): the usual choice for short LM pretraining runs, steadier than 0.999.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), foreach=True)


def lr_at(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_ratio * lr` at `max_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate(model, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over all blocks, weighted by predicted tokens."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i: i + batch_size]  # (B, T)
        n = x.numel() - x.shape[0]  # T-1 predictions per block
        total += model(input_ids=x, labels=x).loss.item() * n
        count += n
    model.train(was_training)
    return total / max(1, count)


def unigram_entropy(blocks: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats/token) of the training tokens' unigram distribution: the loss a model
    that ignores context would reach. A model that learned anything beats it clearly."""
    counts = torch.bincount(blocks.flatten(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _write_model_files(model, tokenizer, path: Path, metrics: dict, progress: bool) -> None:
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:  # save_pretrained draws its own "Writing model shards" bar
        hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)  # safetensors + config.json + generation_config.json
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(path)
    write_json(path / "metrics.json", metrics)


def save_model_dir(model, tokenizer, out_dir: str | os.PathLike, metrics: dict,
                   progress: bool = True) -> Path:
    """Write the model directory next to `out_dir` and rename it into place: a crash leaves
    either the old directory or the complete new one, never a half-written model."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,  # <|im_end|>: stop at the end of the assistant turn
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        do_sample=False,
    )
    try:
        _write_model_files(model, tokenizer, tmp, metrics, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _batches(n_blocks: int, batch_size: int, generator: torch.Generator):
    """Endless stream of block indices: a fresh seeded permutation every epoch."""
    per_epoch = max(1, n_blocks // batch_size)  # drop the ragged last batch of an epoch
    while True:
        perm = torch.randperm(n_blocks, generator=generator)
        for i in range(per_epoch):
            yield perm[i * batch_size: (i + 1) * batch_size]


def train_loop(model, blocks: torch.Tensor, *, batch_size: int, max_steps: int, lr: float,
               warmup_steps: int, weight_decay: float, seed: int, short_steps: int = 0, log_path=None,
               log_every: int = 10, progress: bool = True,
               dtype: torch.dtype = torch.float32) -> tuple[list[float], int, float]:
    """AdamW + warmup/cosine + clip 1.0 over random batches of `blocks` (N, T).

    The first `short_steps` steps see the same tokens cut into half-length blocks, twice as many
    per step (sequence-length warm-up): attention costs O(T) per token, so these steps are a
    little cheaper, and the model learned more from the same steps (see the defaults above).
    `dtype` other than float32: the forward under CPU autocast in that dtype (bf16 where the
    device policy measured it faster); the weights, gradients and optimizer state stay fp32.
    Returns the per-step losses, tokens seen and wall seconds."""
    optimizer = make_optimizer(model, lr, weight_decay)
    if blocks.shape[1] % 2:  # an odd block length (a one-block corpus) cannot be halved
        short_steps = 0
    half = blocks.reshape(-1, blocks.shape[1] // 2) if short_steps else blocks
    short_batches = _batches(len(half), batch_size * 2, torch.Generator().manual_seed(seed + 1))
    batches = _batches(len(blocks), batch_size, torch.Generator().manual_seed(seed))
    model.train()
    losses: list[float] = []
    tokens_seen = 0
    start = time.perf_counter()
    bar = tqdm(range(max_steps), desc="pretrain", disable=not progress, dynamic_ncols=True)
    for step in bar:
        step_lr = lr_at(step, lr=lr, warmup_steps=warmup_steps, max_steps=max_steps)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        x = half[next(short_batches)] if step < short_steps else blocks[next(batches)]  # (B, T)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=x, labels=x).loss  # HF shifts labels inside the model
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        optimizer.step()

        losses.append(loss.item())
        tokens_seen += x.numel()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{step_lr:.2e}")
        if log_path is not None and (step % log_every == 0 or step == max_steps - 1):
            elapsed = time.perf_counter() - start
            append_jsonl(log_path, {"step": step + 1, "loss": losses[-1], "lr": step_lr, "seq_len": x.shape[1],
                                    "grad_norm": grad_norm, "tokens": tokens_seen,
                                    "elapsed_s": round(elapsed, 3),
                                    "tokens_per_s": round(tokens_seen / elapsed, 1)})
    return losses, tokens_seen, time.perf_counter() - start


def pretrain(texts: list[str], tokenizer, out_dir: str | os.PathLike, *,
             hidden_size: int = 256, num_layers: int = 6, num_heads: int = 8,
             num_kv_heads: int = 4, intermediate_size: int = 704, seq_len: int = 256,
             batch_size: int = 8, max_steps: int = DEFAULT_MAX_STEPS, lr: float = DEFAULT_LR,
             warmup_steps: int = DEFAULT_WARMUP, weight_decay: float = 0.1, val_frac: float = 0.02,
             short_steps: int = 0, seed: int = 0, threads: int = 0, log_path: str | os.PathLike | None = None,
             log_every: int = 10, progress: bool = True, dtype: torch.dtype = torch.float32) -> dict:
    """Pretrain a small Llama on `texts`, save it with `tokenizer` to `out_dir`, return metrics.

    Losses are mean next-token cross-entropy in nats; `val_loss` is on whole held-out documents
    (`val_frac` of them, at least one), None when there are too few documents to hold one out,
    always computed in fp32. `dtype`: the training forward's autocast dtype (see `train_loop`).
    """
    # Intra-op threads = cores (0); fewer when other jobs share the CPU, since oversubscribed
    # OpenMP threads spin-wait and a step can get several times slower.
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)

    train_texts, val_texts = split_documents(texts, val_frac, seed)
    train_blocks = pack_documents(train_texts, tokenizer, seq_len)  # (N, T)
    val_blocks = pack_documents(val_texts, tokenizer, seq_len) if val_texts else None

    model = build_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers,
                        num_heads=num_heads, num_kv_heads=num_kv_heads,
                        intermediate_size=intermediate_size,
                        max_positions=max(seq_len, tokenizer.model_max_length))
    val_loss_init = evaluate(model, val_blocks, batch_size) if val_blocks is not None else None
    losses, tokens_seen, seconds = train_loop(
        model, train_blocks, batch_size=batch_size, max_steps=max_steps, lr=lr,
        warmup_steps=warmup_steps, weight_decay=weight_decay, seed=seed, short_steps=short_steps,
        log_path=log_path, log_every=log_every, progress=progress, dtype=dtype)
    val_loss = evaluate(model, val_blocks, batch_size) if val_blocks is not None else None

    tail = losses[-max(1, min(10, len(losses) // 10)):]  # mean of the last steps: less noisy
    metrics = {
        "n_params": sum(p.numel() for p in model.parameters()),
        "initial_train_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "final_train_loss_avg": sum(tail) / len(tail) if tail else None,
        "val_loss_initial": val_loss_init,
        "val_loss": val_loss,
        "unigram_entropy": unigram_entropy(train_blocks, len(tokenizer)),
        "n_train_docs": len(train_texts), "n_val_docs": len(val_texts),
        "n_train_tokens": train_blocks.numel(),
        "n_val_tokens": val_blocks.numel() if val_blocks is not None else 0,
        "steps": max_steps, "tokens_seen": tokens_seen,
        "epochs": tokens_seen / max(1, train_blocks.numel()),
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(1, max_steps), 4),
        "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1),
        "config": {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                   "num_kv_heads": num_kv_heads, "intermediate_size": intermediate_size,
                   "vocab_size": len(tokenizer), "seq_len": seq_len, "batch_size": batch_size,
                   "max_steps": max_steps, "short_steps": short_steps, "lr": lr, "warmup_steps": warmup_steps,
                   "weight_decay": weight_decay, "seed": seed, "threads": torch.get_num_threads(),
                   "dtype": str(dtype).replace("torch.", "")},
    }
    if log_path is not None:
        append_jsonl(log_path, {"step": max_steps, "val_loss": val_loss})
    save_model_dir(model, tokenizer, out_dir, metrics, progress=progress)
    return metrics
