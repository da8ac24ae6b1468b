"""Comparison items in, work out: who annotates which item, and on which side each response
is shown.

Each regular item goes to `overlap` annotators (k, so agreement is defined), items closest to
completion first so they reach k before new ones open; nobody gets an item twice. Gold items
(known answer, for annotator QA) are mixed in at `gold_rate` and are not capped by overlap:
every annotator may meet each gold item once. The side is a deterministic coin per
(seed, item, annotator), stored with the assignment and hence logged. Review-only items
(one flagged output for the safety reviewers, see eval/safety.py) are never handed out: there
is no second response to compare it with. An assignment not voted on within its lease goes
back to the queue (collect/lease.py); its annotator may be handed the item again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, exists, false, func, or_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, join

from core.records import DataError, RowProblem, is_plain, prompt_field, prompt_text, read_rows

from .lease import DEFAULT_LEASE_S, REOPEN, cutoff, release_expired
from .store import CHOICES, ROLES, Assignment, CollectError, Flag, Item, Store, User, Vote, audit
from .store import now as _now
from .users import require_user

MAX_ID = 200
# The response_b of a review-only item imported without one: a single output for the reviewers.
NO_SECOND_RESPONSE = "(no second response: a single output for review)"
# An item's prompt is text (what the app shows: a conversation as "System: ...\n\nUser: ...",
# core.prompts.prompt_text); a prompt with a system message or earlier turns also keeps its
# messages here, in the item's meta, for the export.
PROMPT_MESSAGES = "prompt_messages"
_TRUE = {True, 1, "1", "true", "True", "TRUE", "yes"}
_FALSE = {False, 0, "0", "false", "False", "FALSE", "no", "", None}


@dataclass(frozen=True)
class ItemView:
    """What an annotator sees: never the sources (model names) nor anyone's votes."""
    item_id: str
    prompt: str
    left: str
    right: str
    done: int   # votes this annotator has submitted
    total: int  # done + open + an estimate of what is still available to them

    @property
    def position(self) -> tuple[int, int]:
        return self.done, self.total

    @property
    def progress_text(self) -> str:
        return f"{min(self.done + 1, self.total)} of {self.total}"


# ---------------------------------------------------------------------------- items in


def _str(row: dict, key: str, required: bool = True) -> str:
    v = row.get(key)
    if v is None or v == "":
        if required:
            raise RowProblem(key, "missing")
        return ""
    if not isinstance(v, str):
        raise RowProblem(key, f"must be a string, got {type(v).__name__}")
    if required and not v.strip():
        raise RowProblem(key, "empty")
    return v


def validate_item(row: dict) -> dict:
    """A comparison item row → the item fields; RowProblem names the bad field. The prompt is a
    string or a message list (kept in meta[PROMPT_MESSAGES] unless it is one user message)."""
    item_id = row.get("id")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or str(item_id) == "":
        raise RowProblem("id", "missing" if item_id in (None, "") else "must be a string")
    if len(str(item_id)) > MAX_ID:
        raise RowProblem("id", f"longer than {MAX_ID} characters")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise RowProblem("meta", f"must be an object, got {type(meta).__name__}")
    gold_choice = row.get("gold_choice") or None
    if gold_choice is not None and gold_choice not in CHOICES:
        raise RowProblem("gold_choice", f"must be one of {', '.join(CHOICES)}, got {gold_choice!r}")
    is_gold = _flag(row, "is_gold", gold_choice is not None)
    if is_gold and gold_choice is None:
        raise RowProblem("gold_choice", "a gold item needs its known answer (a, b, tie, both_bad)")
    review_only = _flag(row, "review_only", False)
    round_no = row.get("round", 1)
    if isinstance(round_no, bool) or not isinstance(round_no, int) or round_no < 1:
        raise RowProblem("round", f"must be a whole number >= 1, got {round_no!r}")
    if review_only and is_gold:
        raise RowProblem("review_only", "a review-only item is never annotated: it cannot be gold")
    meta = dict(meta)
    if meta.get(PROMPT_MESSAGES) is not None:
        prompt_field(meta[PROMPT_MESSAGES], f"meta.{PROMPT_MESSAGES}")
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        messages = prompt_field(prompt)
        prompt = prompt_text(messages)
        if not is_plain(messages):
            meta[PROMPT_MESSAGES] = messages
    else:
        prompt = _str(row, "prompt")
    response_b = _str(row, "response_b", required=not review_only) or NO_SECOND_RESPONSE
    return {"id": str(item_id), "prompt": prompt,
            "response_a": _str(row, "response_a"), "response_b": response_b,
            "source_a": _str(row, "source_a", False), "source_b": _str(row, "source_b", False),
            "meta": meta, "is_gold": is_gold, "gold_choice": gold_choice if is_gold else None,
            "review_only": review_only, "round": round_no}


def _flag(row: dict, key: str, default: bool) -> bool:
    flag = row.get(key, default)
    if flag not in _TRUE and flag not in _FALSE:
        raise RowProblem(key, f"must be true or false, got {flag!r}")
    return flag in _TRUE


def add_items(store: Store, items: Iterable[dict], actor: str = "cli", flag_reason: str = "") -> int:
    """Validate and insert items in one transaction (all or nothing); returns the count.
    A duplicate id, within the batch or already stored, is an error naming it. flag_reason:
    when given, each review-only item is flagged on its response_a in the same transaction, with
    this reason (source "import"), so it reaches the safety queue."""
    rows, problems = [], []
    for i, raw in enumerate(items):
        loc = raw.get("_source", f"item {i + 1}") if isinstance(raw, dict) else f"item {i + 1}"
        try:
            if not isinstance(raw, dict):
                raise RowProblem("(row)", f"expected an object, got {type(raw).__name__}")
            rows.append((loc, validate_item(raw)))
        except RowProblem as e:
            problems.append(f"{loc}: {e.field}: {e.problem}")
    if problems:
        raise DataError(problems, len(rows) + len(problems), outcome="nothing was stored")
    first: dict[str, str] = {}
    for loc, r in rows:
        if r["id"] in first:
            problems.append(f"{loc}: id: duplicate id {r['id']!r} (first at {first[r['id']]})")
        first.setdefault(r["id"], loc)
    if problems:
        raise DataError(problems, len(rows), outcome="nothing was stored")

    def write(s: Session) -> int:
        ids = list(first)
        taken = set()
        for i in range(0, len(ids), 500):  # stay under the database's bound-parameter limit
            taken.update(s.scalars(select(Item.id).where(Item.id.in_(ids[i:i + 500]))))
        if taken:
            shown = ", ".join(repr(t) for t in sorted(taken)[:10])
            raise CollectError(f"{len(taken)} item id(s) already in the store: {shown}")
        t = _now()
        s.add_all(Item(**r, created_at=t) for _, r in rows)
        audit(s, actor, "items_add", n=len(rows), gold=sum(r["is_gold"] for _, r in rows))
        s.flush()  # the items first: a flag refers to its item
        for _, r in rows:
            if flag_reason and r["review_only"]:
                s.add(Flag(item_id=r["id"], side="a", source="import", reason=flag_reason, at=t))
                audit(s, actor, "flag_output", item_id=r["id"], side="a", source="import", reason=flag_reason)
        return len(rows)

    return store.transact(write)


def import_items(store: Store, path: str | Path, actor: str = "cli") -> int:
    """`rlhf collect import FILE`: JSONL/JSON/CSV/Parquet items, each bad row reported as
    file:line: field: problem before anything is stored. A review-only item is flagged on its
    response_a (its only output, or the one to review), so it reaches the safety queue."""
    try:
        rows = read_rows(path, validate_item)
    except DataError as e:  # the same problems, told as what an import leaves undone
        raise e.told_as("nothing was imported") from None
    return add_items(store, rows, actor=actor, flag_reason=f"imported from {Path(path).name}")


# -------------------------------------------------------------------------- work out


def _unit(*parts: Any) -> float:
    """A deterministic uniform [0, 1) draw from the parts (no shared RNG state to race on)."""
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def side_swapped(seed: int, item_id: str, annotator: str) -> bool:
    """True: response b is shown on the left for this annotator."""
    return _unit(seed, "side", item_id, annotator) < 0.5


# `is_gold = 0` rather than `NOT is_gold`: SQLite uses an index only for the equality form.
REGULAR = and_(Item.is_gold == false(), Item.review_only == false())
GOLD = Item.is_gold == true()


# An assignment that keeps its item from its annotator's queue: held, voted on, or skipped (a
# released one does not, unless skipped: its annotator may be handed the item again).
_KEPT = or_(Assignment.released == false(), Assignment.skipped == true())


def _mine(annotator):
    """The item is held by the annotator, was voted on, or was skipped by them (a released
    assignment is none of these unless skipped: its annotator may be handed the item again)."""
    return exists().where(Assignment.item_id == Item.id, Assignment.annotator == annotator, _KEPT)


def _released(annotator):
    """The id of the annotator's released assignment on the item, if there is one."""
    return (select(Assignment.id).where(Assignment.item_id == Item.id, Assignment.annotator == annotator,
                                        Assignment.released == true()).scalar_subquery())


# The statements of every vote, built once and run with parameters (:annotator, :overlap):
# building one costs more than SQLite takes to run it.
_ANNOTATOR, _OVERLAP = bindparam("annotator"), bindparam("overlap")
# The first held assignment without an active vote whose lease runs on (:cutoff): by id, so an
# undone vote's item (its lease renewed) comes back before the item given after it.
_OPEN = (select(*Assignment.__table__.columns)
         .where(Assignment.annotator == _ANNOTATOR, Assignment.done == false(),
                Assignment.released == false(), Assignment.assigned_at >= bindparam("cutoff"))
         .order_by(Assignment.id).limit(1))
_INSERT_ASSIGNMENT = Assignment.__table__.insert()
# The regular item of the newest round closest to overlap that this annotator never had (a new
# round's items first: the loop waits for their votes, not for what is left of older rounds).
# On PostgreSQL it takes the item's row lock, skipping items another writer holds: annotators
# claiming at once take the next-fullest items instead of queueing on one row (SQLite has no
# row locks, and its writers take turns anyway; SQLAlchemy leaves the clause out there).
_FIRST_REGULAR = (select(Item.id, _released(_ANNOTATOR))
                  .where(REGULAR, Item.n_assigned < _OVERLAP, ~_mine(_ANNOTATOR))
                  .order_by(Item.round.desc(), Item.n_assigned.desc(), Item.created_at, Item.id).limit(1)
                  .with_for_update(skip_locked=True, of=Item))
# Count one more assignment on the item unless it is at cap. A conditional UPDATE is an atomic
# compare-and-increment on any database, so two annotators cannot both take an item's last
# slot (on SQLite, BEGIN IMMEDIATE already serializes the writers).
_CLAIM = (update(Item).where(Item.id == bindparam("item_id"))
          .values(n_assigned=Item.n_assigned + 1)
          .execution_options(synchronize_session=False))
_CLAIM_CAPPED = _CLAIM.where(Item.n_assigned < bindparam("cap"))
_N_HAD = select(func.count()).where(Assignment.annotator == _ANNOTATOR)


def _open_assignment(s: Session, annotator: str, since: float) -> Assignment | None:
    """The unfinished assignment handed out at `since` or later, as a detached Assignment
    (read with a plain statement: the ORM's loading cost more than the query)."""
    row = s.connection().execute(_OPEN, {"annotator": annotator, "cutoff": since}).first()
    return None if row is None else Assignment(**row._asdict())


def _first_regular(s: Session, annotator: str, overlap: int):
    """(item id, the annotator's released assignment on it or None), or None."""
    return s.execute(_FIRST_REGULAR, {"annotator": annotator, "overlap": overlap}).first()


def _claim(s: Session, item_id: str, cap: int | None) -> bool:
    if cap is None:
        return s.execute(_CLAIM, {"item_id": item_id}).rowcount == 1
    return s.execute(_CLAIM_CAPPED, {"item_id": item_id, "cap": cap}).rowcount == 1


def _pick_gold(s: Session, annotator: str):
    q = (select(Item.id, _released(annotator)).where(GOLD, ~_mine(annotator))
         .order_by(Item.created_at, Item.id).limit(1))
    return s.execute(q).first()


def claim_slot(s: Session, item_id: str, is_gold: bool, overlap: int) -> bool:
    """One more slot on the item if it has a free one (gold items are not capped): for a vote
    on an assignment that was released meanwhile (collect/votes.py)."""
    return _claim(s, item_id, None if is_gold else overlap)


def _pick(s: Session, annotator: str, overlap: int, gold_rate: float, seed: int):
    """(item id, the annotator's released assignment on it or None) of a claimed slot."""
    # The gold coin's draw index; without gold items to mix in, one statement less.
    n_had = s.scalar(_N_HAD, {"annotator": annotator}) if gold_rate else 0
    for _ in range(8):
        regular = _first_regular(s, annotator, overlap)
        # Gold only ever replaces a regular item: once the regular pool is empty we stop
        # rather than serve a queue of nothing but QA items.
        if regular is None:
            return None
        gold = _pick_gold(s, annotator) if _unit(seed, "gold", annotator, n_had) < gold_rate \
            else None
        if gold is not None and _claim(s, gold[0], None):
            return gold
        if _claim(s, regular[0], overlap):
            return regular
    return None  # lost the race eight times: report nothing now, the next call tries again


def assign_next(s: Session, annotator: str, overlap: int, gold_rate: float, seed: int,
                lease_s: float | None = DEFAULT_LEASE_S, now: float | None = None
                ) -> Assignment | None:
    """Inside the caller's write transaction (which has checked the user): first every lease
    run out by `now` goes back to the queue, then the annotator's unfinished assignment, else a
    new one (or a released one of theirs taken up again); None when nothing is left."""
    t = _now() if now is None else now
    release_expired(s, t, lease_s)
    current = _open_assignment(s, annotator, cutoff(t, lease_s))
    if current is not None:
        return current
    picked = _pick(s, annotator, overlap, gold_rate, seed)
    if picked is None:
        return None
    item_id, released_id = picked
    conn = s.connection()
    values = dict(item_id=item_id, annotator=annotator, assigned_at=t, done=False, released=False)
    if released_id is not None:
        row = conn.execute(REOPEN, {"assignment_id": released_id, "at": t}).first()
        if row is not None:  # else another request took it up: the INSERT's conflict retries
            return Assignment(id=row.id, swapped=row.swapped, **values)
    values["swapped"] = side_swapped(seed, item_id, annotator)
    values["id"] = conn.execute(_INSERT_ASSIGNMENT, values).inserted_primary_key[0]
    return Assignment(**values)  # detached: written with a plain INSERT, as the vote


def check_queue(overlap: int, gold_rate: float) -> None:
    if overlap < 1 or not 0.0 <= gold_rate < 1.0:
        raise CollectError(f"need overlap >= 1 and 0 <= gold_rate < 1, got {overlap}, {gold_rate}")


def next_item(store: Store, annotator: str, overlap: int = 3, gold_rate: float = 0.1,
              seed: int = 0, roles: tuple[str, ...] = ROLES,
              lease_s: float | None = DEFAULT_LEASE_S, now: float | None = None) -> ItemView | None:
    """The annotator's unfinished item (while its lease runs: lease_s seconds from when it was
    handed out, None or 0 for no limit), else a newly assigned one; None when nothing is left.
    Safe under concurrency: check and insert happen in one write transaction, and a lost race
    on the unique (item, annotator) constraint is retried. roles: who may annotate; now: the
    time (tests)."""
    check_queue(overlap, gold_rate)
    t = _now() if now is None else now
    with store.read() as s:  # the common case (a page reload) needs no write lock
        require_user(s, annotator, roles)
        current = _open_assignment(s, annotator, cutoff(t, lease_s))
        if current is not None:
            return read_view(s, current, overlap, gold_rate)

    def write(s: Session) -> Assignment | None:
        require_user(s, annotator, roles)
        return assign_next(s, annotator, overlap, gold_rate, seed, lease_s, t)

    return view_assignment(store, store.transact(write, retry_integrity=3), overlap, gold_rate)


def view_assignment(store: Store, a: Assignment | None, overlap: int, gold_rate: float
                    ) -> ItemView | None:
    """What the annotator sees of an assignment made in a write transaction, read after it
    committed: progress counts need no write lock, so the writer's turn stays short. One
    statement on a plain connection: an ORM session costs more than the read."""
    if a is None:
        return None
    with store.engine.connect() as conn:
        return read_view(conn, a, overlap, gold_rate)


def read_view(s: Session | Connection, a: Assignment, overlap: int, gold_rate: float
              ) -> ItemView:
    """What the annotator sees of an assignment: its texts in screen order and progress."""
    row = s.execute(_VIEW, {"item_id": a.item_id, "annotator": a.annotator,
                            "overlap": overlap}).one()
    prompt, response_a, response_b, *counts = row
    left, right = (response_b, response_a) if a.swapped else (response_a, response_b)
    done, total = _total(counts, gold_rate)
    return ItemView(item_id=a.item_id, prompt=prompt, left=left, right=right,
                    done=done, total=total)


# --------------------------------------------------------------------------- progress


def _count(source, *where):
    return select(func.count()).select_from(source).where(*where).scalar_subquery()


def _counts() -> list:
    """The six counts behind "n of N" for :annotator and :overlap (see _total)."""
    mine = and_(Assignment.annotator == _ANNOTATOR, Assignment.released == false())
    # had: held, voted on or skipped: an open item the annotator skipped is not left for them
    had = and_(Assignment.annotator == _ANNOTATOR, _KEPT)
    open_regular = and_(REGULAR, Item.n_assigned < _OVERLAP)
    with_item = join(Assignment, Item, Item.id == Assignment.item_id)
    return [_count(Vote, Vote.annotator == _ANNOTATOR, Vote.active),
            _count(Assignment, mine),
            _count(Item, open_regular),
            _count(with_item, had, open_regular),
            _count(with_item, had, GOLD),
            _count(Item, GOLD)]


# One round trip each: the counts alone, and an item's text with them (:item_id).
_PROGRESS = select(*_counts())
_VIEW = select(Item.prompt, Item.response_a, Item.response_b, *_counts()) \
    .where(Item.id == bindparam("item_id"))


def _total(counts, gold_rate: float) -> tuple[int, int]:
    done, assigned, open_items, had, gold_had, gold_items = counts
    available = open_items - had
    expected_gold = min(gold_items - gold_had, round(available * gold_rate / (1.0 - gold_rate)))
    return done, assigned + available + expected_gold


def _progress(s: Session, annotator: str, overlap: int, gold_rate: float) -> tuple[int, int]:
    return _total(s.execute(_PROGRESS, {"annotator": annotator, "overlap": overlap}).one(),
                  gold_rate)


def progress(store: Store, annotator: str, overlap: int = 3, gold_rate: float = 0.1
             ) -> tuple[int, int]:
    """(done, total) for "12 of 40": total = assigned so far + an estimate of what is left."""
    with store.read() as s:
        return _progress(s, annotator, overlap, gold_rate)


def round_progress(round_of: dict[str, int], votes_per_item: dict[str, int], overlap: int
                   ) -> list[dict[str, int]]:
    """Per annotation round (ascending): its regular items, how many have `overlap` votes, are
    in progress and untouched, and its active votes. round_of: regular item -> round;
    votes_per_item: regular item -> active votes."""
    out = {}
    for item, r in round_of.items():
        row = out.setdefault(r, {"round": r, "items": 0, "complete": 0, "in_progress": 0,
                                 "untouched": 0, "votes": 0})
        n = votes_per_item.get(item, 0)
        row["items"] += 1
        row["votes"] += n
        row["complete" if n >= overlap else "in_progress" if n else "untouched"] += 1
    return [out[r] for r in sorted(out)]


def votes_in_round(store: Store, annotator: str, item_id: str) -> int:
    """The annotator's active votes on items of `item_id`'s annotation round (the app opens a
    round's guidelines until the first)."""
    with store.read() as s:
        round_no = select(Item.round).where(Item.id == item_id).scalar_subquery()
        return s.scalar(select(func.count()).select_from(Vote).join(Item, Item.id == Vote.item_id)
                        .where(Vote.annotator == annotator, Vote.active, Item.round == round_no))


def admin_progress(store: Store, overlap: int = 3) -> dict[str, Any]:
    """Per-annotator counts and item completion, for the admin dashboard and `report`. Votes
    are active votes, counted apart by kind: "done" and the rounds' "votes" count votes on
    regular items only (so the annotators' "done" add up to the rounds' votes), "gold_done"
    the votes on gold items (quality checks); "votes" has both totals. "open": items an
    annotator holds without a vote (a released assignment holds none)."""
    with store.read() as s:
        users = list(s.scalars(select(User).order_by(User.name)))
        assigned = dict(s.execute(select(Assignment.annotator, func.count())
                                  .group_by(Assignment.annotator)).all())
        held = dict(s.execute(select(Assignment.annotator, func.count())
                              .where(Assignment.done == false(), Assignment.released == false())
                              .group_by(Assignment.annotator)).all())
        per_kind = s.execute(select(Vote.annotator, Item.is_gold, func.count(), func.max(Vote.submitted_at))
                             .join(Item, Item.id == Vote.item_id).where(Vote.active)
                             .group_by(Vote.annotator, Item.is_gold)).all()
        per_item = dict(s.execute(select(Vote.item_id, func.count()).join(Item, Item.id == Vote.item_id)
                                  .where(Vote.active, REGULAR).group_by(Vote.item_id)).all())
        n_items = s.scalar(select(func.count()).select_from(Item).where(REGULAR))
        n_gold = s.scalar(select(func.count()).select_from(Item).where(GOLD))
        n_review = s.scalar(select(func.count()).select_from(Item).where(Item.review_only == true()))
        round_of = dict(s.execute(select(Item.id, Item.round).where(REGULAR)).all())
    done, gold_done, last = {}, {}, {}
    for name, is_gold, n, newest in per_kind:
        (gold_done if is_gold else done)[name] = n
        last[name] = max(last.get(name) or newest, newest)
    rows = []
    for u in users:
        if not (assigned.get(u.name) or u.role == "annotator"):
            continue  # reviewers and admins who never annotated
        rows.append({"annotator": u.name, "role": u.role, "active": u.active, "done": done.get(u.name, 0),
                     "open": held.get(u.name, 0), "gold_done": gold_done.get(u.name, 0),
                     "last_submit": last.get(u.name)})
    complete = sum(n >= overlap for n in per_item.values())
    return {"annotators": rows, "overlap": overlap,
            "rounds": round_progress(round_of, per_item, overlap),
            "items": {"regular": n_items, "gold": n_gold, "review_only": n_review, "complete": complete,
                      "in_progress": len(per_item) - complete, "untouched": n_items - len(per_item)},
            "votes": {"regular": sum(done.values()), "gold": sum(gold_done.values())}}
