"""Annotation app under load: 32 annotators at once over HTTP on loopback, against the same
handlers called as Python functions with the same concurrency (the baseline), in one run.

Usage: python bench/collect_load.py [--clients 32] [--items 500] [--seconds 12]
Each client logs in, then loops "next item" (the page-load call) -> "submit" (which also
returns the next item) until --iterations or --seconds run out. The server is a subprocess
(its own interpreter, as in production) on a temp database; the HTTP requests are the ones
the browser makes (/gradio_api/queue/join + the event stream). Afterwards the database is
checked against the acknowledged submits: lost and duplicated votes must both be 0.
Prints votes/s and p50/p95 latency of both calls per mode, the ratios, and one JSON line last.
Goal: p95 submit under 200 ms on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

START = time.monotonic()  # --budget counts from here: the heavy imports below included
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from collect.app_common import AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.store import User, Vote, open_store  # noqa: E402
from collect.users import hash_password  # noqa: E402

PASSWORD = "load test password"
RATINGS = [4, 4, 4, 1, 4, 4, 4, 2, 2, 2, 1, 2, 2, 2]
CFG = dict(overlap=3, gold_rate=0.0)


def make_db(path: Path, n_items: int, names: list[str]) -> None:
    store = open_store(path)
    # One cheap hash for all (the parameters live in the hash): the bench measures voting;
    # 32 log-ins at the production cost would eat a fifth of the time budget on 2 cores.
    hashed = hash_password(PASSWORD, n=2**10)
    with store.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash=hashed) for n in names)
    filler = "Thanks for reaching out! Our store on Main Street opens at 9am on weekdays. " * 3
    add_items(store, [{"id": f"load-{k:05d}", "prompt": f"When do you open on day {k}?",
                       "response_a": f"A {k}. {filler}", "response_b": f"B {k}. {filler}"}
                      for k in range(n_items)])
    store.close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


# ----------------------------------------------------------------------- clients


class HttpAnnotator:
    """One browser-like session: a login cookie, a session id, events via the queue."""

    def __init__(self, url: str, name: str, fns: dict[str, tuple[int, bool]]):
        self.http = httpx.Client(base_url=url, timeout=10)
        r = self.http.post("/login", data={"username": name, "password": PASSWORD})
        r.raise_for_status()
        self.fns, self.session = fns, uuid.uuid4().hex[:11]

    def call(self, api_name: str, data: list) -> list:
        """One event as the browser sends it: a plain POST for the annotator's calls (not
        queued), join + event stream for queued ones."""
        fn_index, queued = self.fns[api_name]
        body = {"data": data, "fn_index": fn_index, "session_hash": self.session,
                "event_data": None, "trigger_id": None}
        if not queued:
            r = self.http.post(f"/gradio_api/run/{api_name}", json=body)
            if r.status_code != 200:
                raise RuntimeError(r.text[:300])
            return r.json()["data"]
        self.http.post("/gradio_api/queue/join", json=body).raise_for_status()
        with self.http.stream("GET", "/gradio_api/queue/data",
                              params={"session_hash": self.session}) as s:
            for line in s.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        if not msg.get("success"):
                            raise RuntimeError(msg.get("output"))
                        return msg["output"]["data"]
        raise RuntimeError("event stream ended without a result")

    def next_item(self) -> bool:
        return bool(self.call("annotate_page", [])[3])  # the prompt ("" when all done)

    def submit(self) -> bool:
        out = self.call("submit", [None, None, "left", [], ""] + RATINGS)
        return out[-1].startswith("Saved")  # the status line


class DirectAnnotator:
    """The same handler code, called in-process: no HTTP, no Gradio queue."""

    def __init__(self, view, name: str):
        self.view, self.request, self.state = view, SimpleNamespace(username=name), None

    def next_item(self) -> bool:
        out = self.view.load(self.request)
        self.state = out[0]
        return out[0] is not None

    def submit(self) -> bool:
        out = self.view.submit(self.request, self.state, time.time(), "left", [], "", *RATINGS)
        self.state = out[0]
        return out[-1].startswith("Saved")


def drive(clients: list, iterations: int, seconds: float, think: float = 0.0) -> dict:
    """Every client loops next item -> submit; latencies and acknowledged submits.

    think = 0: all clients start together and never pause (saturation: latency is then
    queueing, N clients / throughput). think > 0: each client starts at a random moment and
    pauses a random 0.5-1.5 x think after each vote, as people reading the next pair do."""
    lat = {"next": [], "submit": []}
    acked, errors = [0] * len(clients), []
    start, lock = threading.Barrier(len(clients)), threading.Lock()

    def loop(k: int, c) -> None:
        rng = random.Random(k)
        start.wait()
        deadline = time.perf_counter() + seconds
        time.sleep(rng.uniform(0, think))
        try:
            for _ in range(iterations):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                more = c.next_item()
                t1 = time.perf_counter()
                if not more:
                    break
                ok = c.submit()
                t2 = time.perf_counter()
                with lock:
                    lat["next"].append(t1 - t0)
                    lat["submit"].append(t2 - t1)
                acked[k] += ok
                time.sleep(think * rng.uniform(0.5, 1.5))
        except Exception as e:  # noqa: BLE001 - counted and reported, the others go on
            errors.append(f"client {k}: {e!r}"[:300])

    threads = [threading.Thread(target=loop, args=(k, c)) for k, c in enumerate(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"acked": sum(acked), "wall_s": wall, "lat": lat, "errors": errors}


def check_db(path: Path, acked: int) -> dict:
    """Votes in the database against acknowledged submits."""
    store = open_store(path)
    with store.read() as s:
        rows = s.scalar(select(func.count()).select_from(Vote))
        active = s.scalar(select(func.count()).select_from(Vote).where(Vote.active))
        dup = s.execute(select(Vote.item_id, Vote.annotator).where(Vote.active)
                        .group_by(Vote.item_id, Vote.annotator).having(func.count() > 1)).all()
    store.close()
    return {"db_votes": rows, "lost": max(0, acked - active),
            "duplicated": len(dup) + max(0, rows - acked)}


def summarize(mode: str, phase: str, run: dict) -> dict:
    lat = run["lat"]
    out = {"votes": run["acked"], "votes_per_s": round(run["acked"] / run["wall_s"], 1),
           "next_p50_ms": round(pct(lat["next"], 0.5), 1),
           "next_p95_ms": round(pct(lat["next"], 0.95), 1),
           "submit_p50_ms": round(pct(lat["submit"], 0.5), 1),
           "submit_p95_ms": round(pct(lat["submit"], 0.95), 1), "errors": len(run["errors"])}
    print(f"{mode:6s} {phase:9s} {out['votes']:5d} votes {out['votes_per_s']:6.1f}/s  next p50 "
          f"{out['next_p50_ms']:6.1f} p95 {out['next_p95_ms']:6.1f} ms  submit p50 "
          f"{out['submit_p50_ms']:6.1f} p95 {out['submit_p95_ms']:6.1f} ms  errors "
          f"{out['errors']}")
    for e in run["errors"][:3]:
        print(f"  {e}")
    return out


def run_phases(mode: str, clients: list, db: Path, args, phases_after: int) -> dict:
    """Saturation, then a human-like pace, on one database; then the vote count check.
    Each phase gets --seconds, less when the whole run's --budget is running out."""
    out, acked = {}, 0
    for k, (phase, think) in enumerate((("saturated", 0.0), ("paced", args.think))):
        left = args.budget - (time.monotonic() - START) - 5.0  # 5 s: drain, checks, exit
        seconds = max(1.0, min(args.seconds, left / (2 - k + phases_after)))
        run = drive(clients, args.iterations, seconds, think)
        out[phase] = summarize(mode, phase, run)
        acked += run["acked"]
    out["votes_check"] = check_db(db, acked)
    print(f"{mode:6s} votes in the database {out['votes_check']['db_votes']} for {acked} "
          f"acknowledged: lost {out['votes_check']['lost']}, duplicated "
          f"{out['votes_check']['duplicated']}")
    return out


# ----------------------------------------------------------------------- the two modes


def run_direct(db: Path, names: list[str], args) -> dict:
    from collect.app_annotate import AnnotateView

    store = open_store(db)
    view = AnnotateView(store, AppConfig(**CFG))
    try:
        return run_phases("direct", [DirectAnnotator(view, n) for n in names], db, args, 0)
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(db), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login_check", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 60 s")


def run_http(db: Path, names: list[str], args) -> dict:
    port = free_port()
    proc = start_server(db, port)
    try:
        url = f"http://127.0.0.1:{port}"
        first = httpx.Client(base_url=url, timeout=30)
        first.post("/login", data={"username": names[0], "password": PASSWORD}).raise_for_status()
        fns = {d["api_name"]: (d["id"], d["queue"] is not False)
               for d in first.get("/config").json()["dependencies"]}
        clients = [HttpAnnotator(url, n, fns) for n in names]
        return run_phases("http", clients, db, args, 2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def serve(db: str, port: int) -> None:
    from collect.app import build_app, launch

    store = open_store(db)
    launch(build_app(store, AppConfig(**CFG)), store, port=port, quiet=True)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--iterations", type=int, default=40, help="next+submit rounds per client")
    ap.add_argument("--seconds", type=float, default=8.0, help="time limit per phase")
    ap.add_argument("--budget", type=float, default=55.0,
                    help="time limit of the whole run, start-up included")
    ap.add_argument("--think", type=float, default=2.0,
                    help="mean pause after a vote in the paced phase (people take 10-60 s)")
    ap.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return {}
    names = [f"load{k:02d}" for k in range(args.clients)]
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {mode: Path(tmp) / f"{mode}.db" for mode in ("direct", "http")}
        for db in dbs.values():
            make_db(db, args.items, names)
        http = run_http(dbs["http"], names, args)  # first: the server start-up is the unknown
        direct = run_direct(dbs["direct"], names, args)
    checks = [m["votes_check"] for m in (direct, http)]
    summary = {
        "bench": "collect_load", "clients": args.clients, "items": args.items,
        "cores": len(os.sched_getaffinity(0)), "loadavg_1m": round(os.getloadavg()[0], 2),
        "think_s": args.think, "http": http, "direct": direct,
        "http_over_direct": {
            "saturated_votes_per_s": ratio(http["saturated"]["votes_per_s"],
                                           direct["saturated"]["votes_per_s"]),
            "paced_submit_p95": ratio(http["paced"]["submit_p95_ms"],
                                      direct["paced"]["submit_p95_ms"])},
        "goal": "paced http submit p95 < 200 ms on 2 cores",
        "goal_met": http["paced"]["submit_p95_ms"] < 200,
        "votes_ok": all(c["lost"] == c["duplicated"] == 0 for c in checks)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
