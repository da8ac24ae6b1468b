"""Mismatched negatives: extra training pairs in which a prompt's chosen answer beats the chosen
answer to another prompt.

Every collected pair holds two answers to the same prompt, so nothing in a few hundred of them
tells a reward model that an answer must be about what was asked: two samples of one policy are
both on the question, or both off it. The model then scores an answer by its form (a confident
price, a polite close), and RL and best-of-n pick fluent answers about another product, or a
benign shop answer to a harmful request instead of a refusal. Pairing each chosen answer with the
chosen answer of another prompt, the negatives dense retrieval trains on (Karpukhin et al., 2020,
"Dense Passage Retrieval", sec. 3.2), teaches exactly that: a good answer to another question is
a bad answer to this one. On a harmful prompt whose chosen answer is a refusal, the negative is
an ordinary shop answer, the off-topic reply an aligned policy drifts to; on a benign prompt it
is often another prompt's refusal.

A refusal (found by the pattern `refusals`, by default the stock phrases of refusals and apologies
that jailbreak studies count refusals by, e.g. Zou et al., 2023, "Universal and Transferable
Adversarial Attacks", sec. 3) is never the negative of a prompt whose own chosen answer is a
refusal: it is right for every harmful request, so there it would be a false negative. For a prompt
answered helpfully it stays a negative: refusing a benign question is worse than answering it. On
the demo (seed 0, three RL seeds) refusals among every prompt's negatives cost PPO red-team
refusals; kept out of every prompt's negatives, the reward model scored refusals of benign
questions above right answers (1.38 against 1.28) and PPO refused benign questions. With this rule
they stay below (0.39 against 1.60), and red-team answers are ranked right in 0.905 of decisive
pairs (0.884 without negatives).

Only training pairs are drawn from, never held-out ones, so held-out accuracy stays honest. A new
pair keeps its row's prompt, chosen answer and round; its target is a sure preference (agreement
1, margin 0) and it has no aspect ratings (the aspect loss skips it).
"""
from __future__ import annotations

import random
import re

from core.config import REFUSAL_LIKE
from core.prompts import prompt_key

MAX_DRAWS = 50  # draws for one negative before giving up (a training set of nearly one prompt)


def mismatched_pairs(rows: list[dict], ratio: float, seed: int = 0, refusals: str = REFUSAL_LIKE) -> list[dict]:
    """`ratio` new pairs per row (validated preference rows; a fractional part adds one more with
    that probability): the row's prompt and chosen answer, and as the rejected answer the chosen
    answer of a uniformly drawn row with another prompt and another chosen text; when the regular
    expression `refusals` (case-insensitive; '' finds none) finds both chosen answers, two refusals,
    another is drawn. Deterministic for a seed; [] for ratio 0 or when no row has another prompt."""
    if ratio <= 0 or not rows:
        return []
    rng = random.Random(f"mismatched-negatives-{seed}")
    keys = [prompt_key(r["prompt"]) for r in rows]
    if len(set(keys)) < 2:
        return []
    found = re.compile(refusals, re.IGNORECASE) if refusals else None
    refusal = [bool(found and found.search(r["chosen"])) for r in rows]
    whole, part = int(ratio), ratio - int(ratio)
    out = []
    for i, (row, key) in enumerate(zip(rows, keys)):
        for _ in range(whole + (rng.random() < part)):
            for _ in range(MAX_DRAWS):
                j = rng.randrange(len(rows))
                other = rows[j]["chosen"]
                if keys[j] != key and other.strip() != row["chosen"].strip() and not (refusal[i] and refusal[j]):
                    out.append({**row, "rejected": other, "margin": 0.0, "agreement": 1.0, "n_votes": None,
                                "aspects_chosen": None, "aspects_rejected": None, "item_id": None})
                    break
    return out
