"""Assignments as leases: an item handed to an annotator holds one of its `overlap` slots only
until the annotator votes, or for `lease_s` seconds (the app's --lease_minutes). An open
assignment older than that goes back to the queue at the next assignment anyone asks for
(`release_expired`, in that request's write transaction), so an annotator who opened an item
and left does not keep the others from it. Disabling an account releases what it held the
same way (`release`).

A released assignment keeps its row (undone votes refer to it) with `released` set and stops
counting in the item's `n_assigned`. Its annotator may be handed the item again, and an
answer sent from a page that still shows it is stored if the item still has a free slot
(collect/votes.py); otherwise it is refused with `ItemTaken`, which says so in the annotator's
words and carries their next item.

Releasing is a conditional UPDATE (`WHERE done = false AND released = false`), so a vote and a
release racing for one assignment cannot both win, and two requests releasing at once count
each release once. On PostgreSQL the rows to release are taken with FOR UPDATE SKIP LOCKED: an
assignment whose vote is being written is left to that vote.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import and_, bindparam, false, select, true, update
from sqlalchemy.orm import Session

from .store import Assignment, CollectError, Item, audit

DEFAULT_LEASE_S = 30 * 60.0

_TABLE = Assignment.__table__
_HELD = and_(Assignment.done == false(), Assignment.released == false())
_LESS = update(Item).where(Item.id == bindparam("item")).values(
    n_assigned=Item.n_assigned - bindparam("n", type_=Item.n_assigned.type))
_held = _TABLE.alias("held")
# The open assignments handed out before :cutoff (the index assignments_lease finds them). The
# subquery's FOR UPDATE re-checks its condition on a row changed since the statement began and
# locks what it returns, so the rows updated are the ones it found.
_EXPIRED = (_TABLE.update()
            .where(_TABLE.c.id.in_(select(_held.c.id)
                                   .where(_held.c.done == false(), _held.c.released == false(),
                                          _held.c.assigned_at < bindparam("cutoff"))
                                   .with_for_update(skip_locked=True)))
            .values(released=True).returning(_TABLE.c.item_id, _TABLE.c.annotator))
# A released assignment taken up again by its annotator (handed the item again, or voting).
REOPEN = (_TABLE.update().where(_TABLE.c.id == bindparam("assignment_id"), _TABLE.c.released == true())
          .values(released=False, assigned_at=bindparam("at"))
          .returning(_TABLE.c.id, _TABLE.c.swapped))


class ItemTaken(CollectError):
    """An answer to an item whose assignment was released and whose slots others have taken
    since: nothing was stored. `next_view`: the annotator's next item (None: nothing left, or
    not looked up)."""

    def __init__(self, lease_s: float | None):
        after = f"after {lease_s / 60:g} min without one, or " if lease_s else ""
        super().__init__(f"the item you answered went back to the queue before your answer came ({after}while "
                         "your account was disabled), and other annotators have it now")
        self.next_view: Any = None


def cutoff(t: float, lease_s: float | None) -> float:
    """Assignments handed out before this time have run out (0.0: leases never run out)."""
    return t - lease_s if lease_s else 0.0


def _uncount(s: Session, rows: list) -> list[tuple[str, str]]:
    """Take the released assignments (item_id, annotator) off their items' counts."""
    released = [(r[0], r[1]) for r in rows]
    per_item = Counter(item for item, _ in released)
    if per_item:
        s.connection().execute(_LESS, [{"item": i, "n": n} for i, n in per_item.items()])
    return sorted(released)


def release(s: Session, *where) -> list[tuple[str, str]]:
    """Release the open assignments matching `where`, inside the caller's transaction; returns
    the (item_id, annotator) pairs released."""
    q = (update(Assignment).where(_HELD, *where).values(released=True)
         .returning(Assignment.item_id, Assignment.annotator)
         .execution_options(synchronize_session=False))
    return _uncount(s, list(s.execute(q)))


def skip(s: Session, item_id: str, annotator: str) -> bool:
    """The annotator gives the item back without a vote (they cannot judge it), inside the
    caller's transaction: released like a lease run out, and marked skipped, so it goes to others
    and never back to them. False when they hold no open assignment on it (voted, or released).
    The caller writes the audit entry (collect/votes.py skip_and_next)."""
    q = (update(Assignment).where(_HELD, Assignment.item_id == item_id, Assignment.annotator == annotator)
         .values(released=True, skipped=True).returning(Assignment.item_id, Assignment.annotator)
         .execution_options(synchronize_session=False))
    return bool(_uncount(s, list(s.execute(q))))


def release_expired(s: Session, t: float, lease_s: float | None) -> list[tuple[str, str]]:
    """Release every open assignment handed out over lease_s ago (none when lease_s is 0 or
    None), with an audit entry when there were any."""
    if not lease_s:
        return []
    released = _uncount(s, list(s.connection().execute(_EXPIRED, {"cutoff": cutoff(t, lease_s)})))
    if released:
        audit(s, "system", "assignments_expire", lease_s=lease_s,
              released=[{"item_id": i, "annotator": a} for i, a in released])
    return released
