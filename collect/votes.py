"""Submitting and undoing votes.

The annotator answers in screen terms (left/right); the store keeps the item's canonical
order (a/b) plus the swap, so position bias stays measurable and the export never needs to
know what was on screen. A vote is stored once: resubmitting the same answer (a double
click, a retried request) returns the stored vote and writes nothing. Changing an answer is
undo + resubmit, which keeps the old row inactive (history) and links it to its replacement.
An answer to an item whose assignment went back to the queue meanwhile (collect/lease.py) is
stored when the item still has a free slot, and refused with lease.ItemTaken otherwise.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import and_, bindparam, false, select, true, update
from sqlalchemy.orm import Session, aliased

from core.records import ASPECTS

from .assign import ItemView, assign_next, check_queue, claim_slot, next_item, read_view, view_assignment
from .lease import DEFAULT_LEASE_S, ItemTaken, skip as skip_assignment
from .store import ROLES, Assignment, CollectError, Item, Store, User, Vote, audit
from .store import now as _now
from .users import check_user, require_user

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")
HARM_CATEGORIES = ("violence", "self_harm", "hate", "harassment", "sexual", "illegal", "privacy",
                   "dangerous", "fraud", "deception", "misinformation")
MAX_RATIONALE = 5000


def canonical_choice(choice_shown: str, swapped: bool) -> str:
    """left/right on screen → a/b of the item (tie and both_bad do not depend on the side)."""
    if choice_shown not in SHOWN_CHOICES:
        raise CollectError(f"choice {choice_shown!r}: must be one of {', '.join(SHOWN_CHOICES)}")
    if choice_shown in ("tie", "both_bad"):
        return choice_shown
    return "b" if (choice_shown == "left") == swapped else "a"


def shown_choice(choice: str, swapped: bool) -> str:
    """The inverse of canonical_choice: what the annotator clicked."""
    if choice in ("tie", "both_bad"):
        return choice
    return "left" if (choice == "a") != swapped else "right"


def check_aspects(ratings: Any, which: str) -> dict[str, int | None]:
    """All seven aspects, each a whole rating 1..5 or None: not rated (an aspect left out of
    the mapping is not rated either). An unrated aspect stays missing in the store; it is
    never filled in, so agreement and export count only ratings someone gave."""
    if not isinstance(ratings, dict):
        raise CollectError(f"{which} ratings must be a mapping {{aspect: 1..5 or None}}")
    unknown = sorted(set(ratings) - set(ASPECTS))
    if unknown:
        raise CollectError(f"{which} ratings: unknown aspect(s) {unknown} "
                           f"(known: {', '.join(ASPECTS)})")
    out = {}
    for a in ASPECTS:
        v = ratings.get(a)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not 1 <= v <= 5 or v != int(v)):
            raise CollectError(f"{which} ratings: {a} must be a whole number 1-5 or unset, "
                               f"got {v!r}")
        out[a] = None if v is None else int(v)
    return out


def check_harm_flags(flags: Iterable[str]) -> list[str]:
    flags = list(flags or ())
    bad = [f for f in flags if f not in HARM_CATEGORIES]
    if bad:
        raise CollectError(f"harm flag(s) {bad}: use {', '.join(HARM_CATEGORIES)}")
    return sorted(set(flags))


def _same(v: Vote, fields: dict) -> bool:
    return all(getattr(v, k) == fields[k] for k in
               ("choice", "aspects_a", "aspects_b", "harm_flags", "rationale"))


def _check_answer(aspects_left: dict, aspects_right: dict, harm_flags: Iterable[str],
                  rationale: str) -> dict:
    if not isinstance(rationale, (str, type(None))):
        raise CollectError("rationale: must be text")
    if not isinstance(harm_flags, (list, tuple, set, frozenset, type(None))):
        raise CollectError("harm flags: must be a list of categories")
    rationale = (rationale or "").strip()
    if len(rationale) > MAX_RATIONALE:
        raise CollectError(f"rationale: at most {MAX_RATIONALE} characters")
    return {"left": check_aspects(aspects_left, "left response"),
            "right": check_aspects(aspects_right, "right response"),
            "harm_flags": check_harm_flags(harm_flags), "rationale": rationale}


# Built once, run with parameters: building a statement costs more than running it here.
# The voter, their assignment, their active vote on the item and the newest undone vote
# there (the one a new answer replaces), in one round trip.
_older = aliased(Vote)
_UNDONE = (select(_older.id).where(_older.item_id == bindparam("item_id"),
                                   _older.annotator == bindparam("annotator"),
                                   ~_older.active, _older.replaced_by.is_(None))
           .order_by(_older.id.desc()).limit(1).scalar_subquery())
_VOTER = (select(User.role, User.active, User.sessions_from, Assignment.id.label("assignment_id"),
                 Assignment.swapped, Assignment.released, _UNDONE.label("undone_id"),
                 select(Item.is_gold).where(Item.id == bindparam("item_id")).scalar_subquery()
                 .label("is_gold"),
                 *(c.label(f"vote_{c.key}") for c in Vote.__table__.columns))
          .outerjoin(Assignment, and_(Assignment.annotator == User.name,
                                      Assignment.item_id == bindparam("item_id")))
          .outerjoin(Vote, and_(Vote.annotator == User.name, Vote.item_id == bindparam("item_id"),
                                Vote.active))
          .where(User.name == bindparam("annotator")))
_INSERT_VOTE = Vote.__table__.insert()
# Conditional, so that a vote and a release racing for the assignment cannot both win.
_DONE = (Assignment.__table__.update().where(Assignment.id == bindparam("assignment_id"),
                                             Assignment.released == false())
         .values(done=True))
_RETAKE = (Assignment.__table__.update().where(Assignment.id == bindparam("assignment_id"),
                                               Assignment.released == true())
           .values(done=True, released=False))
_REPLACED = (Vote.__table__.update().where(Vote.id == bindparam("undone_id"))
             .values(replaced_by=bindparam("vote_id")))


def _hold(s: Session, row, item_id: str, overlap: int) -> bool:
    """Mark the voter's assignment as voted on. A released one is taken up again with a slot
    on the item; False when the item has none left (the caller then rolls back)."""
    conn, params = s.connection(), {"assignment_id": row.assignment_id}
    if not row.released and conn.execute(_DONE, params).rowcount == 1:
        return True
    if conn.execute(_RETAKE, params).rowcount == 1:
        return claim_slot(s, item_id, row.is_gold, overlap)
    return conn.execute(_DONE, params).rowcount == 1  # taken up by a request of theirs meanwhile


def _write_vote(s: Session, annotator: str, item_id: str, choice_shown: str, answer: dict,
                started_at: float | None, roles: tuple[str, ...], overlap: int,
                lease_s: float | None) -> Vote:
    """submit_vote's work inside the caller's write transaction. Plain statements on the
    transaction's connection, not ORM objects: the unit of work cost more than the writes.
    Returns the vote as a detached Vote (nothing here reads it back from the database)."""
    conn = s.connection()
    row = conn.execute(_VOTER, {"item_id": item_id, "annotator": annotator}).first()
    check_user(row, annotator, roles)  # a row has the user's role, active flag and sessions_from
    if row.assignment_id is None:
        # No item id in these messages: an annotator's page shows them, and never shows ids.
        raise PermissionError(f"this item is not assigned to {annotator!r}")
    left, right = answer["left"], answer["right"]
    fields = dict(choice=canonical_choice(choice_shown, row.swapped),
                  aspects_a=right if row.swapped else left,
                  aspects_b=left if row.swapped else right,
                  harm_flags=answer["harm_flags"], rationale=answer["rationale"])
    if row.vote_id is not None:
        current = Vote(**{c.key: getattr(row, f"vote_{c.key}") for c in Vote.__table__.columns})
        if _same(current, fields):
            return current  # idempotent: a repeated submit writes nothing
        raise CollectError("You already voted on this item with a different answer: undo that "
                           "vote first to change it.")
    if not _hold(s, row, item_id, overlap):
        raise ItemTaken(lease_s)
    values = dict(item_id=item_id, annotator=annotator, swapped=row.swapped, active=True,
                  started_at=started_at, submitted_at=_now(), replaced_by=None, **fields)
    values["id"] = conn.execute(_INSERT_VOTE, values).inserted_primary_key[0]
    if row.undone_id is not None:
        conn.execute(_REPLACED, {"undone_id": row.undone_id, "vote_id": values["id"]})
    audit(s, annotator, "vote_submit", vote_id=values["id"], item_id=item_id,
          choice=fields["choice"], swapped=row.swapped, replaces=row.undone_id)
    return Vote(**values)


def submit_vote(store: Store, annotator: str, item_id: str, choice_shown: str,
                aspects_left: dict, aspects_right: dict, harm_flags: Iterable[str] = (),
                rationale: str = "", started_at: float | None = None, overlap: int = 3,
                lease_s: float | None = DEFAULT_LEASE_S) -> Vote:
    """Store the annotator's answer on their assigned item; returns the active vote.

    PermissionError: the item is not assigned to this (active) annotator.
    CollectError: bad ratings/flags, or a different answer while one is active (undo first).
    ItemTaken (a CollectError): the assignment went back to the queue (its lease, lease_s,
    ran out) and the item has no free slot left under `overlap`; nothing is stored.
    """
    answer = _check_answer(aspects_left, aspects_right, harm_flags, rationale)
    # A concurrent identical submit that won the race trips the one-active-vote index;
    # the retry then finds its vote and returns it.
    return store.transact(lambda s: _write_vote(s, annotator, item_id, choice_shown, answer,
                                                started_at, ROLES, overlap, lease_s), retry_integrity=2)


def submit_and_next(store: Store, annotator: str, item_id: str, choice_shown: str,
                    aspects_left: dict, aspects_right: dict, harm_flags: Iterable[str] = (),
                    rationale: str = "", started_at: float | None = None, overlap: int = 3,
                    gold_rate: float = 0.1, seed: int = 0, roles: tuple[str, ...] = ROLES,
                    lease_s: float | None = DEFAULT_LEASE_S, now: float | None = None
                    ) -> tuple[Vote, ItemView | None]:
    """The app's submit: submit_vote (same checks and guarantees) and the annotator's next
    assignment (next_item's) in one write transaction, then the next item's view from a
    read. roles: who may annotate, checked in the transaction. A failure stores neither.
    ItemTaken (see submit_vote) carries the annotator's next item in its `next_view`."""
    check_queue(overlap, gold_rate)
    answer = _check_answer(aspects_left, aspects_right, harm_flags, rationale)
    t = _now() if now is None else now

    def write(s: Session) -> tuple[Vote, Assignment | None, ItemView | None]:
        vote = _write_vote(s, annotator, item_id, choice_shown, answer, started_at, roles, overlap, lease_s)
        a = assign_next(s, annotator, overlap, gold_rate, seed, lease_s, t)
        # SQLite: read the view after the commit, so the one writer's turn stays short.
        # PostgreSQL has no such turn: reading in the transaction saves a connection's
        # BEGIN and ROLLBACK round trips.
        inside = a is not None and not store.is_sqlite
        return vote, a, read_view(s.connection(), a, overlap, gold_rate) if inside else None

    try:
        vote, a, view = store.transact(write, retry_integrity=3)
    except ItemTaken as e:
        e.next_view = next_item(store, annotator, overlap, gold_rate, seed, roles, lease_s, t)
        raise
    return vote, view or view_assignment(store, a, overlap, gold_rate)


def skip_and_next(store: Store, annotator: str, item_id: str, overlap: int = 3, gold_rate: float = 0.1,
                  seed: int = 0, roles: tuple[str, ...] = ROLES, lease_s: float | None = DEFAULT_LEASE_S,
                  now: float | None = None) -> ItemView | None:
    """The app's skip (an item the annotator cannot judge): the item goes back to the queue for
    the others and never to them again (collect/lease.py skip), and their next assignment, in
    one write transaction. An item whose lease ran out is marked skipped all the same; one they
    voted on is refused (Undo first)."""
    check_queue(overlap, gold_rate)
    t = _now() if now is None else now

    def write(s: Session) -> Assignment | None:
        require_user(s, annotator, roles)
        if not skip_assignment(s, item_id, annotator):
            mine = s.scalar(select(Assignment).where(Assignment.item_id == item_id,
                                                     Assignment.annotator == annotator))
            if mine is None:
                raise CollectError("Nothing to skip: no item is loaded (reload the page).")
            if not mine.released:
                raise CollectError("You already answered this item: Undo [u] first to skip it.")
            mine.skipped = True  # its lease ran out: released already, and now not theirs again
        audit(s, annotator, "skip", item_id=item_id)
        return assign_next(s, annotator, overlap, gold_rate, seed, lease_s, t)

    return view_assignment(store, store.transact(write, retry_integrity=3), overlap, gold_rate)


def undo_last(store: Store, annotator: str, window_s: float = 120.0,
              now: float | None = None) -> Vote:
    """Deactivate the annotator's most recent active vote if it is younger than window_s.
    The row stays (history); its item becomes unfinished again, so next_item returns it, with
    its lease starting anew."""
    t = _now() if now is None else now

    def write(s: Session) -> Vote:
        require_user(s, annotator)
        vote = s.scalar(select(Vote).where(Vote.annotator == annotator, Vote.active)
                        .order_by(Vote.submitted_at.desc(), Vote.id.desc()).limit(1))
        if vote is None:
            raise CollectError("Nothing to undo: you have no vote to take back.")
        age = t - vote.submitted_at
        if age > window_s:
            # no item id: the message reaches the annotator, who is never told one
            raise CollectError(f"Your last vote was submitted {age:.0f} s ago; undo is only "
                               f"possible within {window_s:.0f} s")
        vote.active = False
        s.execute(update(Assignment).where(Assignment.item_id == vote.item_id,
                                           Assignment.annotator == annotator)
                  .values(done=False, assigned_at=t))
        audit(s, annotator, "vote_undo", vote_id=vote.id, item_id=vote.item_id, age_s=round(age, 3))
        return vote

    return store.transact(write)


def votes_of(store: Store, item_id: str | None = None, annotator: str | None = None,
             include_inactive: bool = False) -> list[Vote]:
    """Votes, oldest first (admin views and tests; never shown to annotators)."""
    q = select(Vote).order_by(Vote.id)
    if item_id is not None:
        q = q.where(Vote.item_id == item_id)
    if annotator is not None:
        q = q.where(Vote.annotator == annotator)
    if not include_inactive:
        q = q.where(Vote.active)
    with store.read() as s:
        return list(s.scalars(q))
