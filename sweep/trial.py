"""One trial of a sweep: the stage's own command in a child process, watched from outside.

The trial is an ordinary stage run (`python -m cli STAGE --config trial-NNN.yaml`) whose `out` is
the trial's directory, so it writes what the stage always writes there, and a crash in it cannot
take the sweep down. The parent reads the evaluation rows the stage appends to its log.jsonl,
reports each to Optuna, and stops the process when the pruner says so. Nothing in the stages
knows about sweeps.

A child process, not a thread: each trial gets its own torch thread count (the sweep splits the
machine's threads among the trials it runs at once) and its own memory, given back when it ends.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import UserError, apply_updates, dump_yaml

from .objective import Metric

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 30.0  # how often a running trial tells the storage it is alive (study.HEARTBEAT)


class TrialFailed(RuntimeError):
    """The stage's process ended with an error that is not the user's (a crash, out of memory)."""


def halve_steps(cfg):
    """--quick: half the optimizer steps (or epochs), and evaluations twice as often, so the
    pruner sees as many held-out values as in a full trial."""
    changes: dict[str, Any] = {}
    if getattr(cfg, "max_steps", -1) > 0:
        changes["max_steps"] = max(1, cfg.max_steps // 2)
    elif hasattr(cfg, "num_epochs"):
        changes["num_epochs"] = cfg.num_epochs / 2
    if getattr(cfg, "eval_steps", 0) > 1:
        changes["eval_steps"] = max(1, cfg.eval_steps // 2)
    return replace(cfg, **changes)


def trial_config(base, params: dict, out: Path, threads: int, quick: bool):
    """The stage config of one trial: the starting config with the trial's values, writing to `out`."""
    cfg = apply_updates(base, params, f"trial {out.name}")
    cfg = replace(cfg, out=str(out), threads=threads, resume=False)
    return halve_steps(cfg) if quick else cfg


def evaluations(log: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every evaluation row in a stage's log.jsonl so far (a half-written last
    line is left for the next look)."""
    try:
        text = log.read_text(encoding="utf-8")
    except OSError:
        return []
    out, steps = [], set()
    for line in text.split("\n")[:-1]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in row and row.get("step") is not None and int(row["step"]) not in steps:
            steps.add(int(row["step"]))  # a stage's final evaluation may repeat its last step's
            out.append((int(row["step"]), float(row[key])))
    return out


def last_line(path: Path) -> str:
    try:
        lines = [ln.split("\r")[-1].strip() for ln in path.read_text(encoding="utf-8", errors="replace").split("\n")]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def stop(proc: subprocess.Popen) -> None:
    """End the trial's process group: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_trial(trial, stage: str, cfg, metric: Metric, heartbeat=lambda: None, started=lambda proc: None) -> float:
    """Run the stage with `cfg` (trial_config) for the optuna.Trial `trial`; its final metric.
    Raises optuna.TrialPruned when pruned, TrialFailed when the process fails, UserError when the
    stage refused its config (the next trial would too)."""
    import optuna

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = out.with_name(f"{out.name}.yaml")
    config.write_text(dump_yaml(cfg), encoding="utf-8")
    console = out.with_name(f"{out.name}.console.log")
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    with open(console, "w", encoding="utf-8") as f:
        proc = subprocess.Popen([sys.executable, "-m", "cli", stage, "--config", str(config)], stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    started(proc)
    seen, beat = 0, 0.0  # a heartbeat at once, then every HEARTBEAT_SECONDS
    try:
        while True:
            finished = proc.poll() is not None
            rows = evaluations(out / "log.jsonl", metric.log_key)
            for step, value in rows[seen:]:
                trial.report(value, step)
                if trial.should_prune():
                    stop(proc)
                    raise optuna.TrialPruned(f"{metric.name} {value:.4g} at step {step}")
            seen = len(rows)
            if finished:
                break
            if time.time() - beat >= HEARTBEAT_SECONDS:
                heartbeat()
                beat = time.time()
            time.sleep(POLL_SECONDS)
    except BaseException:
        stop(proc)
        raise
    if proc.returncode == 2:  # the stage's one-line refusal of a bad option or file
        raise UserError(f"trial {trial.number} ({console}): {last_line(console)}")
    if proc.returncode != 0:
        raise TrialFailed(f"exit code {proc.returncode}: {last_line(console)} (see {console})")
    metrics_file = out / "metrics.json"
    try:
        value = json.loads(metrics_file.read_text(encoding="utf-8"))[metric.name]
    except (OSError, ValueError, KeyError):
        raise TrialFailed(f"{metrics_file}: no '{metric.name}' after the stage finished") from None
    if value is None:
        raise TrialFailed(f"{metrics_file}: '{metric.name}' is null (no held-out rows?)")
    return float(value)
