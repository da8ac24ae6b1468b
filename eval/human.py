"""Human A/B tests through collect/: blind comparison items out, win rates from votes back.

send_ab stores one item per prompt in the run's collect store (db, default
<run>/collect/annotations.db): the two policies'
responses, the policy put on side a by a seeded coin per item. Annotators see only the prompt
and the two texts (collect.assign.ItemView never carries sources, and the app shows each
annotator the sides in their own random order); the item id is an opaque hash. Which policy
is on which side stays server-side, in the item's source_a/source_b columns (the store's
"which model/run" fields), with meta {"ab_test": {"a": a, "b": b}} naming the comparison.

human_win_rates reads the active votes on those items. Votes are stored in the item's
canonical a/b order (the on-screen swap is undone at submit, collect.votes.canonical_choice),
so a vote for side a is a vote for source_a. Per item majority: a vote for a policy counts 1
for it, a tie or both_bad vote 1/2 for each; the policy with more wins the item, equal counts
are a tie. Ties count half in the win rate, and the interval bootstraps over items (prompts),
as eval.metrics does for the automatic judges. Beside it, the style-controlled win rate
(eval.style_control) fitted on the two responses each item showed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from collect.assign import add_items
from collect.commands import has_store, store_for
from collect.store import Item, Vote
from core.config import UserError
from core.prompts import prompt_value
from core.rounds import locate
from eval.metrics import outcomes, win_rate_with_ci
from eval.style_control import style_controlled_win_rate

AB_KEY = "ab_test"  # item meta: {"a": first policy, "b": second policy} as send_ab got them
EMPTY = "(empty response)"  # what annotators see for a policy that said nothing


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def ab_item_id(a: str, b: str, prompt: str | list[dict], round_no: int = 1) -> str:
    """Opaque and deterministic: the same comparison on the same prompt in the same round of the
    loop is the same item (a plain prompt is hashed as its text, and round 1's ids are what they
    were before rounds existed). A later round's `ppo` is another policy than round 1's."""
    return "ab-" + _digest("ab", a, b, prompt_value(prompt), *([round_no] if round_no != 1 else []))[:24]


def _b_on_side_a(seed: int, item_id: str) -> bool:
    """The per-item coin (seeded, independent of the prompt's place in the list)."""
    return int(_digest("side", seed, item_id)[:16], 16) / 16**16 < 0.5


def ab_items(a: str, b: str, prompts: list, responses_a: list[str],
             responses_b: list[str], seed: int = 0, round_no: int = 1) -> list[dict]:
    """Comparison item rows (collect.assign.validate_item format), one per distinct prompt; a
    prompt is a string or the conversation's messages."""
    if a == b:
        raise UserError(f"an A/B test needs two different policies, got {a!r} twice")
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise UserError(f"{len(prompts)} prompts but {len(responses_a)} responses of {a!r} "
                        f"and {len(responses_b)} of {b!r}")
    items: dict[str, dict] = {}
    for prompt, ra, rb in zip(prompts, responses_a, responses_b):
        item_id = ab_item_id(a, b, prompt, round_no)
        sides = [(a, ra if ra.strip() else EMPTY), (b, rb if rb.strip() else EMPTY)]
        if _b_on_side_a(seed, item_id):
            sides.reverse()
        (src_a, text_a), (src_b, text_b) = sides
        items.setdefault(item_id, {"id": item_id, "prompt": prompt, "response_a": text_a,
                                   "response_b": text_b, "source_a": src_a, "source_b": src_b,
                                   "meta": {AB_KEY: {"a": a, "b": b, "round": round_no}, "seed": seed}})
    return list(items.values())


def send_ab(run: str | Path, a: str, b: str, prompts: list, responses_a: list[str],
            responses_b: list[str], seed: int = 0, db: str | None = None) -> int:
    """Store blind A/B items for annotators; returns how many were new.

    prompts[i] was answered responses_a[i] by policy a and responses_b[i] by policy b.
    Idempotent: an item already stored (same a, b and prompt) is kept as it is. A blank
    response is shown as EMPTY (the store needs text; the annotator should see it failed).
    """
    items = ab_items(a, b, prompts, responses_a, responses_b, seed, round_no=locate(run)[1])
    store = store_for(run, db)
    try:
        with store.read() as s:
            stored = set(s.scalars(select(Item.id).where(Item.id.in_([i["id"] for i in items]))))
        new = [i for i in items if i["id"] not in stored]
        return add_items(store, new, actor="eval") if new else 0
    finally:
        store.close()


def _vote_counts(store, round_no: int = 1
                 ) -> tuple[dict[tuple[str, str], dict[str, list[float]]], dict[str, tuple[str, str]]]:
    """{(a, b): {item_id: [votes for a, votes for b]}} over the A/B items' active votes (those
    sent from round `round_no` of the loop, core/rounds.py), comparisons in the order their first
    item was stored; and {item_id: (a's response, b's response)} (a blank response as "", not as
    the EMPTY shown to annotators)."""
    with store.read() as s:
        items = {i.id: i for i in s.scalars(select(Item).order_by(Item.created_at, Item.id))
                 if isinstance(i.meta, dict) and AB_KEY in i.meta
                 and i.meta[AB_KEY].get("round", 1) == round_no}
        votes = list(s.scalars(select(Vote).where(Vote.active).order_by(Vote.id)))
    counts: dict[tuple[str, str], dict[str, list[float]]] = {
        (i.meta[AB_KEY]["a"], i.meta[AB_KEY]["b"]): {} for i in items.values()}
    for v in (v for v in votes if v.item_id in items):
        item = items[v.item_id]
        pair = (item.meta[AB_KEY]["a"], item.meta[AB_KEY]["b"])
        tally = counts.setdefault(pair, {}).setdefault(v.item_id, [0.0, 0.0])
        if v.choice in ("a", "b"):
            winner = item.source_a if v.choice == "a" else item.source_b
            tally[0 if winner == pair[0] else 1] += 1.0
        else:  # tie, both_bad: neither response is preferred
            tally[0] += 0.5
            tally[1] += 0.5
    texts = {}
    for item_id, item in items.items():
        by_source = {item.source_a: item.response_a, item.source_b: item.response_b}
        a, b = item.meta[AB_KEY]["a"], item.meta[AB_KEY]["b"]
        texts[item_id] = tuple("" if by_source.get(p) == EMPTY else by_source.get(p, "") for p in (a, b))
    return counts, texts


def human_win_rates(run: str | Path, n_boot: int = 1000, seed: int = 0,
                    db: str | None = None) -> list[dict]:
    """Win rate of a over b per A/B comparison, from the items' active votes.

    One entry per (a, b) with votes: {"a", "b", "judge": "human", "decoding": "sampled",
    "win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "n", "style_controlled"}, n = items
    with at least one vote, wins/ties/losses counted over items by majority (module docstring),
    style_controlled: eval.style_control.style_controlled's dict. [] when the run has no collect
    store, no A/B items or no votes.
    """
    if not has_store(run, db):
        return []
    store = store_for(run, db)
    try:
        counts, texts = _vote_counts(store, locate(run)[1])
    finally:
        store.close()
    out = []
    for (a, b), per_item in counts.items():
        if not per_item:
            continue
        for_a, for_b = zip(*per_item.values())  # (N,), (N,)
        texts_a, texts_b = zip(*(texts[i] for i in per_item))
        style = style_controlled_win_rate(list(texts_a), list(texts_b), outcomes(for_a, for_b),
                                          n_boot=n_boot, seed=seed)
        out.append({"a": a, "b": b, "judge": "human", "decoding": "sampled",
                    **win_rate_with_ci(for_a, for_b, n_boot=n_boot, seed=seed), "style_controlled": style})
    return out
