"""Annotation app under load: 32 annotators at once over HTTP on loopback, against the same
handlers called as Python functions with the same concurrency (the baseline), in one run.

Usage: python bench/collect_load.py [--clients 32] [--seconds 8] [--db postgresql://...]
Each client logs in and loads the page (its first item, a Gradio event), then votes: one
HTTP call per vote to the vote route, as the browser's Submit makes it (the answer carries
the next item), until --iterations or --seconds run out. Two phases: saturated (no pause
between votes) and paced (a pause of about --think seconds). The server is a subprocess (its own interpreter, as in production,
bench/collect_load_server.py) on a fresh database: a SQLite file, or with --db a new schema
in that PostgreSQL database, dropped afterwards. Afterwards the database is checked against
the acknowledged submits: lost and duplicated votes must both be 0.

Where a submit's time goes (HTTP mode, per vote, from timers in the server): the handler's
CPU, its write transaction and SQL, the server's other CPU (uvicorn, Starlette, middleware), and
the rest of the latency the client saw (waiting for the server's one core and its GIL).
Prints votes/s and p50/p95 latency per mode and phase, the split, the ratios, and one JSON
line last. Goal: p95 submit at most 200 ms with 32 clients and no pause, on 2 cores.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # collect_load_db

import httpx  # noqa: E402

from collect.app_common import AppConfig  # noqa: E402
from collect.store import open_store  # noqa: E402
from collect_load_db import PASSWORD, check_db, databases, make_db  # noqa: E402

SERVER = Path(__file__).with_name("collect_load_server.py")
CFG = dict(overlap=3, gold_rate=0.0)  # as the server's (collect_load_server.CFG)

RATINGS = [4, 4, 4, 1, 4, 4, 4, 2, 2, 2, 1, 2, 2, 2]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


# ----------------------------------------------------------------------- clients


class HttpAnnotator:
    """One browser-like session: a login cookie, a session id, Gradio events for the page
    load, the vote route for votes."""

    def __init__(self, url: str, name: str, fns: dict[str, tuple[int, bool]]):
        self.http = httpx.Client(base_url=url, timeout=10)
        r = self.http.post("/login", data={"username": name, "password": PASSWORD})
        r.raise_for_status()
        self.fns, self.session = fns, uuid.uuid4().hex[:11]
        self.handle = None

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

    def first_item(self) -> bool:
        """The page load: the first item's handle (None when nothing is left)."""
        self.handle = self.call("annotate_page", [])[0]
        return self.handle is not None

    def submit(self) -> tuple[bool, bool]:
        """One vote, one call: (saved, another item shown). The browser's submit sends the
        form and gets the next item in the same answer."""
        r = self.http.post("/annotate/vote", json={"handle": self.handle, "choice": "left",
                                                   "flags": [], "ratings": RATINGS})
        out = r.json()
        if not out.get("saved"):
            raise RuntimeError(f"{r.status_code}: {out.get('status')}")
        self.handle = out["handle"]
        return True, self.handle is not None


class DirectAnnotator:
    """The same vote code, called in-process: no HTTP, no Gradio."""

    def __init__(self, view, name: str):
        self.view, self.name, self.handle = view, name, None

    def first_item(self) -> bool:
        self.handle = self.view.load(SimpleNamespace(username=self.name))[0]
        return self.handle is not None

    def submit(self) -> tuple[bool, bool]:
        code, out = self.view.vote(self.name, {"handle": self.handle, "choice": "left",
                                               "flags": [], "ratings": RATINGS})
        self.handle = out.get("handle")
        return code == 200, self.handle is not None


def load_pages(clients: list) -> list[float]:
    """Every client opens the page (its first item), all at once; the latencies. Kept out of
    the voting phases: a page load also assigns the first item and costs more than a vote."""
    lat, lock = [], threading.Lock()

    def load(c) -> None:
        t0 = time.perf_counter()
        c.loaded = c.first_item()
        with lock:
            lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=load, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def drive(clients: list, iterations: int, seconds: float, think: float = 0.0) -> dict:
    """Every client votes on its item, which brings the next one, until the time is up;
    latencies and acknowledged submits.

    think = 0: all clients start together and never pause (saturation: latency is then
    queueing, N clients / throughput). think > 0: each client starts at a random moment and
    pauses a random 0.5-1.5 x think after each vote, as people reading the next pair do."""
    lat: list[float] = []
    acked, errors = [0] * len(clients), []
    start, lock = threading.Barrier(len(clients)), threading.Lock()

    def loop(k: int, c) -> None:
        rng = random.Random(k)
        start.wait()
        deadline = time.perf_counter() + seconds
        time.sleep(rng.uniform(0, think))
        try:
            for _ in range(iterations):
                if time.perf_counter() > deadline or not c.loaded:
                    break
                t0 = time.perf_counter()
                ok, c.loaded = c.submit()
                with lock:
                    lat.append(time.perf_counter() - t0)
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


def summarize(mode: str, phase: str, run: dict) -> dict:
    lat = run["lat"]
    out = {"votes": run["acked"], "votes_per_s": round(run["acked"] / run["wall_s"], 1),
           "submit_mean_ms": round(1000 * sum(lat) / max(1, len(lat)), 2),
           "submit_p50_ms": round(pct(lat, 0.5), 1), "submit_p95_ms": round(pct(lat, 0.95), 1),
           "errors": len(run["errors"])}
    print(f"{mode:6s} {phase:9s} {out['votes']:5d} votes {out['votes_per_s']:6.1f}/s  submit "
          f"p50 {out['submit_p50_ms']:6.1f} p95 {out['submit_p95_ms']:6.1f} ms  errors "
          f"{out['errors']}")
    for e in run["errors"][:3]:
        print(f"  {e}")
    return out


def run_phases(mode: str, clients: list, db: Path | str, args, phases_after: int,
               server: subprocess.Popen | None = None) -> dict:
    """Saturation, then a human-like pace, on one database; then the vote count check.
    Each phase gets --seconds, less when the whole run's --budget is running out.
    server: the HTTP server's process, whose CPU time is read around each phase."""
    loads = load_pages(clients)
    out, acked = {"page_load_p95_ms": round(pct(loads, 0.95), 1)}, 0
    for k, (phase, think) in enumerate((("saturated", 0.0), ("paced", args.think))):
        left = args.budget - (time.monotonic() - START) - 5.0  # 5 s: drain, checks, exit
        seconds = max(1.0, min(args.seconds, left / (2 - k + phases_after)))
        cpu0, t0, own0 = cpu_seconds(server), time.time(), time.process_time()
        run = drive(clients, args.iterations, seconds, think)
        out[phase] = summarize(mode, phase, run)
        # The load generator's own CPU per vote (it shares the machine with the server).
        out[phase]["clients_cpu_ms"] = round(
            1000 * (time.process_time() - own0) / max(1, run["acked"]), 2)
        out[phase]["window"] = (t0, time.time())
        out[phase]["server_cpu_s"] = cpu_seconds(server) - cpu0
        acked += run["acked"]
    out["votes_check"] = check_db(db, acked)
    print(f"{mode:6s} votes in the database {out['votes_check']['db_votes']} for {acked} "
          f"acknowledged: lost {out['votes_check']['lost']}, duplicated "
          f"{out['votes_check']['duplicated']}")
    return out


def cpu_seconds(proc: subprocess.Popen | None) -> float:
    """A process's CPU time so far (user + system), from /proc; 0 without one."""
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split(phase: dict, records: list[dict]) -> dict:
    """Where one submit's time went in a phase, in ms per vote (means over the phase's
    submits): the handler (its CPU, its write transaction, its SQL), the server's CPU
    outside the handler, and the latency left over (queueing for the server's core)."""
    lo, hi = phase["window"]
    rows = [r for r in records if lo <= r["at"] <= hi]
    if not rows:
        return {}
    n = len(rows)
    mean = {k: 1000 * sum(r[k] for r in rows) / n
            for k in ("handler", "handler_cpu", "transaction", "sql")}
    server_cpu = 1000 * phase["server_cpu_s"] / n
    out = {"submits": n, "latency_mean_ms": phase["submit_mean_ms"],
           "server_cpu_ms": server_cpu, "handler_ms": mean["handler"],
           "handler_cpu_ms": mean["handler_cpu"], "transaction_ms": mean["transaction"],
           "sql_ms": mean["sql"], "http_cpu_ms": server_cpu - mean["handler_cpu"],
           "waiting_ms": phase["submit_mean_ms"] - mean["handler"]}
    out = {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}
    print(f"  split per vote ({out['submits']} submits): latency {out['latency_mean_ms']} ms = "
          f"handler {out['handler_ms']} (cpu {out['handler_cpu_ms']}, transaction "
          f"{out['transaction_ms']}, sql {out['sql_ms']}) + outside the handler "
          f"{out['waiting_ms']}; server cpu {out['server_cpu_ms']} ms per vote, of which "
          f"the HTTP layers {out['http_cpu_ms']}")
    return out


# ----------------------------------------------------------------------- the two modes


def run_direct(db: Path | str, names: list[str], args) -> dict:
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


def start_server(db: Path | str, port: int, profile: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(SERVER), str(db), str(port), str(profile)],
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


def run_http(db: Path | str, names: list[str], args, profile: Path) -> dict:
    port = free_port()
    proc = start_server(db, port, profile)
    try:
        url = f"http://127.0.0.1:{port}"
        first = httpx.Client(base_url=url, timeout=30)
        first.post("/login", data={"username": names[0], "password": PASSWORD}).raise_for_status()
        fns = {d["api_name"]: (d["id"], d["queue"] is not False)
               for d in first.get("/config").json()["dependencies"]}
        clients = [HttpAnnotator(url, n, fns) for n in names]
        out = run_phases("http", clients, db, args, 2, server=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    records = json.loads(profile.read_text()) if profile.exists() else []
    for phase in ("saturated", "paced"):
        print(f"http   {phase}:")
        out[phase]["split"] = split(out[phase], records)
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--iterations", type=int, default=400, help="votes per client and phase")
    ap.add_argument("--seconds", type=float, default=8.0, help="time limit per phase")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="time limit of the whole run, start-up included")
    ap.add_argument("--think", type=float, default=2.0,
                    help="mean pause after a vote in the paced phase (people take 10-60 s)")
    ap.add_argument("--db", default=None,
                    help="a PostgreSQL URL to run on (new schemas, dropped afterwards); "
                    "default: SQLite files in a temp directory")
    args = ap.parse_args(argv)
    names = [f"load{k:02d}" for k in range(args.clients)]
    with tempfile.TemporaryDirectory() as tmp, databases(Path(tmp), args.db) as dbs:
        for db in dbs.values():
            make_db(db, args.items, names)
        # HTTP first: the server's start-up is the unknown
        http = run_http(dbs["http"], names, args, Path(tmp) / "profile.json")
        direct = run_direct(dbs["direct"], names, args)
    checks = [m["votes_check"] for m in (direct, http)]
    for mode in (http, direct):
        for phase in ("saturated", "paced"):
            mode[phase].pop("window")
    saturated = http["saturated"]
    summary = {
        "bench": "collect_load", "database": "postgresql" if args.db else "sqlite",
        "clients": args.clients, "items": args.items,
        "cores": len(os.sched_getaffinity(0)), "loadavg_1m": round(os.getloadavg()[0], 2),
        "think_s": args.think, "http": http, "direct": direct,
        "http_over_direct": {
            "saturated_votes_per_s": ratio(saturated["votes_per_s"],
                                           direct["saturated"]["votes_per_s"]),
            "saturated_submit_p95": ratio(saturated["submit_p95_ms"],
                                          direct["saturated"]["submit_p95_ms"]),
            "paced_submit_p95": ratio(http["paced"]["submit_p95_ms"],
                                      direct["paced"]["submit_p95_ms"])},
        "goal": "saturated http submit p95 <= 200 ms (32 clients, no pause, 2 cores)",
        "goal_met": saturated["submit_p95_ms"] <= 200,
        "votes_ok": all(c["lost"] == c["duplicated"] == 0 for c in checks)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
