"""collect/ under concurrency and crashes: every vote stored exactly once, overlap never
exceeded, and a process killed mid-submit loses no committed vote. Each test runs on SQLite
(writers serialized by BEGIN IMMEDIATE) and on PostgreSQL (READ COMMITTED: the conditional
UPDATE of an item's counter and the unique constraints, with retries; collect/store.py)."""
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from collect.assign import next_item
from collect.store import Assignment, Item, User, Vote, open_store
from collect.votes import submit_and_next, submit_vote, votes_of
from core.records import ASPECTS
from databases import db_url  # noqa: F401 (the fixture: one test per database)
from databases import store_with

ROOT = Path(__file__).resolve().parents[1]
GOOD = dict.fromkeys(ASPECTS, 4) | {"harmfulness": 1}
BAD = dict.fromkeys(ASPECTS, 2) | {"harmfulness": 1}




def run_threads(target, names):
    errors = []

    def guarded(name):
        try:
            target(name)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{name}: {e!r}")

    threads = [threading.Thread(target=guarded, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_20_concurrent_submitters_store_each_vote_once(db_url):  # noqa: F811
    names = [f"a{k}" for k in range(20)]
    store = store_with(db_url, names, 60)
    start = threading.Barrier(len(names))
    returned: dict[str, list[int]] = {n: [] for n in names}

    def work(name):
        start.wait()  # everyone submits at once
        for _ in range(6):
            v = next_item(store, name, overlap=3, gold_rate=0.0)
            vote = submit_vote(store, name, v.item_id, "left", GOOD, BAD)
            again = submit_vote(store, name, v.item_id, "left", GOOD, BAD)  # double click
            assert again.id == vote.id
            returned[name].append(vote.id)

    run_threads(work, names)
    ids = [i for r in returned.values() for i in r]
    rows = votes_of(store, include_inactive=True)
    assert len(ids) == len(set(ids)) == 120
    assert sorted(v.id for v in rows) == sorted(ids)  # every vote stored, exactly once
    assert max(Counter((v.item_id, v.annotator) for v in rows).values()) == 1
    submits = [e for e in store.audit_entries() if e.action == "vote_submit"]
    assert len(submits) == 120
    store.close()


def test_32_concurrent_annotators_never_over_assign(db_url):  # noqa: F811
    names = [f"b{k}" for k in range(32)]
    path = db_url
    store_with(path, names, 20).close()
    start = threading.Barrier(len(names))

    def work(name):
        store = open_store(path)  # like separate server processes: own engine, own sessions
        start.wait()
        v = next_item(store, name, overlap=3, gold_rate=0.0)
        while v is not None:  # the app's submit: vote + next assignment in one transaction
            _, v = submit_and_next(store, name, v.item_id, "tie", GOOD, GOOD, gold_rate=0.0)
        store.close()

    run_threads(work, names)
    store = open_store(path)
    with store.read() as s:
        per_item = Counter(s.scalars(select(Assignment.item_id)))
        pairs = s.execute(select(Assignment.item_id, Assignment.annotator)).all()
        counted = dict(s.execute(select(Item.id, Item.n_assigned)).all())
        n_votes = s.scalar(select(func.count()).select_from(Vote))
        n_done = s.scalar(select(func.count()).where(Assignment.done))
    assert per_item == {f"i{k}": 3 for k in range(20)}  # exactly k each: none over, none short
    assert len(pairs) == len(set(pairs)) == 60
    assert counted == dict(per_item)  # the denormalized counter matches the rows
    assert n_votes == n_done == 60
    store.close()


# The app's path: each submit stores the vote and assigns the next item in one transaction.
CHILD = """
import sys
from collect.assign import next_item
from collect.store import open_store
from collect.votes import submit_and_next
from core.records import ASPECTS
r = dict.fromkeys(ASPECTS, 3)
store = open_store(sys.argv[1])
v = next_item(store, "k", overlap=1, gold_rate=0.0)
while True:
    vote, nxt = submit_and_next(store, "k", v.item_id, "left", r, r, rationale="x" * 2000,
                                overlap=1, gold_rate=0.0)
    print(vote.id, v.item_id, flush=True)
    v = nxt
"""


def test_killed_mid_submit_loses_no_committed_vote(db_url):  # noqa: F811
    path = db_url
    store_with(path, ["k"], 3000).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed = []
    try:
        for line in child.stdout:
            committed.append(tuple(line.split()))
            if len(committed) == 40:
                os.kill(child.pid, signal.SIGKILL)  # the child is mid-loop, likely mid-write
                break
    finally:
        child.kill()
        child.wait(timeout=30)
    assert len(committed) == 40, child.stderr.read()
    assert child.returncode == -signal.SIGKILL

    store = open_store(path)
    assert store.integrity_check() == "ok"
    votes = votes_of(store, annotator="k")
    stored = {(str(v.id), v.item_id) for v in votes}
    assert set(committed) <= stored  # everything the child saw committed is there
    # nothing half-written: each stored vote is whole (a commit past the 40th may be there)
    assert all(len(v.aspects_a) == 7 and len(v.rationale) == 2000 for v in votes)
    # and the store restarts cleanly: the annotator carries on where they were
    v = next_item(store, "k", overlap=1, gold_rate=0.0)
    submit_vote(store, "k", v.item_id, "right", GOOD, BAD)
    assert len(votes_of(store, annotator="k")) == len(votes) + 1
    store.close()


def test_servers_opening_a_new_store_at_once_all_get_it(db_url):  # noqa: F811
    """Several processes started together on an empty database: each creates what is missing
    (tables, triggers) or finds it made by another, and none fails."""
    names = [f"o{k}" for k in range(8)]
    start = threading.Barrier(len(names))
    opened = []

    def work(name):
        start.wait()
        store = open_store(db_url)
        with store.write() as s:
            s.add(User(name=name, role="annotator", password_hash="-"))
        opened.append(store)

    run_threads(work, names)
    with opened[0].read() as s:
        assert sorted(s.scalars(select(User.name))) == names
    for store in opened:
        store.close()
