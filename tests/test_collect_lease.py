"""Assignment leases (collect/lease.py): an item opened and left without a vote goes back to the
queue after lease_s; the annotator who left may get it again, a late answer is kept while the
item still needs it and refused with the next item when others have it, undo renews the lease,
and racing annotators never push an item over its overlap. Time is passed in (`now=`), never
slept; each test runs on SQLite and on PostgreSQL (tests/databases.py)."""
import html
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from sqlalchemy import false, select, update

from collect.assign import next_item
from collect.lease import DEFAULT_LEASE_S, ItemTaken
from collect.store import Assignment, Item, Vote, open_store
from collect.users import deactivate
from collect.votes import submit_and_next, submit_vote, undo_last, votes_of
from core.records import ASPECTS
from databases import db_url  # noqa: F401 (the fixture: one test per database)
from databases import store_with

GOOD = dict.fromkeys(ASPECTS, 4) | {"harmfulness": 1}
LEASE = 1800.0
T0 = time.time()
LATER = T0 + LEASE + 1  # the lease of anything handed out at T0 has run out


@pytest.fixture
def store(db_url):  # noqa: F811
    st = store_with(db_url, ["alice", "bob", "carol"], 2)
    yield st
    st.close()


def take(store, name, when, overlap=1):
    v = next_item(store, name, overlap=overlap, gold_rate=0.0, lease_s=LEASE, now=when)
    return None if v is None else v.item_id


def counts(store) -> dict[str, tuple[int, int, int]]:
    """Per item: (n_assigned, assignments holding a slot, active votes)."""
    with store.read() as s:
        counted = dict(s.execute(select(Item.id, Item.n_assigned)).all())
        holding = Counter(s.scalars(select(Assignment.item_id).where(Assignment.released == false())))
        voted = Counter(s.scalars(select(Vote.item_id).where(Vote.active)))
    return {i: (n, holding[i], voted[i]) for i, n in counted.items()}


def test_an_item_left_open_goes_back_to_the_queue_after_the_lease(store):
    assert DEFAULT_LEASE_S == LEASE
    assert [take(store, "alice", T0), take(store, "bob", T0)] == ["i0", "i1"]
    assert take(store, "carol", T0 + LEASE - 1) is None  # both still held
    assert next_item(store, "carol", overlap=1, gold_rate=0.0, lease_s=0, now=LATER) is None  # no lease
    assert take(store, "carol", LATER) == "i0"
    assert counts(store) == {"i0": (1, 1, 0), "i1": (0, 0, 0)}  # bob's went back too
    entry = next(e for e in store.audit_entries() if e.action == "assignments_expire")
    assert entry.actor == "system" and entry.detail["released"] == [
        {"item_id": "i0", "annotator": "alice"}, {"item_id": "i1", "annotator": "bob"}]


def test_the_annotator_who_left_may_get_the_item_again(store):
    first = next_item(store, "alice", overlap=1, gold_rate=0.0, lease_s=LEASE, now=T0)
    again = next_item(store, "alice", overlap=1, gold_rate=0.0, lease_s=LEASE, now=LATER)
    assert again.item_id == first.item_id == "i0" and (again.left, again.right) == (first.left, first.right)
    with store.read() as s:
        (row,) = s.scalars(select(Assignment))
    assert (row.released, row.assigned_at) == (False, LATER)  # the same row, handed out anew
    submit_vote(store, "alice", "i0", "left", GOOD, GOOD, overlap=1)
    assert counts(store)["i0"] == (1, 1, 1)


def test_a_late_answer_is_kept_while_the_item_still_needs_it(store):
    take(store, "alice", T0, overlap=2)
    assert take(store, "bob", LATER, overlap=2) == "i0"
    assert counts(store)["i0"] == (1, 1, 0)  # alice's slot went back, bob holds the other
    vote = submit_vote(store, "alice", "i0", "left", GOOD, GOOD, overlap=2)  # the second slot
    assert vote.active and counts(store)["i0"] == (2, 2, 1)
    assert take(store, "carol", LATER, overlap=2) == "i1"  # i0 is full again


def test_a_late_answer_to_an_item_others_have_is_refused_with_the_next_item(store):
    take(store, "alice", T0)
    assert take(store, "bob", LATER) == "i0"
    with pytest.raises(ItemTaken, match=r"went back to the queue before your answer came \(after 30 min without one") as refused:
        submit_and_next(store, "alice", "i0", "left", GOOD, GOOD, overlap=1, gold_rate=0.0,
                        lease_s=LEASE, now=LATER)
    assert refused.value.next_view.item_id == "i1"
    assert votes_of(store, annotator="alice", include_inactive=True) == []  # nothing half-written
    submit_vote(store, "bob", "i0", "right", GOOD, GOOD, overlap=1)
    assert counts(store) == {"i0": (1, 1, 1), "i1": (1, 1, 0)}


def test_undo_starts_the_lease_anew(store):
    take(store, "alice", T0 - 2 * LEASE)  # opened long ago, answered just now, then undone
    vote = submit_vote(store, "alice", "i0", "left", GOOD, GOOD, overlap=1)
    undo_last(store, "alice", now=vote.submitted_at + 1)
    t = vote.submitted_at + 60
    assert take(store, "bob", t) == "i1" and take(store, "carol", t) is None  # i0 is alice's again
    assert take(store, "alice", t) == "i0"


def test_disabling_an_annotator_after_an_undo_frees_the_item(store):
    take(store, "alice", T0)
    submit_vote(store, "alice", "i0", "left", GOOD, GOOD, overlap=1)
    undo_last(store, "alice")  # an inactive vote now refers to the assignment
    deactivate(store, "alice")
    assert take(store, "bob", T0) == "i0"
    assert len(votes_of(store, annotator="alice", include_inactive=True)) == 1  # history stays


def test_the_app_says_a_late_answer_was_not_saved_and_what_comes_next(store):
    from collect.app_annotate import ALL_DONE_HTML, AnnotateView
    from collect.app_common import AppConfig

    view = AnnotateView(store, AppConfig(overlap=1, gold_rate=0.0, lease_s=LEASE))
    handle = view.load(SimpleNamespace(username="alice"))[0]
    with store.write() as s:  # alice left the item open for over the lease
        s.execute(update(Assignment).values(assigned_at=Assignment.assigned_at - LEASE - 60))
    now = time.time()
    assert [take(store, "bob", now), take(store, "carol", now)] == ["i0", "i1"]
    code, out = view.vote("alice", {"handle": handle, "choice": "left", "ratings": [None] * 14})
    assert (code, out["saved"], out["new_item"], out["progress"]) == (409, False, True, ALL_DONE_HTML)
    assert html.unescape(out["status"]) == (
        "⚠️ **Not saved:** the item you answered went back to the queue before your answer came (after 30 min "
        "without one, or while your account was disabled), and other annotators have it now. Nothing else is "
        "left for you.")
    assert votes_of(store, annotator="alice") == []


def test_the_serve_option_sets_the_lease(tmp_path, monkeypatch, capsys):
    import collect.app
    from collect.app_common import AppConfig
    from collect.cli import main

    served = {}
    monkeypatch.setattr(collect.app, "serve", lambda run, **kw: served.update(kw))
    assert main(["serve", "--run", str(tmp_path), "--lease_minutes", "5"]) == 0
    assert served["lease_s"] == 300
    assert main(["serve", "--run", str(tmp_path)]) == 0 and served["lease_s"] == AppConfig.lease_s == LEASE
    assert main(["serve", "--run", str(tmp_path), "--lease_minutes", "-1"]) == 2
    main(["serve", "--help"])
    assert "queue for the others" in " ".join(capsys.readouterr().out.split())


def test_racing_annotators_and_late_answers_never_exceed_the_overlap(db_url):  # noqa: F811
    leavers, workers = [f"l{k}" for k in range(6)], [f"w{k}" for k in range(8)]
    store = store_with(db_url, leavers + workers, 12)
    held = {name: take(store, name, T0, overlap=2) for name in leavers}  # two on each of 3 items
    start, outcome = threading.Barrier(len(leavers + workers)), {}
    errors = []

    def work(name):
        own = open_store(db_url)  # like separate server processes
        try:
            start.wait()
            v = None
            if name in leavers:  # the late answer, sent as everyone else claims the freed slots
                try:
                    _, v = submit_and_next(own, name, held[name], "tie", GOOD, GOOD, overlap=2, gold_rate=0.0,
                                           lease_s=LEASE, now=LATER)
                    outcome[name] = "kept"
                except ItemTaken as e:
                    outcome[name], v = "refused", e.next_view
            else:
                v = next_item(own, name, overlap=2, gold_rate=0.0, lease_s=LEASE, now=LATER)
            while v is not None:
                _, v = submit_and_next(own, name, v.item_id, "tie", GOOD, GOOD, overlap=2, gold_rate=0.0,
                                       lease_s=LEASE, now=LATER)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{name}: {e!r}")
        finally:
            own.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in leavers + workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sorted(outcome) == leavers
    # every item reached its overlap and none went over; the counter matches the rows
    assert counts(store) == {f"i{k}": (2, 2, 2) for k in range(12)}
    with store.read() as s:
        pairs = s.execute(select(Vote.item_id, Vote.annotator)).all()
    assert len(pairs) == len(set(pairs)) == 24
    # a late answer reported kept is stored, one reported refused is not
    assert {n: (held[n], n) in pairs for n in leavers} == {n: outcome[n] == "kept" for n in leavers}
    store.close()


def test_a_skipped_item_goes_to_the_others_and_never_back(db_url):  # noqa: F811
    """Skip (an item the annotator cannot judge): the slot frees at once, the next item comes in
    the same step, the progress total counts the skipped item out, and the item is never handed
    to them again, though others take it; skipping an item answered, or none, is refused."""
    from collect.assign import progress
    from collect.store import CollectError
    from collect.votes import skip_and_next

    store = store_with(db_url, ["alice", "bob"], 3)
    try:
        assert take(store, "alice", T0) == "i0"
        assert progress(store, "alice", overlap=1, gold_rate=0.0) == (0, 3)
        view = skip_and_next(store, "alice", "i0", overlap=1, gold_rate=0.0, lease_s=LEASE, now=T0 + 1)
        assert view.item_id == "i1" and (view.done, view.total) == (0, 2)  # i0 is no longer hers
        assert counts(store)["i0"] == (0, 0, 0)  # its slot is free
        with store.read() as s:
            (a,) = s.scalars(select(Assignment).where(Assignment.item_id == "i0"))
        assert a.released and a.skipped
        entry = next(e for e in store.audit_entries() if e.action == "skip")
        assert (entry.actor, entry.detail) == ("alice", {"item_id": "i0"})

        assert take(store, "bob", T0 + 2) == "i0"  # the others get it
        submit_vote(store, "alice", "i1", "left", GOOD, GOOD, overlap=1, lease_s=None)
        with pytest.raises(CollectError, match="You already answered this item: Undo"):
            skip_and_next(store, "alice", "i1", overlap=1, gold_rate=0.0, lease_s=LEASE, now=T0 + 4)
        with pytest.raises(CollectError, match="Nothing to skip"):
            skip_and_next(store, "alice", "i9", overlap=1, gold_rate=0.0, lease_s=LEASE, now=T0 + 4)
        # bob's lease on i0 runs out: i0 is open again, and still never alice's
        assert take(store, "alice", LATER) == "i2"
        assert take(store, "alice", LATER + 1) == "i2" and progress(store, "alice", overlap=1, gold_rate=0.0) == (1, 2)
        submit_vote(store, "alice", "i2", "left", GOOD, GOOD, overlap=1, lease_s=None)

        # a skip after the lease ran out: released already, now never handed back
        assert take(store, "bob", LATER + 2) == "i0"
        later = LATER + LEASE + 10
        assert skip_and_next(store, "bob", "i0", overlap=1, gold_rate=0.0, lease_s=LEASE, now=later) is None
        assert take(store, "bob", later + 1) is None  # i1 and i2 have their vote: nothing, and not i0 again
    finally:
        store.close()
