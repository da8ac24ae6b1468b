"""`rlhf demo`: the whole loop on the embedded default domain, stage by stage:

    data → base → sft → collect (pairs, simulated annotators, agreement, export) → reward
         → dpo → ppo → eval (win rates, safety audit, report.html)

A stage is skipped when its config and inputs have not changed since it last finished (a
fingerprint in `<stage>/inputs.json`); `--fresh` redoes everything. An interrupted run picks up
where it stopped: finished stages are skipped, and a training stage that left checkpoints
resumes from the newest one.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

from core import registry
from core.config import EvalConfig, RewardConfig, SFTConfig, UserError, load_config
from core.io import write_json
from core.runcard import fingerprint, mark_stage, stage_status
from demo import oracle
from demo.config import STAGES, BaseConfig, DataConfig, DemoConfig, SimulatedRoundConfig
from demo.judge import DOMAIN, reward_gold
from demo.sizes import FULL, QUICK

ORDER = STAGES
CLASSES = {"data": DataConfig, "base": BaseConfig, "sft": SFTConfig, "collect": SimulatedRoundConfig,
           "reward": RewardConfig, **{a.name: a.config_class() for a in registry.ALGORITHMS}, "eval": EvalConfig}
RESUMABLE = ("sft", "reward", *registry.names())  # stages with checkpoints and a `resume` option


def data_main(cfg: DataConfig) -> dict:
    """`rlhf data demo`: write the demo domain's data files to <run>/data."""
    from demo.data import build_demo_data

    out = Path(cfg.run) / "data"
    paths = build_demo_data(out, seed=cfg.seed, n_sft=cfg.n_sft, n_pref=cfg.n_pref, n_eval=cfg.n_eval,
                            n_redteam=cfg.n_redteam)
    info = {k: str(v) for k, v in paths.items()}
    write_json(out / "metrics.json", {"domain": DOMAIN, **info})  # marks a demo run (demo/judge.py)
    print(f"[data] wrote {', '.join(sorted(info))} to {out}")
    return info


def collect_main(cfg: SimulatedRoundConfig) -> dict:
    """The annotation round with simulated annotators: pairs → votes → agreement → export."""
    from collect import commands
    from collect.generate import generate_pairs
    from demo.simulate import simulate_run

    run = Path(cfg.run)
    generate_pairs(run, policy="sft", n=cfg.n_pairs, temperature=cfg.temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
                   threads=cfg.threads)
    sim = simulate_run(run, n_annotators=cfg.annotators, careless=cfg.careless, seed=cfg.seed,
                       overlap=cfg.overlap, gold_rate=cfg.gold_rate, both_bad_below=cfg.both_bad_below)
    report = commands.report(run, overlap=cfg.overlap)
    stats = commands.export(run, min_agreement=cfg.min_agreement)
    choice = report["agreement"]["choice"] or {}
    metrics = {"n_votes": sim["n_votes"], "n_pairs": stats["n_pairs"], "choice_agreement": choice.get("value"),
               "choice_method": choice.get("method"), "flagged_annotators": stats["flagged_annotators"]}
    write_json(run / "collect" / "metrics.json", metrics)
    return metrics


def _stage_configs(cfg: DemoConfig) -> dict:
    common = {"run": cfg.run, "seed": cfg.seed}
    runtime = {"device": cfg.device, "dtype": cfg.dtype, "threads": cfg.threads,
               "gradient_checkpointing": cfg.gradient_checkpointing}
    sizes = QUICK if cfg.quick else FULL
    out = {}
    for name in ORDER:
        yaml = getattr(cfg, f"{name}_config", "") or None
        overrides = common if name == "data" else {**common, **runtime}
        # the quick/full sizes are defaults: a stage YAML given to the demo overrides them
        out[name] = load_config(CLASSES[name], yaml, overrides, sizes.get(name))
    return out


def _plan(run: Path) -> list[tuple[str, Path, Callable, dict]]:
    from demo.base import main as base_main
    from eval.stage import main as eval_main
    from reward.train import main as reward_main
    from sft.train import main as sft_main

    data, base_w = run / "data", run / "base" / "model.safetensors"
    sft_w = run / "sft" / "adapter_model.safetensors"
    prefs = run / "collect" / "preferences.jsonl"
    return [
        ("data", data, data_main, {}),
        ("base", run / "base", base_main, {"corpus": data / "corpus.txt"}),
        ("sft", run / "sft", sft_main, {"base": base_w, "data": data / "sft.jsonl"}),
        ("collect", run / "collect", collect_main, {"sft": sft_w, "prompts": data / "prompts.jsonl"}),
        ("reward", run / "reward", partial(reward_main, gold=reward_gold()), {"preferences": prefs}),
        *[(a.name, run / a.name, a.main_fn(), {k: run / v for k, v in a.inputs.items()})
          for a in registry.ALGORITHMS],
        ("eval", run / "eval", partial(eval_main, judge=oracle),
         {"sft": sft_w, **{a.name: run / a.name / "adapter_model.safetensors" for a in registry.ALGORITHMS},
          "reward": run / "reward" / "metrics.json", "prompts": data / "prompts.jsonl"}),
    ]


def _run_stage(name: str, out: Path, fn: Callable, stage_cfg, inputs: dict) -> float | None:
    """Run one stage unless it is up to date; returns its wall seconds (None when skipped).
    The fingerprint leaves out the run directory's path (the inputs count by content), so a
    run that was moved or copied is still up to date."""
    fp = fingerprint(replace(stage_cfg, run=""), inputs)
    status = stage_status(out, fp)
    if status == "done":
        print(f"[demo] {name}: up to date, skipped")
        return None
    if status == "interrupted" and name in RESUMABLE:
        print(f"[demo] {name}: resuming an interrupted run")
        stage_cfg = replace(stage_cfg, resume=True)
    else:
        if name in RESUMABLE:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)  # from other settings: never resume those
        if name == "collect" and out.exists():  # votes on other pairs: start afresh, keep the old store
            out.rename(out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))
            print(f"[demo] collect: the previous round moved to {out.name}.stale-*")
        print(f"[demo] {name}: running")
    mark_stage(out, fp, "running")
    t0 = time.time()
    fn(stage_cfg)
    mark_stage(out, fp, "done")
    return round(time.time() - t0, 1)


def main(cfg: DemoConfig) -> dict:
    from eval.stage import format_table

    if cfg.until and cfg.until not in ORDER:
        raise UserError(f"--until {cfg.until!r}: not a stage (one of {', '.join(ORDER)})")
    run = Path(cfg.run)
    if cfg.fresh and run.exists():
        shutil.rmtree(run)
    stages = _stage_configs(cfg)
    timings = {}
    for name, out, fn, inputs in _plan(run):
        seconds = _run_stage(name, out, fn, stages[name], inputs)
        timings[name] = 0.0 if seconds is None else seconds
        write_json(run / "demo_timings.json", {"stage_seconds": timings})
        if name == cfg.until:
            break
    print("\n[demo] stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())
          + f"; total {sum(timings.values()):.0f}")
    result = {"timings": timings}
    metrics_path = run / "eval" / "metrics.json"
    if "eval" in timings and metrics_path.exists():
        result["eval"] = json.loads(metrics_path.read_text())
        print(format_table(result["eval"]))
        print(f"[demo] report: {run / 'eval' / 'report.html'}")
    print(f"[demo] run directory: {run} (each stage's README.md, metrics.json and log.jsonl)")
    return result
