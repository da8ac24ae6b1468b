"""`rlhf demo`: the loop on the embedded default domain, stage by stage, skipping stages whose
config and inputs have not changed since they last finished (a fingerprint in `inputs.json`).

An interrupted run picks up where it stopped: finished stages are skipped, and an SFT run that
left checkpoints resumes from the newest one.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from core.config import BaseConfig, DataConfig, DemoConfig, EvalConfig, SFTConfig, load_config
from core.io import write_json
from core.runcard import fingerprint, mark_stage, stage_status

# Reduced sizes for CI and tests: the same code paths, minutes less.
QUICK = {
    "base": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 176,
             "vocab_size": 1024, "seq_len": 128, "max_steps": 40, "warmup_steps": 4},
    "sft": {"max_steps": 20, "eval_steps": 20, "batch_size": 8, "logging_steps": 5},
    "eval": {"max_prompts": 12, "max_new_tokens": 32},
}


def data_main(cfg: DataConfig) -> dict:
    """`rlhf data demo`: write the demo domain's data files to <run>/data."""
    from demo.data import build_demo_data

    out = Path(cfg.run) / "data"
    paths = build_demo_data(out, seed=cfg.seed, n_sft=cfg.n_sft, n_pref=cfg.n_pref, n_eval=cfg.n_eval,
                            n_redteam=cfg.n_redteam)
    info = {k: str(v) for k, v in paths.items()}
    write_json(out / "metrics.json", info)
    print(f"[data] wrote {', '.join(sorted(info))} to {out}")
    return info


def _stage_configs(cfg: DemoConfig) -> dict:
    common = {"run": cfg.run, "seed": cfg.seed}
    runtime = {"device": cfg.device, "dtype": cfg.dtype, "threads": cfg.threads,
               "gradient_checkpointing": cfg.gradient_checkpointing}
    quick = QUICK if cfg.quick else {}
    return {
        "data": load_config(DataConfig, None, common),
        # quick sizes are defaults: a stage YAML given to the demo overrides them
        "base": load_config(BaseConfig, cfg.base_config or None, {**common, **runtime}, quick.get("base")),
        "sft": load_config(SFTConfig, cfg.sft_config or None, {**common, **runtime}, quick.get("sft")),
        "eval": load_config(EvalConfig, cfg.eval_config or None, {**common, **runtime}, quick.get("eval")),
    }


def main(cfg: DemoConfig) -> dict:
    from demo.base import main as base_main
    from eval.gold import format_table
    from eval.gold import evaluate as eval_main
    from sft.train import main as sft_main

    run = Path(cfg.run)
    if cfg.fresh and run.exists():
        shutil.rmtree(run)
    stages = _stage_configs(cfg)
    data = run / "data"
    plan = [
        ("data", data, data_main, {}),
        ("base", run / "base", base_main, {"corpus": data / "corpus.txt"}),
        ("sft", run / "sft", sft_main, {"base": run / "base" / "model.safetensors", "data": data / "sft.jsonl"}),
        ("eval", run / "eval", eval_main, {"base": run / "base" / "model.safetensors",
                                           "sft": run / "sft" / "adapter_model.safetensors",
                                           "prompts": data / "prompts.jsonl"}),
    ]
    timings, results = {}, {}
    for name, out, fn, inputs in plan:
        stage_cfg = stages[name]
        fp = fingerprint(stage_cfg, inputs)
        status = stage_status(out, fp)
        if status == "done":
            print(f"[demo] {name}: up to date, skipped")
            timings[name] = 0.0
            continue
        if status == "interrupted" and name == "sft":
            print(f"[demo] {name}: resuming an interrupted run")
            stage_cfg = load_config(SFTConfig, None, {**vars(stage_cfg), "resume": True})
        else:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)  # from other settings: never resume those
            print(f"[demo] {name}: running")
        mark_stage(out, fp, "running")
        t0 = time.time()
        results[name] = fn(stage_cfg)
        timings[name] = round(time.time() - t0, 1)
        mark_stage(out, fp, "done")
    summary = {"stage_seconds": timings}
    write_json(run / "demo_timings.json", summary)
    print("\n[demo] stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    eval_metrics = json.loads((run / "eval" / "metrics.json").read_text())
    print(format_table(eval_metrics))
    print(f"[demo] run directory: {run} (eval/metrics.json, eval/samples.jsonl, each stage's README.md)")
    return {"timings": timings, "eval": eval_metrics}
