"""Is bf16 matmul fast on this CPU? bf16 vs fp32 time of the tiny model's matmul shapes, in one
process, best of --repeats. The fact behind the CPU half of the device policy (core/device.py):
fp32 is the CPU default because bf16 ran ~120x slower on the CPUs first measured; on a CPU with
avx512_bf16 it ran 2.5x faster (bf16/fp32 time ratio 0.4).

    python bench/cpu_bf16_matmul.py [--threads 1] [--repeats 20]

Prints one line per shape, then one line of JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

# (tokens, in, out) of the tiny model's MLP and attention projections, and a square reference
SHAPES = ((4096, 256, 704), (4096, 256, 256), (1024, 1024, 1024))


def seconds_per_matmul(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for m, k, n in SHAPES:
        fp32 = seconds_per_matmul(m, k, n, torch.float32, args.repeats)
        bf16 = seconds_per_matmul(m, k, n, torch.bfloat16, args.repeats)
        rows.append({"shape": [m, k, n], "fp32_ms": round(fp32 * 1e3, 3), "bf16_ms": round(bf16 * 1e3, 3),
                     "bf16_over_fp32": round(bf16 / fp32, 3)})
        print(f"({m}x{k})@({k}x{n}): fp32 {fp32 * 1e3:.2f} ms, bf16 {bf16 * 1e3:.2f} ms, "
              f"bf16/fp32 = {bf16 / fp32:.2f}")
    print(json.dumps({"threads": args.threads, "shapes": rows}))


if __name__ == "__main__":
    main()
