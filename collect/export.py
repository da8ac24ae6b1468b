"""Votes → preference pairs in TRL's columns, plus a dataset card.

One row per regular item whose active votes have a clear a/b majority:
  prompt, chosen, rejected  TRL's preference columns (chosen = the majority's response); the
             prompt is the item's text, or its messages when it has a system prompt or
             earlier turns (TRL's conversational form);
  margin     margin_scale * max(0, mean over the item's active votes of
             quality(chosen) - quality(rejected)) — the 1-5 "quality" rating gap, so a
             unanimous 5-vs-1 item gets margin_scale * 4 (1.0 by default) and a pair the
             voters rated alike gets ~0. Dissenting voters pull it down. The reward loss
             -log sigmoid(r_c - r_r - m) (Llama 2) then asks for a wider gap on clear pairs;
  agreement  share of the item's voters who chose the majority;
  n_votes    active votes on the item;
  aspects_chosen / aspects_rejected   per-aspect mean rating over those votes;

Missing ratings (an aspect the annotator left unrated is stored as None) are never filled in:
an aspect's mean is over the votes that rated it, and an aspect no voter rated is left out of
aspects_chosen / aspects_rejected (null when no aspect was rated at all), which the reward
stage reads as "no target". The margin's mean is over the votes that rated the quality of
both responses; when no vote did, the margin is 0.0, the value of a pair without a margin.
  item_id, round (the annotation round that made the item), origin ("votes", "both_bad_harm"
  or "reviewer": see below).

Both bad, one less harmful: when the majority says "both bad" but the voters' mean harmfulness
ratings (1-5, higher = more harmful) of the two responses differ by at least min_harm_gap
(default 1.0), the less harmful response is chosen: origin "both_bad_harm", with
harm_gap = mean harmfulness(rejected) - mean harmfulness(chosen) and the min_harm_gap it
passed. These are the pairs that teach a reward model that an unhelpful refusal beats
harmful help, where both answers fail the user. agreement is the "both bad" majority's share;
the margin is the quality gap as above (usually ~0: both were rated bad). A min_harm_gap
above 4 (the widest gap on the scale) turns this off.

Not turned into pairs, but counted by reason: gold items (annotator QA), review-only items
(one flagged output shown to safety reviewers, never voted on), items without votes
or with fewer than min_votes, a tie majority, a both_bad majority without a harmfulness gap
of min_harm_gap, a split majority (e.g. 1 a vs 1 b), agreement below min_agreement, and a
majority response a reviewer judged unsafe.
Safety: a response whose latest review is confirm_harmful or reference_answer is never
exported as chosen. If the item has a reviewer's reference answer, the pair becomes
chosen = that reference, rejected = the unsafe response (origin "reviewer", agreement 1.0,
margin the full margin_scale * 4, aspects_chosen null); otherwise the pair is dropped.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import fmean
from typing import Any

from sqlalchemy import select

from core.io import atomic_write_text, write_jsonl
from core.records import ASPECTS

from .assign import PROMPT_MESSAGES
from .card import render_card
from .review import latest_decisions
from .store import Item, Store, Vote
from .summary import agreement_summary

UNSAFE = ("confirm_harmful", "reference_answer")
REASONS = ("gold", "review_only", "no_votes", "too_few_votes", "tie", "both_bad", "split",
           "low_agreement", "harmful_chosen")
MAX_GAP = 4.0  # the widest quality gap on a 1-5 scale
MIN_HARM_GAP = 1.0  # both bad: the mean harmfulness gap that makes the less harmful one chosen


def _means(ratings: list[dict]) -> dict[str, float] | None:
    """Per-aspect mean over the ratings given; None when nothing was rated."""
    given = {a: [r[a] for r in ratings if r.get(a) is not None] for a in ASPECTS}
    return {a: round(fmean(xs), 4) for a, xs in given.items() if xs} or None


def _margin(chosen: list[dict], rejected: list[dict], margin_scale: float) -> float:
    """margin_scale * max(0, mean quality gap) over the votes that rated both responses."""
    gaps = [x["quality"] - y["quality"] for x, y in zip(chosen, rejected)
            if x.get("quality") is not None and y.get("quality") is not None]
    return round(margin_scale * max(0.0, fmean(gaps)), 6) if gaps else 0.0


def _mean_harm(ratings: list[dict]) -> float | None:
    given = [r["harmfulness"] for r in ratings if r.get("harmfulness") is not None]
    return fmean(given) if given else None


def _less_harmful(ratings: dict[str, list[dict]], min_harm_gap: float) -> tuple[str, float] | None:
    """("a" | "b", harm gap) for the side rated less harmful by at least min_harm_gap, or None."""
    ha, hb = _mean_harm(ratings["a"]), _mean_harm(ratings["b"])
    if ha is None or hb is None or ha == hb or abs(ha - hb) < min_harm_gap:
        return None
    return ("a", hb - ha) if ha < hb else ("b", ha - hb)


def _reference(decisions: dict, item_id: str, prefer: str) -> str | None:
    for side in (prefer, "b" if prefer == "a" else "a"):
        r = decisions.get((item_id, side))
        if r is not None and r.decision == "reference_answer":
            return r.reference_answer
    return None


def _pair(item: Item, votes: list[Vote], decisions: dict, min_agreement: float,
          min_votes: int, margin_scale: float,
          min_harm_gap: float = MIN_HARM_GAP) -> tuple[dict | None, str]:
    """(row, "votes" | "both_bad_harm" | "reviewer") or (None, exclusion reason) for one
    regular item."""
    if not votes:
        return None, "no_votes"
    if len(votes) < min_votes:
        return None, "too_few_votes"
    counts = Counter(v.choice for v in votes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None, "split"
    majority, n_major = counts[0]
    ratings = {s: [v.aspects_a if s == "a" else v.aspects_b for v in votes] for s in "ab"}
    extra, origin = {}, "votes"
    if majority == "tie":
        return None, majority
    if majority == "both_bad":
        safer = _less_harmful(ratings, min_harm_gap)
        if safer is None:
            return None, majority
        majority, gap = safer
        extra, origin = {"harm_gap": round(gap, 4), "min_harm_gap": min_harm_gap}, "both_bad_harm"
    agreement = n_major / len(votes)
    if agreement < min_agreement:
        return None, "low_agreement"
    c, r = majority, "b" if majority == "a" else "a"
    side_text = {"a": item.response_a, "b": item.response_b}
    prompt = (item.meta or {}).get(PROMPT_MESSAGES) or item.prompt
    row = {"prompt": prompt, "chosen": side_text[c], "rejected": side_text[r],
           "margin": _margin(ratings[c], ratings[r], margin_scale),
           "agreement": round(agreement, 6), "n_votes": len(votes),
           "aspects_chosen": _means(ratings[c]), "aspects_rejected": _means(ratings[r]),
           "item_id": item.id, "round": item.round, "origin": origin, **extra}
    review = decisions.get((item.id, c))
    if review is None or review.decision not in UNSAFE:
        return row, origin
    reference = _reference(decisions, item.id, c)
    if reference is None:
        return None, "harmful_chosen"
    return row | {"chosen": reference, "rejected": side_text[c], "agreement": 1.0,
                  "margin": round(margin_scale * MAX_GAP, 6), "aspects_chosen": None,
                  "aspects_rejected": _means(ratings[c]), "origin": "reviewer"}, "reviewer"


def build_pairs(store: Store, min_agreement: float = 0.0, min_votes: int = 1,
                margin_scale: float = 0.25,
                min_harm_gap: float = MIN_HARM_GAP, round_no: int = 0) -> tuple[list[dict], dict[str, Any]]:
    """The preference rows and the counts (items, pairs, exclusions by reason); round_no: only
    that annotation round's items (0 = every round)."""
    decisions = latest_decisions(store)
    with store.read() as s:
        query = select(Item).order_by(Item.created_at, Item.id)
        if round_no:
            query = query.where(Item.round == round_no)
        items = list(s.scalars(query))
        votes: dict[str, list[Vote]] = {}
        for v in s.scalars(select(Vote).where(Vote.active).order_by(Vote.id)):
            votes.setdefault(v.item_id, []).append(v)
    rows, excluded, origins = [], Counter(), Counter()
    for item in items:
        if item.is_gold or item.review_only:
            excluded["gold" if item.is_gold else "review_only"] += 1
            continue
        row, why = _pair(item, votes.get(item.id, []), decisions, min_agreement, min_votes,
                         margin_scale, min_harm_gap)
        if row is None:
            excluded[why] += 1
        else:
            rows.append(row)
            origins[why] += 1
    stats = {"n_items": len(items), "n_pairs": len(rows), "from_votes": origins["votes"],
             "from_both_bad": origins["both_bad_harm"], "from_reviewer": origins["reviewer"],
             "excluded": {k: excluded[k] for k in REASONS},
             "min_agreement": min_agreement, "min_votes": min_votes, "margin_scale": margin_scale,
             "min_harm_gap": min_harm_gap, "round": round_no or None}
    return rows, stats


def export_preferences(store: Store, out_path: str | Path, min_agreement: float = 0.0,
                       min_votes: int = 1, margin_scale: float = 0.25, n_boot: int = 500,
                       card: bool = True, min_harm_gap: float = MIN_HARM_GAP,
                       round_no: int = 0) -> dict[str, Any]:
    """Write preferences.jsonl (atomically) and, next to it, the dataset card README.md."""
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement}")
    out_path = Path(out_path)
    if min_harm_gap <= 0:
        raise ValueError(f"min_harm_gap must be > 0, got {min_harm_gap}")
    rows, stats = build_pairs(store, min_agreement, min_votes, margin_scale, min_harm_gap, round_no)
    write_jsonl(out_path, rows)
    stats["path"] = str(out_path)
    if card:
        summary = agreement_summary(store, n_boot=n_boot)
        stats["card"] = str(atomic_write_text(out_path.parent / "README.md",
                                              render_card(stats, summary)))
        stats["flagged_annotators"] = summary["flagged"]
    return stats
