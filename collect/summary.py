"""The agreement table of a store (admin dashboard, dataset card, `rlhf collect report`).

All statistics come from collect/agreement.py; this module only gathers the active votes.
Gold items are left out of the agreement table (every annotator may see them, so their rater
counts differ from the regular items') and used for gold accuracy instead.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.records import ASPECTS

from .agreement import (agreement_report, annotator_agreement, flag_annotators, gold_accuracy,
                        position_bias)
from .store import CHOICES, Item, Store, Vote

RATINGS = (1, 2, 3, 4, 5)
# A careful annotator's left-share test can dip below 0.05 by chance when there are many of
# them; 0.001 singles out only a real habit of clicking one side.
POSITION_P = 0.001


def _left_won(choice: str, swapped: bool) -> bool:
    return (choice == "a") != swapped  # a shown left and chosen, or b shown left and chosen


def _position(rows: list[tuple]) -> dict[str, Any]:
    decisive = [r for r in rows if r[2] in ("a", "b")]
    return position_bias(sum(_left_won(r[2], r[3]) for r in decisive), len(decisive))


def load_votes(store: Store) -> list[tuple]:
    """(item_id, annotator, choice, swapped, aspects_a, aspects_b, is_gold, gold_choice)."""
    q = (select(Vote.item_id, Vote.annotator, Vote.choice, Vote.swapped, Vote.aspects_a,
                Vote.aspects_b, Item.is_gold, Item.gold_choice)
         .join(Item, Item.id == Vote.item_id).where(Vote.active).order_by(Vote.id))
    with store.read() as s:
        return [tuple(r) for r in s.execute(q)]


def agreement_summary(store: Store, threshold: float = 0.5, min_items: int = 10,
                      gold_threshold: float = 0.5, min_gold: int = 5, n_boot: int = 500,
                      seed: int = 0) -> dict[str, Any]:
    """Binary-choice and per-aspect agreement, per-annotator quality, position bias, and the
    annotators to look at ("flagged", with the reasons in "annotators"[name]["why"])."""
    rows = load_votes(store)
    regular = [r for r in rows if not r[6]]
    gold = [r for r in rows if r[6]]
    out: dict[str, Any] = {"n_votes": len(rows), "n_gold_votes": len(gold),
                           "choice": None, "aspects": {}, "annotators": {}, "flagged": []}
    if regular:
        out["choice"] = agreement_report([r[:3] for r in regular], CHOICES, n_boot=n_boot,
                                         seed=seed)
        for aspect in ASPECTS:
            # None (not rated) is a missing rating: agreement_report leaves it out.
            ratings = [(f"{r[0]}/{side}", r[1], (r[4] if side == "a" else r[5]).get(aspect))
                       for r in regular for side in ("a", "b")]
            out["aspects"][aspect] = agreement_report(ratings, RATINGS, ("ordinal", "interval"),
                                                      n_boot=n_boot, seed=seed)
    agree = annotator_agreement([r[:3] for r in regular]) if regular else {}
    gold_acc = gold_accuracy([r[:3] for r in gold], {r[0]: r[7] for r in gold}) if gold else {}
    low_agree = set(flag_annotators(agree, threshold, min_items))
    low_gold = set(flag_annotators(gold_acc, gold_threshold, min_gold))
    for name in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == name]
        pos = _position(mine)
        why = []
        if name in low_agree:
            why.append(f"agrees with the others' majority on {agree[name]['share']:.0%} "
                       f"of {agree[name]['n']} items (threshold {threshold:.0%})")
        if name in low_gold:
            why.append(f"gold accuracy {gold_acc[name]['share']:.0%} on {gold_acc[name]['n']} "
                       f"gold items (threshold {gold_threshold:.0%})")
        if pos["p_value"] < POSITION_P:
            why.append(f"picks the left response in {pos['share']:.0%} of "
                       f"{pos['n_decisive']} decisive votes (p = {pos['p_value']:.1e})")
        out["annotators"][name] = {
            "n_votes": len(mine), "agreement": agree.get(name, {"share": float("nan"), "n": 0}),
            "gold_accuracy": gold_acc.get(name, {"share": float("nan"), "n": 0}),
            "position_bias": pos, "why": why}
        if why:
            out["flagged"].append(name)
    out["position_bias"] = _position(rows)
    return out
