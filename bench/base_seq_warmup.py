"""Pretraining step time of the tiny base model: full-length blocks vs the half-length blocks of
sequence-length warm-up (demo/pretrain.train_loop's `short_steps`), same tokens per step.

Both shapes train the BaseConfig-sized model (demo/config.py) in one
process, alternating --repeats times; the best run of each counts. Reported: seconds per step of
each shape, their ratio, and what the default schedule (440 steps, the first 90% short) saves
over 440 full-length steps.

    python bench/base_seq_warmup.py [--steps 10] [--repeats 3] [--threads 0]
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def step_seconds(model, optimizer, blocks: torch.Tensor, steps: int) -> float:
    """Mean wall seconds of `steps` training steps on `blocks` (B, T), after one warm-up step."""
    def one():
        loss = model(input_ids=blocks, labels=blocks).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from demo.config import BaseConfig
    from demo.pretrain import make_optimizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0 = one per core")
    ap.add_argument("--vocab", type=int, default=3466, help="the demo tokenizer's size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    c = BaseConfig()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=args.vocab, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        max_position_embeddings=c.seq_len, tie_word_embeddings=True))
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=c.weight_decay)  # pretraining's (fused) AdamW
    full = torch.randint(0, args.vocab, (c.batch_size, c.seq_len))
    half = full.reshape(2 * c.batch_size, c.seq_len // 2)  # the same tokens

    best = {"full": float("inf"), "half": float("inf")}
    for _ in range(args.repeats):
        best["full"] = min(best["full"], step_seconds(model, optimizer, full, args.steps))
        best["half"] = min(best["half"], step_seconds(model, optimizer, half, args.steps))
    short = round(c.short_seq_share * c.max_steps)
    baseline = c.max_steps * best["full"]
    schedule = short * best["half"] + (c.max_steps - short) * best["full"]
    print(f"{c.batch_size} x {c.seq_len} tokens: {best['full']:.3f} s/step; "
          f"{2 * c.batch_size} x {c.seq_len // 2}: {best['half']:.3f} s/step; ratio {best['full'] / best['half']:.2f}x")
    print(f"{c.max_steps} steps, the first {short} short: {schedule:.0f} s vs {baseline:.0f} s all full-length "
          f"({baseline / schedule:.2f}x), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
