"""The safety review: which outputs a reviewer must look at, and their decisions.

An output (item, side) enters the queue when any active vote rates its harmfulness >= 4 (an
unrated harmfulness triggers nothing), when a vote ticks a harm category, whatever its choice
(the side it rates more harmful, else both: see _flagged_sides), or when something outside the
app flagged it (the eval stage's safety audit, through flag_output or `extra_flagged`). It
leaves the queue once a reviewer decided on it. A decision is never edited: a later decision on
the same output is a new row and wins.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .store import DECISIONS, SIDES, CollectError, Flag, Item, Review, Store, Vote, audit, now
from .users import require_user
from .votes import HARM_CATEGORIES

HARMFUL_RATING = 4
REVIEWER_ROLES = ("reviewer", "admin")


@dataclass
class QueueEntry:
    item_id: str
    side: str  # the item's canonical side, a or b
    prompt: str
    response: str
    reasons: list[str] = field(default_factory=list)
    votes: dict[str, Any] = field(default_factory=dict)  # summary, see _vote_summary
    is_gold: bool = False  # a known-answer item: a harmful one would skew every annotator's score

    def severity(self) -> tuple:
        """Sort key, most severe first: gold items, then the highest harmfulness rating, the
        number of harm flags, the number of ratings >= HARMFUL_RATING, the number of reasons."""
        harm = self.votes.get("harmfulness", [])
        return (not self.is_gold, -max(harm, default=0),
                -sum(self.votes.get("harm_flags", {}).values()),
                -sum(h >= HARMFUL_RATING for h in harm), -len(self.reasons))


def flag_output(store: Store, item_id: str, side: str, source: str = "eval", reason: str = "",
                actor: str = "cli") -> Flag:
    """Put an output in front of reviewers from outside the app (e.g. the eval audit)."""
    if side not in SIDES:
        raise CollectError(f"side {side!r}: must be a or b")

    def write(s: Session) -> Flag:
        if s.get(Item, item_id) is None:
            raise CollectError(f"no item {item_id!r}")
        flag = Flag(item_id=item_id, side=side, source=source, reason=reason, at=now())
        s.add(flag)
        audit(s, actor, "flag_output", item_id=item_id, side=side, source=source, reason=reason)
        return flag

    return store.transact(write)


def _flagged_sides(vote: Vote) -> tuple[str, ...]:
    """The sides a vote's harm categories point at. The form takes them for the item as a whole
    (its label says "either response"), so: the side the vote rates more harmful, when it
    rates both sides' harmfulness and they differ; else both sides, for a reviewer to tell."""
    harm = {side: aspects.get("harmfulness") for side, aspects in (("a", vote.aspects_a), ("b", vote.aspects_b))}
    if None not in harm.values() and harm["a"] != harm["b"]:
        return (max(harm, key=harm.get),)
    return SIDES


def _vote_reasons(votes: Iterable[Vote]) -> dict[tuple[str, str], list[str]]:
    reasons: dict[tuple[str, str], list[str]] = {}
    for v in votes:
        for side, aspects in (("a", v.aspects_a), ("b", v.aspects_b)):
            harm = aspects.get("harmfulness")
            if harm is not None and harm >= HARMFUL_RATING:
                reasons.setdefault((v.item_id, side), []).append(
                    f"{v.annotator} rated harmfulness {harm}")
        if v.harm_flags:
            said = "both bad, flagged" if v.choice == "both_bad" else "flagged"
            for side in _flagged_sides(v):
                reasons.setdefault((v.item_id, side), []).append(
                    f"{v.annotator}: {said} {', '.join(v.harm_flags)}")
    return reasons


def _vote_summary(votes: list[Vote], side: str) -> dict[str, Any]:
    ratings = [h for v in votes
               if (h := (v.aspects_a if side == "a" else v.aspects_b).get("harmfulness"))
               is not None]  # the ratings given; n_votes says how many votes there are
    flags = Counter(f for v in votes for f in v.harm_flags)
    return {"n_votes": len(votes), "choices": dict(Counter(v.choice for v in votes)),
            "harmfulness": ratings, "harm_flags": dict(flags),
            "rationales": [v.rationale for v in votes if v.rationale]}


def safety_queue(store: Store, extra_flagged: Iterable[tuple] = ()) -> list[QueueEntry]:
    """Undecided flagged outputs, most severe first (QueueEntry.severity), then oldest item
    first. extra_flagged: (item_id, side) or (item_id, side, reason) tuples from outside the
    store."""
    with store.read() as s:
        votes = list(s.scalars(select(Vote).where(Vote.active)))
        reasons = _vote_reasons(votes)
        for f in s.scalars(select(Flag).order_by(Flag.id)):
            reasons.setdefault((f.item_id, f.side), []).append(
                f"flagged by {f.source}" + (f": {f.reason}" if f.reason else ""))
        for flagged in extra_flagged:
            item_id, side, *why = flagged
            reasons.setdefault((str(item_id), side), []).append(
                "flagged: " + (str(why[0]) if why else "by the eval stage"))
        decided = set(s.execute(select(Review.item_id, Review.side)).tuples())
        keys = [k for k in reasons if k not in decided]
        items = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_({k[0] for k in keys})))}
    by_item: dict[str, list[Vote]] = {}
    for v in votes:
        by_item.setdefault(v.item_id, []).append(v)
    queue = []
    for item_id, side in sorted((k for k in keys if k[0] in items),
                                key=lambda k: (items[k[0]].created_at, k)):
        item = items[item_id]
        queue.append(QueueEntry(item_id=item_id, side=side, prompt=item.prompt,
                                response=item.response_a if side == "a" else item.response_b,
                                reasons=reasons[(item_id, side)],
                                votes=_vote_summary(by_item.get(item_id, []), side),
                                is_gold=item.is_gold))
    return sorted(queue, key=QueueEntry.severity)  # stable: oldest first among equals


def _reviewable(s: Session, item_id: str, side: str) -> bool:
    """The output is, or was, in the safety queue: flagged from outside the app, flagged by an
    active vote, or decided before (a later decision supersedes). A reviewer's decision can put a
    reference answer into the exported pairs, so it is taken only on what the queue shows."""
    if s.scalar(select(Flag.id).where(Flag.item_id == item_id, Flag.side == side).limit(1)) is not None:
        return True
    if s.scalar(select(Review.id).where(Review.item_id == item_id, Review.side == side).limit(1)) is not None:
        return True
    votes = s.scalars(select(Vote).where(Vote.active, Vote.item_id == item_id))
    return (item_id, side) in _vote_reasons(votes)


def decide(store: Store, reviewer: str, item_id: str, side: str, decision: str,
           category: str | None = None, reference_answer: str | None = None) -> Review:
    """Record a reviewer's decision on one output (reviewer or admin role only).

    confirm_harmful needs a harm category; reference_answer needs the safe answer's text
    (it marks the output unsafe too, and the export may use the text as "chosen").
    """
    if side not in SIDES:
        raise CollectError(f"side {side!r}: must be a or b")
    if decision not in DECISIONS:
        raise CollectError(f"decision {decision!r}: must be one of {', '.join(DECISIONS)}")
    if decision == "confirm_harmful" and category not in HARM_CATEGORIES:
        raise CollectError(f"confirm_harmful needs a category: one of {', '.join(HARM_CATEGORIES)}")
    if category is not None and category not in HARM_CATEGORIES:
        raise CollectError(f"category {category!r}: use one of {', '.join(HARM_CATEGORIES)}")
    reference_answer = (reference_answer or "").strip() or None
    if decision == "reference_answer" and reference_answer is None:
        raise CollectError("A safe reference answer needs its text: type the answer the policy should have given.")

    def write(s: Session) -> Review:
        require_user(s, reviewer, REVIEWER_ROLES)
        if s.get(Item, item_id) is None:
            raise CollectError(f"no item {item_id!r}")
        if not _reviewable(s, item_id, side):
            raise CollectError(f"item {item_id!r}, response {side}: not in the safety queue (no vote or audit "
                               "flagged it), so there is nothing to decide")
        review = Review(item_id=item_id, side=side, reviewer=reviewer, decision=decision,
                        category=category, reference_answer=reference_answer, at=now())
        s.add(review)
        s.flush()
        audit(s, reviewer, "review_decide", review_id=review.id, item_id=item_id, side=side,
              decision=decision, category=category)
        return review

    return store.transact(write)


def latest_decisions(store: Store) -> dict[tuple[str, str], Review]:
    """{(item_id, side): the newest review} (what the export acts on)."""
    with store.read() as s:
        return {(r.item_id, r.side): r for r in s.scalars(select(Review).order_by(Review.id))}
