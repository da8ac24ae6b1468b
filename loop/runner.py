"""Run one stage of a loop unless it is up to date, resuming it when it was interrupted.

A stage is up to date when it finished with the same fingerprint: its resolved config (with the
run directory's own path left out, so a moved run still counts) and the contents of its input
files (core.runcard.fingerprint). A stage that started with this fingerprint and did not finish is
resumed from its newest checkpoint when it has a `resume` option; otherwise, or when its
settings changed, it starts afresh.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from core.config import UserError
from core.rounds import locate
from core.runcard import fingerprint, mark_stage, stage_status


@dataclass
class Stage:
    name: str
    out: Path
    fn: Callable[[Any], Any]
    cfg: Any
    # files whose contents the fingerprint covers; a callable is asked when the stage is about to
    # run, for inputs that an earlier stage of the same run creates
    inputs: dict[str, Path] | Callable[[], dict[str, Path]] = field(default_factory=dict)
    # called with (out, status) before a start that is not a resume, status 'stale' (other settings
    # or inputs, or never run) or 'interrupted': e.g. to move an old annotation round aside
    on_fresh: Callable[[Path, str], None] | None = None
    # with stages side by side (loop/parallel.py): run with every thread and nothing beside it, even
    # when a later stage could run beside it, because the stages after it wait for its output
    alone: bool = False


def resumable(cfg: Any) -> bool:
    return any(f.name == "resume" for f in fields(cfg))


def portable(cfg: Any) -> Any:
    """cfg without the run directory's own path: `run` emptied, and paths inside the run written
    relative to it (to the run's top for a later round, core/rounds.py), so a run that was moved
    or copied is still up to date (its inputs count by content)."""
    run = getattr(cfg, "run", "")
    if not run:
        return cfg
    # a later round's directory counts from the run's top: its inputs from earlier rounds too
    root, changes = locate(Path(run).resolve())[0], {"run": ""}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name != "run" and isinstance(value, str) and value:
            try:
                changes[f.name] = "<run>/" + Path(value).resolve().relative_to(root).as_posix()
            except ValueError:
                pass  # outside the run: the path itself is part of the settings
    return replace(cfg, **changes)


def up_to_date(stage: Stage) -> bool:
    """Whether `stage` finished with its current settings and inputs (nothing is marked or printed)."""
    inputs = stage.inputs() if callable(stage.inputs) else stage.inputs
    return stage_status(stage.out, fingerprint(portable(stage.cfg), inputs)) == "done"


def prepare(stage: Stage, prefix: str = "loop") -> tuple[Any, str] | None:
    """(the config to run with, its fingerprint), with the stage marked running; None when it is
    up to date. A resumable stage interrupted under the same fingerprint resumes."""
    cfg = stage.cfg
    inputs = stage.inputs() if callable(stage.inputs) else stage.inputs
    fp = fingerprint(portable(cfg), inputs)
    status = stage_status(stage.out, fp)
    if status == "done":
        print(f"[{prefix}] {stage.name}: up to date, skipped")
        return None
    if status == "interrupted" and resumable(cfg):
        print(f"[{prefix}] {stage.name}: resuming an interrupted run")
        cfg = replace(cfg, resume=True)
    else:
        if resumable(cfg):
            shutil.rmtree(stage.out / "checkpoints", ignore_errors=True)  # other settings: never resume those
        if stage.on_fresh is not None:
            stage.on_fresh(stage.out, status)
        print(f"[{prefix}] {stage.name}: running")
    mark_stage(stage.out, fp, "running")
    return cfg, fp


def run_stage(stage: Stage, prefix: str = "loop") -> float | None:
    """Run `stage` unless it is up to date; returns its wall seconds (None when skipped)."""
    ready = prepare(stage, prefix)
    if ready is None:
        return None
    cfg, fp = ready
    t0 = time.time()
    stage.fn(cfg)
    mark_stage(stage.out, fp, "done")
    return round(time.time() - t0, 1)


# What a run directory holds that `rlhf loop` or `rlhf demo` wrote (docs/run-directory.md),
# beside one directory per stage (the algorithms' names come from core.registry)
RUN_DIRS = ("data", "base", "sft", "collect", "reward", "eval", "rounds")
RUN_FILES = ("loop.json", "loop_timings.json", "demo_timings.json")


def run_outputs(run: Path, stage_names: tuple[str, ...] = ()) -> list[Path]:
    """The entries of `run` that the loop writes: stage directories, their console logs and the
    loop's own files. Anything else (a note, a bench's cache) is not the loop's to delete."""
    dirs = set(RUN_DIRS) | set(stage_names)
    return sorted(p for p in run.iterdir()
                  if (p.is_dir() and p.name in dirs) or p.name in RUN_FILES
                  or (p.is_file() and p.name.endswith(".console.log") and p.name[:-12] in dirs))


def clear_run(run: Path, stage_names: tuple[str, ...] = (), keep: tuple[str, ...] = (),
              inputs: tuple[str | Path, ...] = ()) -> None:
    """`--fresh`: delete the loop's outputs in `run` so every stage starts anew.

    Only what `run_outputs` names goes, and only in a directory the loop made (it holds the
    loop's own files or a stage's record, inputs.json): a --run that names another directory by
    mistake loses nothing. The entries in `keep` (people's votes: `collect`,
    `rounds`) are moved aside under a dated name instead (move_aside). An input file inside an
    output that would go (--sft runs/mine/data/sft.jsonl) stops it, before anything is touched."""
    if not run.exists():
        return
    outputs = run_outputs(run, stage_names)
    made_by_loop = any(p.name in RUN_FILES or (p / "inputs.json").exists() for p in outputs)
    if outputs and not made_by_loop:
        raise UserError(f"--fresh: {run} holds {', '.join(p.name for p in outputs)} but no record of a loop "
                        "(loop.json, or a stage's inputs.json): not a run directory the loop made, so nothing "
                        "was deleted; give --run a new directory")
    for given in inputs:
        path = Path(given).resolve()
        for out in outputs:
            if out.name not in keep and (path == out.resolve() or out.resolve() in path.parents):
                raise UserError(f"--fresh would delete {out}, which holds the input {given}: move the "
                                f"input out of the run directory first")
    for out in outputs:
        if out.name in keep:
            move_aside(out)
        elif out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    left = sorted(p.name for p in run.iterdir() if ".stale-" not in p.name)
    if left:
        print(f"[loop] --fresh: kept {', '.join(left)} in {run} (not written by the loop)")


def move_aside(out: Path) -> None:
    """Keep an earlier annotation round (its votes) under a dated name instead of deleting it."""
    if out.exists():
        stale = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(stale)
        print(f"[loop] {out.name}: the previous round moved to {stale.name}")
