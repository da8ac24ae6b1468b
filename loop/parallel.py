"""Stages side by side: a loop's stages that do not read each other's outputs run at once.

After the reward model, DPO does not need it, and PPO and RLOO need the reward model but not each
other, so a round runs as sft → collect → (reward ‖ dpo) → (ppo ‖ rloo) → eval. A stage joins the
group of the stages before it when none of its input files lies in their output directories
(`groups`). Each stage of a group runs in a forked process with one torch thread (core/forked.py
says why one) and its output in `<out>.console.log` beside its directory; the parent prints what
the stages' progress bars say every `PROGRESS_EVERY` seconds, and their other lines when they end.
A group with one stage left to run (the others up to date) runs it here, as usual.

This pays on the CPU with a small model, whose matrix products are too small to keep two cores busy
(bench/parallel_stages.py measures it). With a large model, or on a GPU, one stage at a time is
faster and takes half the memory, so `rlhf loop` runs one at a time unless `--jobs` says otherwise,
and CUDA machines always do (a forked process cannot use CUDA once its parent has).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import sys
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path

from core.config import UserError
from core.runcard import mark_stage

from .runner import Stage, prepare

PROGRESS_EVERY = 30.0  # seconds between the parent's lines on a group's progress
# a tqdm bar's text ("... 12/30 [00:10<00:20, ...]"): shown as progress, not repeated at the end
_BAR = re.compile(r"\d+/\d+ \[[\d:]+<")


def _inside(path: Path, out: Path) -> bool:
    return path == out or out in path.parents


def independent(stage: Stage, group: list[Stage]) -> bool:
    """True when none of `stage`'s input files lies in a directory that a stage of `group` writes."""
    inputs = stage.inputs() if callable(stage.inputs) else stage.inputs
    outs = [g.out.resolve() for g in group]
    return not any(_inside(Path(p).resolve(), out) for p in inputs.values() for out in outs)


def groups(stages: list[Stage], jobs: int, until: str = "") -> list[list[Stage]]:
    """`stages` in order, cut into groups of at most `jobs` consecutive stages that do not read one
    another's outputs; nothing after the stage named `until`."""
    out: list[list[Stage]] = []
    for stage in stages:
        if out and len(out[-1]) < jobs and independent(stage, out[-1]):
            out[-1].append(stage)
        else:
            out.append([stage])
        if stage.name == until:
            break
    return out


def resolve_jobs(jobs: int, device: str, threads: int = 0) -> int:
    """How many stages may run at once: 1 on CUDA (see above); jobs 0 = auto = 2 (the pairs above)
    when the run may use 2 or more threads (`threads`, 0 = every core), else 1."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return 1
    if jobs == 0:
        return 2 if (threads or os.cpu_count() or 1) >= 2 else 1
    return jobs


def log_path(stage: Stage) -> Path:
    return stage.out.with_name(f"{stage.out.name}.console.log")


def _one_thread(cfg):
    return replace(cfg, threads=1) if any(f.name == "threads" for f in fields(cfg)) else cfg


def _child(stage: Stage, cfg, log: Path, conn) -> None:
    """In the forked process: the stage with stdout and stderr in `log`; its exception goes back
    through `conn` (or its text, when it cannot be pickled)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # Python's own streams too: they need not be file descriptors 1 and 2 (a caller may capture them)
    sys.stdout = sys.stderr = open(fd, "w", buffering=1, encoding="utf-8", errors="replace")
    os.environ["TQDM_MININTERVAL"] = "5"  # a bar line every 5 s in the file, not every 0.1 s
    error = None
    try:
        stage.fn(cfg)
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
        if not isinstance(e, (UserError, KeyboardInterrupt)):  # a user's mistake is one line, said by the parent
            traceback.print_exc()
        error = e
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.send(error)
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as its text
        conn.send(RuntimeError(f"{stage.name}: {type(error).__name__}: {error}"))
    conn.close()


def _outcome(recv, proc, crashed: str) -> BaseException | None:
    """The child's exception (None when it finished), or a RuntimeError when it died without a word."""
    try:
        if recv.poll(0.1):
            return recv.recv()
    except EOFError:
        pass
    proc.join()
    return RuntimeError(crashed.format(proc.exitcode))


def last_bar(log: Path) -> str:
    """The newest progress-bar text in a stage's console log ('' when it has none yet)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    bars = [p for p in parts if _BAR.search(p)]
    return bars[-1][:110] if bars else ""


def plain_lines(log: Path) -> list[str]:
    """A finished stage's console lines without its progress bars."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    return [line for line in lines if line.strip() and not _BAR.search(line)]


def run_group(group: list[Stage], prefix: str) -> dict[str, float | None]:
    """Run a group's stages that are not up to date, side by side; their wall seconds (None = skipped).
    When one fails, the others finish first (their work is kept), then its exception is raised."""
    ready = {st.name: prepare(st, prefix) for st in group}
    todo = [st for st in group if ready[st.name] is not None]
    seconds: dict[str, float | None] = {st.name: None for st in group}
    if len(todo) == 1:  # nothing to run beside it: here, with all its threads
        st = todo[0]
        t0 = time.time()
        st.fn(ready[st.name][0])
        mark_stage(st.out, ready[st.name][1], "done")
        return seconds | {st.name: round(time.time() - t0, 1)}
    if not todo:
        return seconds
    ctx = mp.get_context("fork")
    running, errors = {}, []
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.time()
    for st in todo:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(st, _one_thread(ready[st.name][0]), log_path(st), send),
                           name=f"rlhf-{st.name}")
        proc.start()
        send.close()
        running[st.name] = (st, proc, recv)
    names = " ‖ ".join(st.name for st in todo)
    print(f"[{prefix}] {names}: side by side, one thread each; output in "
          + ", ".join(str(log_path(st)) for st in todo), flush=True)
    last_report = time.time()
    try:
        while running:
            for name, (st, proc, recv) in list(running.items()):
                if not recv.poll(0.5) and proc.is_alive():
                    continue
                error = _outcome(recv, proc, f"{name}: the stage's process ended with code {{}} (see {log_path(st)})")
                proc.join()
                del running[name]
                seconds[name] = round(time.time() - t0, 1)
                for line in plain_lines(log_path(st)):
                    print(f"  {line}")
                if error is None:
                    mark_stage(st.out, ready[name][1], "done")
                    print(f"[{prefix}] {name}: done in {seconds[name]} s", flush=True)
                else:
                    errors.append(error)
            if running and time.time() - last_report >= PROGRESS_EVERY:
                last_report = time.time()
                print(f"[{prefix}] " + " · ".join(f"{n}: {last_bar(log_path(st)) or 'starting'}"
                                                  for n, (st, _, _) in running.items()), flush=True)
    except BaseException:
        for _, proc, _ in running.values():
            proc.terminate()
            proc.join()
        raise
    if errors:
        raise errors[0]
    return seconds
