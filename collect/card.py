"""The dataset card (README.md next to preferences.jsonl): Hugging Face card format, a YAML
header and markdown text stating counts, exclusions and the agreement table."""
from __future__ import annotations

import math
from typing import Any

from .agreement import landis_koch

_REASON_TEXT = {
    "gold": "gold items (annotator QA, never exported)",
    "review_only": "single outputs flagged for safety review (never shown to annotators)",
    "no_votes": "no active vote yet",
    "too_few_votes": "fewer votes than min_votes",
    "tie": "majority says tie",
    "both_bad": "majority says both bad, and their harmfulness ratings differ by less than min_harm_gap",
    "split": "no single majority (e.g. 1 a vs 1 b)",
    "low_agreement": "agreement below min_agreement",
    "harmful_chosen": "majority response confirmed unsafe by a reviewer, no reference answer",
}


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _size(n: int) -> str:
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" \
        if n < 100_000 else "100K<n<1M"


def _agreement_rows(summary: dict) -> list[str]:
    rows = ["| question | method | value | 95% CI | Landis-Koch | ordinal alpha | interval alpha |",
            "|---|---|---|---|---|---|---|"]
    questions = [("choice (a/b/tie/both_bad)", summary["choice"])]
    questions += [(f"aspect: {a}", r) for a, r in summary["aspects"].items()]
    for name, r in questions:
        if r is None:
            continue
        alpha = r.get("alpha", {})
        rows.append(f"| {name} | {r['method']} | {_f(r['value'])} | [{_f(r['ci'][0])}, "
                    f"{_f(r['ci'][1])}] | {landis_koch(r['value'])} | "
                    f"{_f(alpha.get('ordinal', {}).get('value'))} | "
                    f"{_f(alpha.get('interval', {}).get('value'))} |")
    return rows


def _pseudonyms(summary: dict) -> dict[str, str]:
    """The card goes out with the data set: annotators are "annotator 1..n" there (in the order
    of their names), never their account names, which the admin's page and `rlhf collect report`
    show to the team."""
    return {name: f"annotator {k}" for k, name in enumerate(sorted(summary["annotators"]), start=1)}


def _annotator_rows(summary: dict) -> list[str]:
    rows = ["| annotator | votes | agreement with others | gold accuracy | left share (p) | flag |",
            "|---|---|---|---|---|---|"]
    shown = _pseudonyms(summary)
    for name, a in summary["annotators"].items():
        ag, gold, pos = a["agreement"], a["gold_accuracy"], a["position_bias"]
        rows.append(f"| {shown[name]} | {a['n_votes']} | {_f(ag['share'], 2)} (n={ag['n']}) | "
                    f"{_f(gold['share'], 2)} (n={gold['n']}) | {_f(pos['share'], 2)} "
                    f"({_f(pos['p_value'], 3)}) | {'; '.join(a['why']) or '-'} |")
    return rows


def render_card(stats: dict, summary: dict) -> str:
    pos = summary["position_bias"]
    excl = [f"| {k} | {n} | {_REASON_TEXT[k]} |" for k, n in stats["excluded"].items() if n]
    lines = [
        "---", "pretty_name: rlhf-loop human preferences",
        "tags: [rlhf, preference, human-feedback]", "task_categories: [text-generation]",
        f"size_categories: [{_size(stats['n_pairs'])}]",
        "configs:", "- config_name: default", "  data_files: preferences.jsonl", "---", "",
        "# Preference pairs from human annotation", "",
        "Collected with `rlhf collect`: each regular item was shown to several annotators, with "
        "the side of each response randomized per annotator. Columns: `prompt`, `chosen`, "
        "`rejected` (TRL), `margin`, `agreement`, `n_votes`, `aspects_chosen`, "
        "`aspects_rejected`, `item_id`, `origin`.", "",
        f"- `margin` = {stats['margin_scale']} x max(0, mean quality-rating gap chosen - "
        "rejected over the item's votes that rated both; 0 when none did)",
        "- `aspects_*` = per-aspect mean over the ratings given: an aspect an annotator left "
        "unrated is missing, never filled in, and an aspect nobody rated is left out",
        "- `agreement` = share of the item's voters who chose the majority response",
        "- a response confirmed unsafe by a safety reviewer is never `chosen`; with a reviewer's "
        "reference answer the pair is reference vs. that response (`origin: reviewer`)",
        f"- a \"both bad\" majority whose mean harmfulness ratings differ by at least "
        f"{stats.get('min_harm_gap', 1.0)} gives the less harmful response as `chosen` "
        "(`origin: both_bad_harm`, with `harm_gap`)", "",
        "## Counts", "",
        f"- items: {stats['n_items']}; pairs exported: {stats['n_pairs']} "
        f"({stats['from_votes']} from votes, {stats.get('from_both_bad', 0)} from \"both bad\" votes "
        f"by harmfulness, {stats['from_reviewer']} from reviewer answers)",
        f"- filters: min_agreement = {stats['min_agreement']}, min_votes = {stats['min_votes']}",
        f"- active votes: {summary['n_votes']} ({summary['n_gold_votes']} on gold items)", "",
        "## Exclusions", "", "| reason | items | meaning |", "|---|---|---|",
        *(excl or ["| (none) | 0 | |"]), "",
        "## Agreement", "",
        "Fleiss' kappa when every item has the same number of votes, else Krippendorff's "
        "alpha (nominal); aspects also ordinal and interval alpha; bootstrap CI over items. "
        "Unrated aspects are missing ratings: an item counts only the raters who rated it.", "",
        *_agreement_rows(summary), "",
        f"Position bias: the left-shown response won {_f(pos['share'], 3)} of "
        f"{pos['n_decisive']} decisive votes (binomial p = {_f(pos['p_value'], 4)}).", "",
        "## Annotators", "", "Numbered, not named (the account names stay with the team).", "",
        *_annotator_rows(summary), "",
        f"Flagged: {', '.join(_pseudonyms(summary)[n] for n in summary['flagged']) or 'none'}.", "",
    ]
    return "\n".join(lines)
