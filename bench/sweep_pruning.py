"""What pruning saves: the same `rlhf sweep` with the median pruner and without, in one process,
the same day, on the same run, space, seed and trial count.

    python bench/sweep_pruning.py --run runs/demo --stage dpo --space configs/sweep/dpo-tiny.yaml \
        --trials 8 --parallel 2 [--quick] [--pruner median] [--first pruned|unpruned]

Each sweep gets its own name (<space>-pruned, <space>-unpruned), so neither continues the other.
TPE proposes the same first trials to both (the same seed), and then differs where the pruned
trials' partial curves changed what it learned. The last line is one JSON object: per sweep, the
wall seconds, the trials' summed seconds, the states, the best value and its trial's values, and
the pruned sweep's wall seconds as a ratio of the unpruned one's.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def one(args, pruner: str) -> dict:
    from sweep.config import SweepConfig
    from sweep.study import main

    name = f"{Path(args.space).stem}-{'unpruned' if pruner == 'none' else 'pruned'}"
    cfg = SweepConfig(run=args.run, space=args.space, trials=args.trials, parallel=args.parallel,
                      threads=args.threads, name=name, pruner=pruner, quick=args.quick, seed=args.seed)
    t0 = time.perf_counter()
    s = main(cfg, args.stage)
    wall = round(time.perf_counter() - t0, 1)
    best = s.get("best") or {}
    return {"name": name, "wall_s": wall, "trial_s": s["seconds"], "pruned_trial_s": s["pruned_seconds"],
            "states": s["states"], "best_value": best.get("value"), "best_params": best.get("params"),
            "baseline_value": (s.get("baseline") or {}).get("value")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--stage", default="dpo")
    ap.add_argument("--space", required=True)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pruner", default="median", choices=["median", "hyperband"])
    ap.add_argument("--first", default="pruned", choices=["pruned", "unpruned"],
                    help="which sweep runs first (alternate between calls to see the order's effect)")
    args = ap.parse_args()
    order = [args.pruner, "none"] if args.first == "pruned" else ["none", args.pruner]
    results = {("unpruned" if p == "none" else "pruned"): one(args, p) for p in order}
    ratio = round(results["pruned"]["wall_s"] / results["unpruned"]["wall_s"], 3)
    print(json.dumps({"run": args.run, "stage": args.stage, "space": args.space, "trials": args.trials,
                      "parallel": args.parallel, "quick": args.quick, **results,
                      "seconds_saved": round(results["unpruned"]["wall_s"] - results["pruned"]["wall_s"], 1),
                      "pruned_over_unpruned": ratio}))


if __name__ == "__main__":
    main()
