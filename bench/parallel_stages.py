"""The demo's independent stages one after another (all threads each) against side by side (one
thread each, loop/parallel.py), and eval's answering in one process against --eval_workers forked
single-thread ones (core/forked.py), on a copy of a finished demo run: wall seconds of each way and their
ratio, in one process, the same day, the same stage configs.

    python bench/parallel_stages.py --run runs/demo [--groups reward,dpo,ppo,rloo] [--eval_workers 2]
                                    [--repeats 1]

Each repeat runs every group both ways, alternating which way goes first, each time from the
group's stage directories as the run had them, so both start from the same inputs. The eval
comparison also checks that both ways wrote the same samples. The last line is one JSON object: per
group, the serial and side-by-side seconds (median over repeats) and serial / side by side.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 1)


def summary(seconds: dict[str, list[float]]) -> dict:
    med = {w: statistics.median(v) for w, v in seconds.items()}
    return {**{w: {"median_s": med[w], "runs_s": v} for w, v in seconds.items()},
            "serial_over_side_by_side": round(med["serial"] / med["side_by_side"], 3)}


def bench_eval(stage, args) -> dict:
    """The eval stage with workers=1 and workers=--eval_workers; their samples must match."""
    from dataclasses import replace

    from loop.runner import run_stage

    seconds: dict[str, list[float]] = {"serial": [], "side_by_side": []}
    samples = {}
    for r in range(args.repeats):
        for way in (["serial", "side_by_side"] if r % 2 == 0 else ["side_by_side", "serial"]):
            workers = 1 if way == "serial" else args.eval_workers
            (stage.out / "inputs.json").unlink(missing_ok=True)
            seconds[way].append(timed(lambda: run_stage(replace(stage, cfg=replace(stage.cfg, workers=workers)),
                                                        "bench")))
            samples[way] = (stage.out / "samples.jsonl").read_text()
            print(f"[bench] eval workers {workers}: {seconds[way][-1]} s", flush=True)
    return {**summary(seconds), "same_samples": samples["serial"] == samples["side_by_side"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="a finished demo run (copied; never changed)")
    ap.add_argument("--groups", nargs="*", default=["reward,dpo,ppo,rloo"],
                    help="stages to run one at a time, then scheduled two at a time (loop/parallel.py)")
    ap.add_argument("--eval_workers", type=int, default=2, help="eval's processes against 1 (0 = skip eval)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="the serial way's threads (0 = all cores); side by side, "
                                                              "each stage has one")
    args = ap.parse_args()
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import plan
    from loop.parallel import run_scheduled
    from loop.runner import run_stage

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, symlinks=True)
        stages = {s.name: s for s in plan(load_config(DemoConfig, None, {"run": str(run), "threads": args.threads}))}
        results = {}
        for spec in args.groups:
            group = [stages[n] for n in spec.split(",")]
            kept = {s.name: Path(tmp) / f"kept-{s.name}" for s in group}
            for s in group:
                shutil.copytree(s.out, kept[s.name], symlinks=True)

            def fresh():
                for s in group:
                    shutil.rmtree(s.out)
                    shutil.copytree(kept[s.name], s.out, symlinks=True)
                    (s.out / "inputs.json").unlink()  # not up to date: the stage runs again

            ways = {"serial": lambda: [run_stage(s, "bench") for s in group],
                    "side_by_side": lambda: run_scheduled(group, "bench", jobs=2)}
            seconds: dict[str, list[float]] = {w: [] for w in ways}
            for r in range(args.repeats):
                for way in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
                    fresh()
                    seconds[way].append(timed(ways[way]))
                    print(f"[bench] {spec} {way}: {seconds[way][-1]} s", flush=True)
            results[spec] = summary(seconds)
        if args.eval_workers:
            results[f"eval workers 1,{args.eval_workers}"] = bench_eval(stages["eval"], args)
    print(json.dumps({"run": args.run, "threads": args.threads, "groups": results}))


if __name__ == "__main__":
    main()
