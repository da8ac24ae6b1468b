"""Independent pieces of work in forked processes, one torch thread each.

A tiny model's matrix products are too small to keep several cores busy, so on the CPU two
processes with one thread each get through two pieces of work faster than one process with two
threads (bench/parallel_stages.py). Fork, not spawn: a child starts with the parent's loaded
model, data and judge, and nothing needs pickling on the way in.

One thread per child, always: torch's CPU kernels use OpenMP, and GNU OpenMP cannot start threads
in a forked child once the parent has used them (a child with two threads hung in its first matrix
product here); with one thread no OpenMP team is started. Not for CUDA either: a forked process
cannot use CUDA once its parent has.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.connection import wait
from typing import Callable, Iterator, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")


def resolve_workers(workers: int, threads: int, model) -> int:
    """How many processes share work on `model`: `workers`, 0 = one per thread the stage may use
    (`threads`, 0 = every core); 1 when the model is not on the CPU (see above)."""
    if next(model.parameters()).device.type != "cpu":
        return 1
    return workers or max(1, threads or os.cpu_count() or 1)


def send_outcome(conn, error: BaseException | None, label: str = "") -> None:
    """A forked child's last word to its parent: None when it finished, else its exception (or the
    exception's text, when it does not pickle)."""
    try:
        conn.send(("error", None, error) if error is not None else ("end", None, None))
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as its text
        conn.send(("error", None, RuntimeError(f"{label}{type(error).__name__}: {error}")))


def balance(items: list[X], n: int, size: Callable[[X], float]) -> list[list[X]]:
    """`items` dealt into n lists of about equal total size, largest first (each to the lightest list)."""
    chunks: list[list[X]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for item in sorted(items, key=size, reverse=True):
        i = loads.index(min(loads))
        chunks[i].append(item)
        loads[i] += size(item)
    return [c for c in chunks if c]


def _worker(fn, chunk, conn) -> None:
    import torch

    torch.set_num_threads(1)  # see above: OpenMP threads cannot start in a forked child
    error = None
    try:
        for x in chunk:
            conn.send(("done", x, fn(x)))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
        error = e
    send_outcome(conn, error)
    conn.close()


def fork_map(fn: Callable[[X], Y], chunks: list[list[X]]) -> Iterator[tuple[X, Y]]:
    """(x, fn(x)) for every x of every chunk as they finish, each chunk in a forked process of its
    own with one torch thread; a single chunk runs here, as it is. A child's exception is raised
    here, after the other children are stopped."""
    if len(chunks) <= 1:
        for chunk in chunks:
            for x in chunk:
                yield x, fn(x)
        return
    ctx = mp.get_context("fork")
    procs, conns = [], []
    for chunk in chunks:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(fn, chunk, send))
        proc.start()
        send.close()
        procs.append(proc)
        conns.append(recv)
    open_conns = list(conns)
    try:
        while open_conns:
            for conn in wait(open_conns):
                try:
                    kind, x, value = conn.recv()
                except EOFError:  # the child ended without an error message: it was killed
                    open_conns.remove(conn)
                    proc = procs[conns.index(conn)]
                    proc.join()
                    if proc.exitcode:
                        raise RuntimeError(f"a worker process ended with code {proc.exitcode}") from None
                    continue
                if kind == "error":
                    raise value
                if kind == "done":
                    yield x, value
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
