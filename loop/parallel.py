"""Stages side by side: a loop's stages that do not read each other's outputs run at once.

DPO does not need the reward model, and PPO and RLOO need it but not DPO or each other. So with
`jobs` 2, the reward model runs first with every thread, then DPO and PPO side by side, and RLOO as
soon as a place is free (`run_scheduled`). Stages start in their order, each when fewer than `jobs`
are running and none of its input files lies in a running stage's output directory (`independent`).
A stage marked `alone` (the reward model) starts only when nothing runs and has nothing beside it:
PPO and RLOO wait for it, and DPO beside it would slow it down. On the demo (2 cores, seed 1) the
reward model took 305 s with one thread beside DPO and 174 s alone with two (MiniLM's products are
big enough for two threads); DPO then runs beside PPO, and one round took 869 s instead of 916.

A stage that must run alone (the next stage reads its output) runs here with all its threads, as
usual. The others run in forked processes with one torch thread each (core/forked.py says why one)
and their output in `<out>.console.log` beside their directories; the parent prints what their
progress bars say every `PROGRESS_EVERY` seconds, and their other lines when they end.

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
from dataclasses import dataclass, fields, replace
from pathlib import Path

from core.config import UserError
from core.forked import send_outcome
from core.runcard import mark_stage

from .runner import Stage, prepare, up_to_date

PROGRESS_EVERY = 30.0  # seconds between the parent's lines on the running stages' progress
# a tqdm bar's text ("... 12/30 [00:10<00:20, ...]"): shown as progress, not repeated at the end
_BAR = re.compile(r"\d+/\d+ \[[\d:]+<")


def _inside(path: Path, out: Path) -> bool:
    return path == out or out in path.parents


def independent(stage: Stage, group: list[Stage]) -> bool:
    """True when none of `stage`'s input files lies in a directory that a stage of `group` writes."""
    inputs = stage.inputs() if callable(stage.inputs) else stage.inputs
    outs = [g.out.resolve() for g in group]
    return not any(_inside(Path(p).resolve(), out) for p in inputs.values() for out in outs)


def resolve_jobs(jobs: int, device: str, threads: int = 0) -> int:
    """How many stages may run at once: 1 on CUDA (see above); jobs 0 = auto = 2 when the run may use
    2 or more threads (`threads`, 0 = every core), else 1."""
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
    send_outcome(conn, error, f"{stage.name}: ")
    conn.close()


def _outcome(recv, proc, crashed: str) -> BaseException | None:
    """The child's exception (None when it finished), or a RuntimeError when it died without a word."""
    try:
        if recv.poll(0.1):
            return recv.recv()[2]  # core.forked.send_outcome's (kind, _, exception or None)
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


@dataclass
class _Running:
    stage: Stage
    proc: mp.Process
    recv: object  # the pipe's receiving end
    fp: str
    t0: float


def _start(stage: Stage, cfg, fp: str) -> _Running:
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    proc = ctx.Process(target=_child, args=(stage, _one_thread(cfg), log_path(stage), send), name=f"rlhf-{stage.name}")
    proc.start()
    send.close()
    return _Running(stage, proc, recv, fp, time.time())


def _alone(stage: Stage, pending: list[Stage]) -> bool:
    """Nothing could run beside `stage`: the stages after it, up to the first that reads its output
    (stages start in order), are all up to date."""
    for nxt in pending:
        if not independent(nxt, [stage]):
            return True
        if not up_to_date(nxt):
            return False
    return True


def run_scheduled(stages: list[Stage], prefix: str, jobs: int, on_change=lambda seconds: None) -> dict:
    """Run `stages` (see above); their wall seconds (None = up to date, skipped), passed to
    `on_change` after each. When a stage fails, no new one starts; those running finish (their work
    is kept), then its exception is raised."""
    seconds: dict[str, float | None] = {}
    pending, running, errors = list(stages), {}, []
    last_report = time.time()
    try:
        while pending or running:
            while (pending and not errors and len(running) < jobs and not (pending[0].alone and running)
                   and independent(pending[0], [r.stage for r in running.values()])):
                st = pending.pop(0)
                ready = prepare(st, prefix)
                if ready is None:
                    seconds[st.name] = None
                elif not running and (st.alone or _alone(st, pending)):
                    t0 = time.time()  # nothing can run beside it: here, with all its threads
                    st.fn(ready[0])
                    mark_stage(st.out, ready[1], "done")
                    seconds[st.name] = round(time.time() - t0, 1)
                else:
                    running[st.name] = _start(st, *ready)
                    beside = [n for n in running if n != st.name]
                    print(f"[{prefix}] {st.name}: in its own process, one thread"
                          + (f", beside {', '.join(beside)}" if beside else "") + f"; output in {log_path(st)}",
                          flush=True)
                on_change(seconds)
            if not running:
                break
            for name, r in list(running.items()):
                if not r.recv.poll(0.5) and r.proc.is_alive():
                    continue
                error = _outcome(r.recv, r.proc, f"{name}: the stage's process ended with code {{}} "
                                                 f"(see {log_path(r.stage)})")
                r.proc.join()
                del running[name]
                seconds[name] = round(time.time() - r.t0, 1)
                for line in plain_lines(log_path(r.stage)):
                    print(f"  {line}")
                if error is None:
                    mark_stage(r.stage.out, r.fp, "done")
                    print(f"[{prefix}] {name}: done in {seconds[name]} s", flush=True)
                else:
                    errors.append(error)
                on_change(seconds)
            if running and time.time() - last_report >= PROGRESS_EVERY:
                last_report = time.time()
                print(f"[{prefix}] " + " · ".join(f"{n}: {last_bar(log_path(r.stage)) or 'starting'}"
                                                  for n, r in running.items()), flush=True)
    except BaseException:
        for r in running.values():
            r.proc.terminate()
            r.proc.join()
        raise
    if errors:
        raise errors[0]
    return seconds
