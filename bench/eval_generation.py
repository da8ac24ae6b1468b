"""Eval's answer generation: a LoRA policy through the adapter path (`use_policy`) vs its deltas
merged into the base weights (`merged_policy`), on the same model in one process.

Both paths answer the same prompts greedily in one batch (eval's batch size, 128), after one
warm-up call each; they alternate for --rounds rounds and each reports its best round, so a burst
of load from other processes on a shared machine does not land on one path only. The answers of
the two paths must match (the count of identical answers is reported).

    python bench/eval_generation.py [--model runs/demo/base --adapter runs/demo/sft] [--data runs/demo/data]
                                    [--n 128] [--max_new_tokens 96] [--rounds 3]

Without --model it pretrains a demo-size base for --steps steps on the demo corpus (<data>/corpus.txt,
`rlhf data demo`) in a temporary directory; without --adapter it attaches a random LoRA adapter with
the demo SFT's shape (r 16, alpha 32, all linear layers). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def demo_base(data: Path, out: Path, steps: int) -> Path:
    from demo.base import read_corpus
    from demo.pretrain import pretrain
    from demo.tokenizer import train_tokenizer

    docs = read_corpus(data / "corpus.txt")
    tok = train_tokenizer(docs, vocab_size=4096)
    pretrain(docs, tok, out, max_steps=steps, warmup_steps=min(30, steps // 2), progress=False)
    return out


def load(model_dir: Path, adapter: Path | None):
    from peft import LoraConfig

    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer
    from core.policies import attach_adapters

    tok = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, resolve_device("cpu", "float32"), tok)
    if adapter is not None:
        return tok, attach_adapters(model, {"policy": adapter})
    from peft import get_peft_model

    torch.manual_seed(0)
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, cfg, adapter_name="policy")
    for name, p in peft_model.named_parameters():  # a trained adapter's size, not kaiming-sized deltas
        if "lora_B" in name:
            p.data.mul_(0.02)
    return tok, peft_model


def timed(ctx, model, tok, prompts, max_new_tokens) -> tuple[float, list]:
    from core.generation import generate

    start = time.perf_counter()
    with ctx(model, "policy") as m:
        out = generate(m, tok, prompts, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=len(prompts),
                       return_ids=True)
    return time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="base model directory ('' = pretrain one for --steps steps)")
    ap.add_argument("--adapter", default="", help="LoRA adapter directory ('' = a random one)")
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--max_new_tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from core.policies import merged_policy, use_policy

    data = Path(args.data)
    rows = [json.loads(line) for line in (data / "prompts.jsonl").open()]
    prompts = ([r["prompt"] for r in rows if "eval" in r["tags"]] + [r["prompt"] for r in rows])[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else demo_base(data, Path(tmp) / "base", args.steps)
        tok, model = load(model_dir, Path(args.adapter) if args.adapter else None)
        paths = {"unmerged": use_policy, "merged": merged_policy}
        best, answers = {k: float("inf") for k in paths}, {}
        for k, ctx in paths.items():  # warm-up
            timed(ctx, model, tok, prompts[:8], 8)
        for _ in range(args.rounds):
            for k, ctx in paths.items():
                seconds, answers[k] = timed(ctx, model, tok, prompts, args.max_new_tokens)
                best[k] = min(best[k], seconds)
                print(f"{k}: {seconds:.3f} s", flush=True)
    same = sum(a == b for a, b in zip(answers["unmerged"], answers["merged"]))
    print(json.dumps({"n": len(prompts), "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
                      "unmerged_s": round(best["unmerged"], 3), "merged_s": round(best["merged"], 3),
                      "ratio": round(best["merged"] / best["unmerged"], 3), "identical_answers": same,
                      "mean_answer_tokens": round(sum(len(i) for _, i in answers["merged"]) / len(prompts), 1)}))


if __name__ == "__main__":
    main()
