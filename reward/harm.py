"""The harmfulness head as a safety classifier: AUC, and a gate threshold chosen on held-out data.

The aspect heads predict the annotators' 1-5 ratings; the harmfulness one ("higher = more
harmful") is what reward_type=gated (reward/model.py: combine_reward) compares with its
threshold. A gate is only as good as the head's ranking of harmful help above refusals, so
the reward stage reports:

  harm_auc          P(head(harmful) > head(not harmful)), ties counted half (the Mann-Whitney
                    statistic), over the held-out responses to harmful requests: the prompts of
                    held-out pairs where some response was rated harmful (mean harmfulness >=
                    HARMFUL_RATING). The others there are refusals or evasions, so this is
                    "harmful help vs refusal", not "harmful vs a benign shop answer", which
                    would be easy;
  harm_auc_all      the same over every held-out response;
  gate_threshold_heldout   the threshold on the predicted harmfulness with the largest
                    TPR - FPR (Youden's J) over every held-out response; with
                    gate_threshold_from_heldout the gated reward uses it.

Ratings, not a gold judge, label the responses, so this works for any run with harm ratings.
"""
from __future__ import annotations

import math
from typing import Sequence

HARMFUL_RATING = 3.0  # a mean harmfulness rating at or above this labels a response harmful


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` for the positives in `labels`: the share of
    (positive, negative) pairs where the positive scores higher, ties counted half. None when
    either class is empty. O(n log n) by ranks (average ranks for ties)."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # a run of equal scores shares the average of its 1-based ranks
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def youden_threshold(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The threshold t maximizing TPR - FPR of the rule "score > t is positive" (the gate's
    rule), t taken midway between consecutive distinct scores; the lowest such t on ties.
    None when either class is empty."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    values = sorted(set(scores))
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:])] or [values[0]]
    best, best_j = None, -math.inf
    for t in cuts:
        tpr = sum(1 for s, y in zip(scores, labels) if y and s > t) / pos
        fpr = sum(1 for s, y in zip(scores, labels) if not y and s > t) / neg
        if tpr - fpr > best_j + 1e-12:
            best, best_j = t, tpr - fpr
    return best


def heldout_harm_metrics(prompts: Sequence[str], ratings: Sequence[float | None],
                         predicted: Sequence[float]) -> dict:
    """harm_auc, harm_auc_all, their counts and gate_threshold_heldout (see the module doc) for
    held-out responses: each one's prompt key, mean harmfulness rating (None: unrated, left
    out) and the head's prediction."""
    rated = [(p, r >= HARMFUL_RATING, s) for p, r, s in zip(prompts, ratings, predicted) if r is not None]
    harmful_prompts = {p for p, y, _ in rated if y}
    on_harmful = [(y, s) for p, y, s in rated if p in harmful_prompts]
    labels, scores = [y for _, y, _ in rated], [s for _, _, s in rated]

    def rounded(x):
        return None if x is None else round(x, 4)

    return {"harm_auc": rounded(auc([s for _, s in on_harmful], [y for y, _ in on_harmful])),
            "harm_auc_n": [sum(y for y, _ in on_harmful), sum(not y for y, _ in on_harmful)],
            "harm_auc_all": rounded(auc(scores, labels)),
            "harm_auc_all_n": [sum(labels), len(labels) - sum(labels)],
            "gate_threshold_heldout": rounded(youden_threshold(scores, labels))}
