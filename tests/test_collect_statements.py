"""SQL statements per vote (a count, not a timing) and the guarantees of the app's submit
path (collect.votes.submit_and_next: the vote and the next assignment in one transaction).

Statements are counted with SQLAlchemy's before_cursor_execute, BEGIN included (SQLite's
COMMIT is issued by the driver, outside it). One submit of the app's handler used to take 28:
a read for the role, a write for the vote (the user read again, the assignment and the active
vote in two queries, the undone-vote lookup), a read and a write for the next item (the user
read twice more) and a read with six progress counts. Now it is one write transaction (one
query for user + assignment + active vote + undone vote; the vote; the next assignment) and
one read (the item, and the six counts in one statement).

Each test runs on SQLite and on PostgreSQL (tests/databases.py). psycopg opens a transaction
itself, so PostgreSQL's counts carry no BEGIN; the bounds are per database.
"""
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select

from collect import votes
from collect.app_annotate import AnnotateView
from collect.app_common import AppConfig
from collect.assign import add_items, next_item
from collect.store import Assignment, CollectError, User, open_store
from collect.votes import submit_and_next, submit_vote, undo_last, votes_of
from core.records import ASPECTS
from databases import db_url  # noqa: F401 (the fixture: one test per database)

GOOD = dict.fromkeys(ASPECTS, 4) | {"harmfulness": 1}
BAD = dict.fromkeys(ASPECTS, 2) | {"harmfulness": 1}
# {database: most statements}. SQLite: BEGIN, the one read, UPDATE assignment, INSERT vote,
# INSERT audit. PostgreSQL: the same without BEGIN.
SUBMIT_VOTE_MAX = {"sqlite": 5, "postgresql": 4}
# The above + next assignment (5: releasing the leases run out, none in the common case; the open
# assignment; the pick; the claim; the INSERT) + the view's read (2 on SQLite: BEGIN and one read);
# was 28.
APP_SUBMIT_MAX = {"sqlite": 12, "postgresql": 10}


@pytest.fixture
def store(db_url):  # noqa: F811
    st = open_store(db_url)
    with st.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash="-") for n in ("u1", "u2"))
        s.add(User(name="rev", role="reviewer", password_hash="-"))
    add_items(st, [{"id": f"i{k}", "prompt": f"p{k}", "response_a": "A", "response_b": "B"}
                   for k in range(10)])
    yield st
    st.close()


@pytest.fixture
def statements(store):
    seen = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *_: seen.append(statement))
    return seen


def test_statements_per_submit(store, statements):
    v = next_item(store, "u1", gold_rate=0.0)
    statements.clear()
    submit_vote(store, "u1", v.item_id, "left", GOOD, BAD)
    dialect = store.engine.dialect.name
    assert len(statements) <= SUBMIT_VOTE_MAX[dialect], statements

    view = AnnotateView(store, AppConfig(overlap=3, gold_rate=0.0))
    request = SimpleNamespace(username="u2")
    handle = view.load(request)[0]
    counts = []
    for _ in range(5):
        statements.clear()
        code, out = view.vote("u2", {"handle": handle, "choice": "left", "ratings": [4] * 14})
        assert code == 200 and out["status"].startswith("Saved")
        counts.append(len(statements))
        handle = out["handle"]
    assert max(counts) <= APP_SUBMIT_MAX[dialect], counts
    if dialect == "sqlite":
        assert sum(s.startswith("BEGIN IMMEDIATE") for s in statements) == 1  # one write
    else:  # one write: the vote's UPDATE and INSERTs, and the next assignment's, in one
        assert sum(s.startswith("INSERT INTO votes") for s in statements) == 1
        assert not any(s.startswith("BEGIN") for s in statements)


def test_submit_and_next_keeps_the_guarantees(store):
    """Idempotent repeat, history on a changed answer, the audit trail, roles checked."""
    v = next_item(store, "u1", gold_rate=0.0)
    first, nxt = submit_and_next(store, "u1", v.item_id, "left", GOOD, BAD, gold_rate=0.0)
    n_audit = len(store.audit_entries())
    again, nxt2 = submit_and_next(store, "u1", v.item_id, "left", GOOD, BAD, gold_rate=0.0)
    assert again.id == first.id and nxt2 == nxt and nxt.item_id != v.item_id
    assert len(store.audit_entries()) == n_audit  # the repeat wrote nothing
    with pytest.raises(CollectError, match="undo that vote first"):
        submit_and_next(store, "u1", v.item_id, "right", GOOD, BAD, gold_rate=0.0)

    undo_last(store, "u1")
    second, _ = submit_and_next(store, "u1", v.item_id, "right", GOOD, BAD, gold_rate=0.0)
    undo_last(store, "u1")
    third, _ = submit_and_next(store, "u1", v.item_id, "tie", GOOD, BAD, gold_rate=0.0)
    rows = votes_of(store, item_id=v.item_id, include_inactive=True)
    assert [(r.id, r.active, r.replaced_by) for r in rows] == \
        [(first.id, False, second.id), (second.id, False, third.id), (third.id, True, None)]
    submits = [e.detail for e in store.audit_entries() if e.action == "vote_submit"]
    assert [d["replaces"] for d in submits] == [second.id, first.id, None]  # newest first

    with pytest.raises(PermissionError, match="not assigned"):
        submit_and_next(store, "u2", v.item_id, "left", GOOD, BAD, gold_rate=0.0)
    with store.write() as s:  # a reviewer holding an assignment still may not annotate
        s.add(Assignment(item_id="i9", annotator="rev", swapped=False))
    with pytest.raises(PermissionError, match="needs the role annotator"):
        submit_and_next(store, "rev", "i9", "left", GOOD, BAD, roles=("annotator",))
    assert votes_of(store, annotator="rev") == []


def test_submit_and_next_is_one_transaction(store, monkeypatch):
    """A failure after the vote's rows were written (here: while assigning the next item)
    rolls the vote back too: nothing half-done, and the answer can be sent again."""
    v = next_item(store, "u1", gold_rate=0.0)

    def killed(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(votes, "assign_next", killed)
    with pytest.raises(RuntimeError, match="killed"):
        submit_and_next(store, "u1", v.item_id, "left", GOOD, BAD, gold_rate=0.0)
    assert votes_of(store, include_inactive=True) == []
    assert "vote_submit" not in [e.action for e in store.audit_entries()]
    with store.read() as s:
        assert s.scalar(select(Assignment.done).where(Assignment.annotator == "u1")) is False
    monkeypatch.undo()
    vote, nxt = submit_and_next(store, "u1", v.item_id, "left", GOOD, BAD, gold_rate=0.0)
    assert vote.active and nxt.item_id != v.item_id
