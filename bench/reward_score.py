"""Reward scoring throughput: `load_scorer` batched vs one (prompt, response) pair at a time.

Both score the same rows (demo questions with answers of every quality, so lengths vary) with the
same loaded model, in one process, after one warm-up call each; pairs/s is rows scored per second
of wall time. The two paths alternate for --rounds rounds and each reports its best round, so a
burst of load from other processes on a shared machine does not land on one path only. The batched path sorts rows by length, pads per batch and restores the order; the
scores of the two paths must agree (max |difference| is reported).

    python bench/reward_score.py [--model runs/demo/reward] [--n 256] [--batch_size 64] [--rounds 3] [--threads 0]

Without --model it saves an untrained reward model on the default MiniLM backbone to a temporary
directory (throughput does not depend on the weights). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch


def demo_rows(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from demo import domain

    rng = random.Random(seed)
    prompts, responses = [], []
    for i in range(n):
        intent = domain.INTENTS[i % len(domain.INTENTS)]
        t = rng.randrange(len(intent.templates))
        slots = domain.sample_slots(intent, rng, intent.templates[t])
        prompts.append(domain.render_prompt(intent, t, slots, rng))
        responses.append(domain.render(intent, slots, rng.choice(domain.qualities_for(intent)), rng))
    return prompts, responses


def untrained_model(out: Path) -> Path:
    from core.models import load_tokenizer
    from reward.model import build_reward_model, default_backbone, save_reward_model

    path = default_backbone()
    tok = load_tokenizer(path)
    torch.manual_seed(0)
    rm = build_reward_model(path, tok, torch.device("cpu"), aspect_heads=True)
    save_reward_model(out, rm, tok, path, max_length=256)
    return out


def timed(fn) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="reward model or run directory ('' = untrained MiniLM reward model)")
    ap.add_argument("--n", type=int, default=256, help="rows scored by each path")
    ap.add_argument("--batch_size", type=int, default=64, help="batched path: sequences per forward pass")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per path (best one counts)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from reward import load_scorer

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else untrained_model(Path(tmp) / "rm")
        scorer = load_scorer(model, device=args.device, batch_size=args.batch_size)
        prompts, responses = demo_rows(args.n)
        scorer.score(prompts[:args.batch_size], responses[:args.batch_size])  # warm-up
        scorer.score(prompts[:1], responses[:1])
        t_batched = t_single = float("inf")
        for _ in range(args.rounds):
            t, batched = timed(lambda: scorer.score(prompts, responses))
            t_batched = min(t_batched, t)
            t, single = timed(lambda: [scorer.score([p], [r])[0] for p, r in zip(prompts, responses)])
            t_single = min(t_single, t)

    batched_rate, single_rate = args.n / t_batched, args.n / t_single
    result = {"bench": "reward_score", "model": args.model or "untrained MiniLM-L6 reward model",
              "kind": scorer.rm.kind, "device": str(scorer.device), "threads": torch.get_num_threads(),
              "n_pairs": args.n, "batch_size": args.batch_size, "rounds": args.rounds,
              "batched_pairs_per_s": round(batched_rate, 1), "single_pairs_per_s": round(single_rate, 1),
              "speedup": round(batched_rate / single_rate, 2),
              "max_abs_diff": max(abs(a - b) for a, b in zip(batched, single))}
    print(f"batched (batch {args.batch_size}): {batched_rate:.1f} pairs/s; one at a time: {single_rate:.1f} "
          f"pairs/s; ratio {batched_rate / single_rate:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
