"""DPO training steps/s with precomputed reference log-probs vs the reference forward every step.

Both modes train our DPO stage (rl/dpo.py: the SFT adapter trainable, TRL's frozen "ref" adapter
as the reference) on the same pairs in the same process, in alternating order so that drift in
the machine's load hits both; the best of `--repeats` runs of each is kept. Steps/s are timed from
step `--warmup` to the end; the one-off precompute pass is timed separately, so the break-even
is visible too: precompute pays off after `precompute_s / (1/live - 1/pre)` steps.
Expectation: a step is about 3 forward-passes of work (forward + backward) plus 1 for the
reference, so precomputing should give about 4/3 ≈ 1.3x.

    python bench/dpo_precompute.py --run runs/demo [--steps 20] [--batch_size 16]

Prints a line of text, then one line of JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


class StepTimer:
    """Wall and CPU time (this process) from the start of step `warmup` to the end of the last step.

    CPU time is reported too because the CPU machines are shared: other jobs stretch wall time
    unevenly between runs, CPU time much less."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == warmup:
                    timer.t0 = (time.perf_counter(), time.process_time())

            def on_step_end(self, args, state, control, **kw):
                timer.t1 = (time.perf_counter(), time.process_time())

        self.callback, self.t0, self.t1 = _CB(), None, None


def run_once(args, precompute: bool) -> tuple[float, float, float]:
    """(steps/s of wall time, steps/s of CPU time, after warm-up; seconds spent building the
    trainer, including any precompute pass)."""
    from core.config import load_config
    from rl.dpo import build_trainer
    from rl.dpo import DPOConfig

    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(DPOConfig, None, dict(
            run=args.run, data=args.data, out=out, max_steps=args.steps, batch_size=args.batch_size,
            val_fraction=0.0, eval_steps=10_000, logging_steps=10_000, threads=args.threads,
            precompute_ref_log_probs=precompute))
        t0 = time.perf_counter()
        trainer, _ = build_trainer(cfg, callbacks=[timer.callback])
        build_s = time.perf_counter() - t0
        trainer.train()
    n = args.steps - args.warmup
    return n / (timer.t1[0] - timer.t0[0]), n / (timer.t1[1] - timer.t0[1]), build_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="run with base/, sft/ and collect/preferences.jsonl")
    ap.add_argument("--data", default="", help="preference pairs ('' = <run>/collect/preferences.jsonl)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    args = ap.parse_args()
    if not (Path(args.run) / "sft" / "adapter_config.json").exists():
        raise SystemExit(f"{args.run}: no SFT adapter; run `make demo` (or `rlhf sft`) first")

    runs = {False: [], True: []}  # precompute → [(wall steps/s, cpu steps/s, build s)]
    for _ in range(args.repeats):
        for precompute in (False, True):
            runs[precompute].append(run_once(args, precompute))
    best = {k: [max(r[i] for r in v) for i in range(2)] + [min(r[2] for r in v)] for k, v in runs.items()}
    (live_s, live_cpu, live_build), (pre_s, pre_cpu, pre_build) = best[False], best[True]
    precompute_s = pre_build - live_build  # the extra time spent building = the precompute pass
    saved_per_step = 1 / live_s - 1 / pre_s
    result = {"live_ref_steps_s": round(live_s, 3), "precomputed_ref_steps_s": round(pre_s, 3),
              "ratio": round(pre_s / live_s, 3), "ratio_cpu_time": round(pre_cpu / live_cpu, 3),
              "all_runs": {"live": [[round(x, 3) for x in r] for r in runs[False]],
                           "precomputed": [[round(x, 3) for x in r] for r in runs[True]]},
              "precompute_s": round(precompute_s, 2),
              "break_even_steps": round(precompute_s / saved_per_step, 1) if saved_per_step > 0 else None,
              "steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size, "repeats": args.repeats,
              "threads": torch.get_num_threads(), "device": "cpu" if not torch.cuda.is_available() else "cuda"}
    print(f"live reference {live_s:.3f} steps/s | precomputed {pre_s:.3f} steps/s | "
          f"ratio {pre_s / live_s:.2f}x (CPU time {pre_cpu / live_cpu:.2f}x) | precompute pass {precompute_s:.1f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
