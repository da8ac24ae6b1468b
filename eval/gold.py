"""Measurements against a gold judge (core.judge.Judge): the eval's gold columns and the reward
model's agreement with gold. Measurement only, never a training reward.

A judge knows one domain's facts; on other data it cannot judge, so each use first checks that
it recognises the prompts. The caller passes the judge in (the demo passes its oracle); without
one these measurements are simply not made. Prompts may be strings or message lists; the judge
sees their text (core.prompts.prompt_text).
"""
from __future__ import annotations

import numpy as np

from core.judge import Judge
from core.prompts import Messages, prompt_text
from core.records import ASPECTS
from eval.metrics import outcomes


def applies(judge: Judge, prompts: list[str | Messages], min_share: float = 0.5) -> bool:
    """True when the judge recognises at least `min_share` of the prompts."""
    if not prompts:
        return False
    return sum(judge.recognises(prompt_text(p)) for p in prompts) / len(prompts) >= min_share


def verdicts(judge: Judge, prompts: list[str | Messages], responses: list[str]) -> dict[str, list]:
    """Per-row verdicts: overall score (1-5), aspects, fact_correct (None: no fact to check),
    harmful and refusal flags; "terms" too when the judge has the optional `terms` method."""
    prompts = [prompt_text(p) for p in prompts]
    scores = [judge.score(p, r) for p, r in zip(prompts, responses)]
    out = {
        "overall": [s["overall"] for s in scores],
        "aspects": [{a: s[a] for a in ASPECTS} for s in scores],
        "fact_correct": [judge.fact_correct(p, r) for p, r in zip(prompts, responses)],
        "harmful": [judge.is_harmful(p, r) for p, r in zip(prompts, responses)],
        "refusal": [judge.is_refusal(p, r) for p, r in zip(prompts, responses)],
    }
    if callable(getattr(judge, "terms", None)):  # optional: overall split into additive parts
        out["terms"] = [judge.terms(p, r) for p, r in zip(prompts, responses)]
    return out


def summarize(rows: dict[str, list]) -> dict[str, float | dict]:
    """Means of `verdicts`' per-row values: gold_overall, fact_accuracy (over checkable rows),
    aspects."""
    checked = [f for f in rows["fact_correct"] if f is not None]
    aspects = rows["aspects"]
    return {
        "gold_overall": float(np.mean(rows["overall"])) if rows["overall"] else float("nan"),
        "fact_accuracy": float(np.mean(checked)) if checked else float("nan"),
        "aspects": {a: float(np.mean([row[a] for row in aspects])) for a in (aspects[0] if aspects else {})},
    }


def rm_by_outcome(rows: dict[str, list]) -> dict[str, dict]:
    """The reward model's and gold's mean score of a policy's answers by what they are: a refusal,
    a correct answer, a wrong one (a fact to check and got wrong), or neither (no fact to check).
    Shows a reward model that ranks refusing a plain question near answering it right, which RL
    then exploits (the loop's later rounds: docs/demo-results.md, "Two rounds")."""
    groups: dict[str, list[int]] = {}
    for i, (refusal, fact) in enumerate(zip(rows["refusal"], rows["fact_correct"])):
        kind = "refusal" if refusal else "no_fact" if fact is None else "correct" if fact else "wrong"
        groups.setdefault(kind, []).append(i)
    return {kind: {"n": len(ix), "rm": round(float(np.mean([rows["rm_score"][i] for i in ix])), 4),
                   "gold": round(float(np.mean([rows["overall"][i] for i in ix])), 4)}
            for kind, ix in sorted(groups.items())}


def gain_decomposition(results: dict[str, dict[str, dict]], baseline: str = "sft") -> list[dict]:
    """Where each policy's gold gain over `baseline` comes from. results: policy -> decoding ->
    `verdicts` rows on the same prompts in the same order. Per policy and decoding: n, gain (the
    mean of overall(policy) - overall(baseline) over prompts) and terms (the same mean for each of
    the judge's terms; they sum to gain when the judge's terms sum to its overall). [] when the
    judge has no terms or there is no baseline."""
    base = results.get(baseline) or {}
    out = []
    for name, res in results.items():
        for decoding in ("greedy", "sampled"):
            a, b = res.get(decoding) or {}, base.get(decoding) or {}
            ta, tb = a.get("terms"), b.get("terms")
            if name == baseline or not ta or not tb or len(ta) != len(tb):
                continue
            keys = list(dict.fromkeys(k for row in ta + tb for k in row))
            diff = {k: round(float(np.mean([x.get(k, 0.0) - y.get(k, 0.0) for x, y in zip(ta, tb)])), 6)
                    for k in keys}
            gain = round(float(np.mean(np.subtract(a["overall"], b["overall"]))), 6)
            out.append({"policy": name, "baseline": baseline, "decoding": decoding, "n": len(ta),
                        "gain": gain, "terms": diff, "facts": fact_changes(a, b)})
    return out


def fact_changes(a: dict, b: dict) -> dict:
    """Policy A's answers against baseline B's on the same prompts, by whether the fact is right
    (`verdicts` rows, `fact_correct` None where there is no fact to check). fixed: B wrong, A right;
    broken: B right, A wrong; same: both right or both wrong, with A's gold outcome on those
    prompts (won / tied / lost, exact ties). A win on a `same` prompt comes from the judge's
    smaller terms (an extra detail, style, length), not from the fact, so a policy that beats its
    baseline mostly there has learned form rather than content."""
    checked = [(fa, fb, float(o)) for fa, fb, o in zip(a["fact_correct"], b["fact_correct"],
                                                        outcomes(a["overall"], b["overall"]))
               if fa is not None and fb is not None]
    same = [o for fa, fb, o in checked if fa == fb]
    return {"fixed": sum(fa and not fb for fa, fb, _ in checked),
            "broken": sum(fb and not fa for fa, fb, _ in checked), "same": len(same),
            "same_won": same.count(1.0), "same_tied": same.count(0.5), "same_lost": same.count(0.0)}


def decomposition_metrics(results: dict[str, dict[str, dict]]) -> dict:
    """{"gold": {"decomposition": gain_decomposition(results)}} for eval/metrics.json, {} when empty."""
    rows = gain_decomposition(results)
    return {"gold": {"decomposition": rows}} if rows else {}


# ----------------------------------------------------------------------------- reward model vs gold

# Gold differences below this are near-ties: the demo oracle gives manners (an opener, a polite
# close) at most 0.1 and breaks ties by length (at most 0.06), so two answers that differ only in
# their opener differ by ~0.07-0.1. Neither people nor simulated annotators (which call differences
# under 0.15 a tie before their noise) can see them, so a reward model's order on them is a coin flip.
# heldout_accuracy_gold counts the pairs gold decides by at least this much;
# heldout_accuracy_gold_all every pair that is not an exact tie.
GOLD_TIE = 0.15


def gold_agreement(delta, gold_diff: list[float | None]) -> dict:
    """The reward model's order (delta = r_chosen - r_rejected per pair, a tensor) against gold's
    (gold_diff = gold_chosen - gold_rejected; None where gold has no score). Pairs gold decides
    by at least GOLD_TIE: accuracy, ECE of sigmoid(delta), and how often the label agrees with
    gold; accuracy over every pair that is not an exact tie as well."""
    import torch

    from reward.loss import expected_calibration_error

    every = [(i, d) for i, d in enumerate(gold_diff) if d is not None and abs(d) > 1e-9]
    decisive = [(i, d) for i, d in every if abs(d) >= GOLD_TIE]
    out: dict = {"gold_pairs": len(decisive), "gold_near_ties": len(every) - len(decisive)}
    for key, pairs in (("heldout_accuracy_gold_all", every), ("heldout_accuracy_gold", decisive)):
        if pairs:
            idx, pref = torch.tensor([i for i, _ in pairs]), torch.tensor([d > 0 for _, d in pairs])
            out[key] = round(((delta[idx] > 0) == pref).float().mean().item(), 4)
    if decisive:
        idx, pref = torch.tensor([i for i, _ in decisive]), torch.tensor([d > 0 for _, d in decisive])
        out["ece_gold"] = round(expected_calibration_error(torch.sigmoid(delta[idx]), pref)[0], 4)
        out["labels_agree_with_gold"] = round(pref.float().mean().item(), 4)
    return out


def _pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return round(float(np.corrcoef(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))[0, 1]), 4)


def reward_gold_metrics(judge: Judge, rows: list[dict], delta, lengths: dict[tuple[str, str], int],
                        min_share: float = 0.9) -> dict:
    """Gold metrics of a reward model's held-out pairs: gold_agreement's, and gold_length_corr
    (gold score against response length in tokens). rows: the pairs (prompt, chosen, rejected);
    delta: the model's r_chosen - r_rejected per row; lengths: tokens per (prompt, response).
    Prompts are keyed by their text (core.prompts.prompt_text). Empty unless the judge recognises
    at least `min_share` of the responses' prompts."""
    keys = list(lengths)
    known = {p: judge.recognises(p) for p in {p for p, _ in keys}}
    if not keys or sum(known[p] for p, _ in keys) < min_share * len(keys):
        return {}
    gold = {(p, r): judge.score(p, r)["overall"] if known[p] else None for p, r in keys}
    texts = [prompt_text(r["prompt"]) for r in rows]
    out = gold_agreement(delta, [gold[(p, r["chosen"])] - gold[(p, r["rejected"])] if known[p] else None
                                 for p, r in zip(texts, rows)])
    scored = [k for k in keys if gold[k] is not None]
    out["gold_length_corr"] = _pearson([gold[k] for k in scored], [lengths[k] for k in scored])
    return out
