"""The annotation app as bench/collect_load.py serves it: the production app in its own
interpreter, with timers around a submit's parts so the bench can say where its time goes.

    python bench/collect_load_server.py DB PORT PROFILE_JSON

Per submit it records (wall clock, seconds):
  at          when it ended (time.time(), to file it under a bench phase);
  handler     AnnotateView.vote, the vote route's work, on a worker thread;
  handler_cpu the CPU time that thread spent in it (the rest of `handler` is waiting: for
              the GIL, the write lock, the database);
  transaction Store.transact: the vote and the next assignment, lock wait included;
  sql         statements on the wire (cursor execute, BEGIN included: on SQLite, BEGIN
              IMMEDIATE is where a writer waits for another process' lock).
On SIGTERM the records are written to PROFILE_JSON and the server exits. The process's own
CPU time is read by the bench from /proc, so "server CPU - handler_cpu" is what the HTTP
layers (uvicorn, Starlette, Gradio's middleware) spend around the handler.
"""
from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from sqlalchemy import event  # noqa: E402

from collect.app import build_app, launch  # noqa: E402
from collect.app_annotate import AnnotateView  # noqa: E402
from collect.app_common import AppConfig  # noqa: E402
from collect.store import open_store  # noqa: E402

CFG = dict(overlap=3, gold_rate=0.0)
_local = threading.local()


def _timers(store, records: list[dict]) -> None:
    """Timers on the handler, the write transaction and every statement."""
    def count_sql(conn, cursor, statement, params, context, executemany):
        _local.sql_t0 = time.perf_counter()

    def counted_sql(conn, cursor, statement, params, context, executemany):
        _local.sql = getattr(_local, "sql", 0.0) + time.perf_counter() - _local.sql_t0

    event.listen(store.engine, "before_cursor_execute", count_sql)
    event.listen(store.engine, "after_cursor_execute", counted_sql)

    transact = store.transact

    @functools.wraps(transact)
    def timed_transact(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return transact(*args, **kwargs)
        finally:
            _local.transaction = getattr(_local, "transaction", 0.0) + time.perf_counter() - t0

    store.transact = timed_transact
    submit = AnnotateView.vote

    @functools.wraps(submit)
    def timed_submit(self, *args, **kwargs):
        _local.sql = _local.transaction = 0.0
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return submit(self, *args, **kwargs)
        finally:
            records.append({"at": time.time(), "handler": time.perf_counter() - t0,
                            "handler_cpu": time.thread_time() - c0,
                            "transaction": _local.transaction, "sql": _local.sql})

    AnnotateView.vote = timed_submit


def serve(db: str, port: int, profile_path: str) -> None:
    records: list[dict] = []
    store = open_store(db)
    _timers(store, records)

    def stop(signum, frame):
        Path(profile_path).write_text(json.dumps(records))
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    launch(build_app(store, AppConfig(**CFG)), store, port=port, quiet=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
