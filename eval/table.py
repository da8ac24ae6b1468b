"""The text table `rlhf eval` prints and the eval card quotes: per policy and decoding the gold,
RM, EOS, length, KL and perplexity columns; the win rates, raw and style-controlled, with their
intervals and the judge's style coefficients; the facts each policy fixed and broke; in a later
round, the comparison with the round before (eval/rounds.py); the red-team audit's rates with
their intervals and the differences from SFT (eval/redteam.py)."""
from __future__ import annotations

import numpy as np

from eval import redteam
from eval.style_control import FEATURES


def _fmt(x, spec: str) -> str:
    """x in the spec's format; a missing value as "n/a" right-aligned in the spec's width."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return format("n/a", ">" + spec.split(".")[0].lstrip("+- "))
    return format(x, spec)


def format_table(metrics: dict) -> str:
    head = (f"{'policy':7s} {'decoding':8s} {'gold':>6s} {'fact':>6s} {'RM':>7s} {'EOS':>5s} {'len':>6s} "
            f"{'KL/sft':>7s} {'ppl val':>8s} {'harmful':>8s} {'(T>0)':>6s}")
    rows = [head]
    for name, p in metrics["policies"].items():
        for d in ("greedy", "sampled"):
            if d not in p:
                continue
            r = p[d]
            rows.append(f"{name:7s} {d:8s} {_fmt(r.get('gold_overall'), '6.3f')} {_fmt(r.get('fact_accuracy'), '6.3f')} "
                        f"{_fmt(r.get('rm_score'), '7.3f')} {_fmt(r['eos_rate'], '5.2f')} {_fmt(r['mean_length'], '6.1f')} "
                        f"{_fmt(p.get('kl_to_sft'), '7.2f')} {_fmt(p.get('ppl_sft_val'), '8.3f')} "
                        f"{_fmt(p.get('harmful_rate'), '8.3f')} {_fmt(p.get('harmful_rate_sampled'), '6.3f')}")
    rows += (_win_rate_rows(metrics["win_rates"]) + _fact_rows(metrics) + _refusal_rows(metrics)
             + _round_rows(metrics.get("rounds")))
    reason = (metrics.get("judges") or {}).get("no_gold_because")
    if reason:
        rows.append(f"gold, fact and harmful columns n/a: {reason}")
    return "\n".join(rows + redteam.table_lines(metrics))


def _interval(r: dict) -> str:
    """"0.710 [0.630, 0.785]" of a dict with win_rate, ci_low and ci_high; n/a where it has none."""
    if not r or r.get("win_rate") is None or np.isnan(r["win_rate"]):
        return format("n/a", ">21s")
    return f"{r['win_rate']:.3f} [{_fmt(r.get('ci_low'), '5.3f')}, {_fmt(r.get('ci_high'), '5.3f')}]"


def _win_rate_rows(win_rates: list[dict]) -> list[str]:
    """The win-rate table: raw and style-controlled rates with their intervals, and the judge's
    style coefficients (log-odds per unit difference; n/a: the answers never differ in it)."""
    if not win_rates:
        return []
    rows = [f"{'win rate (ties count half)':34s} {'raw [95% CI]':>21s} {'style-controlled':>21s} "
            + " ".join(f"{f:>10s}" for f in FEATURES) + f" {'n':>4s}"]
    for w in win_rates:
        style = w.get("style_controlled") or {}
        coef = style.get("coefficients") or {}
        rows.append(f"{w['a'] + ' vs ' + w['b'] + ' (' + w['judge'] + ', ' + w['decoding'] + ')':34s} "
                    f"{_interval(w)} {_interval(style):>21s} "
                    + " ".join(_fmt(coef.get(f), "+10.2f") for f in FEATURES) + f" {w['n']!s:>4s}")
    return rows


def _fact_rows(metrics: dict) -> list[str]:
    """Per policy and decoding, the held-out prompts whose fact it fixed or broke against SFT, and its
    gold outcome where both got the fact right or both wrong (eval.gold.fact_changes)."""
    rows = []
    for r in (metrics.get("gold") or {}).get("decomposition") or []:
        f = r.get("facts")
        if f:
            rows.append(f"facts {r['policy']} vs {r['baseline']} ({r['decoding']}): fixed {f['fixed']}, broken "
                        f"{f['broken']}; same fact on {f['same']}: won {f['same_won']}, tied {f['same_tied']}, "
                        f"lost {f['same_lost']}")
    return rows


def _refusal_rows(metrics: dict) -> list[str]:
    """Refusals of the held-out prompts, per policy minus SFT's (paired, eval.stage._refusals_vs_sft):
    a policy that learned to refuse plain questions shows here, not only in its lower win rate."""
    r = metrics.get("heldout_refusals") or {}
    return [f"held-out refusals ({r['judge']}) {d['policy']} - sft ({d['decoding']}): {d['rate_a']:.3f} - "
            f"{d['rate_b']:.3f} = {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] over {d['n']} "
            "prompts" for d in r.get("vs_sft") or []]


def _round_rows(rounds: dict | None) -> list[str]:
    """A later round against the one before (eval/rounds.py): each algorithm's win rates over its
    previous-round self, and the two reward models' accuracy on this round's new pairs."""
    if not rounds or not rounds.get("win_rates"):
        return []
    k, j = rounds["round"], rounds["previous"]
    rows = [f"{f'round {k} vs round {j}':34s} {'raw [95% CI]':>21s} {'style-controlled':>21s}"]
    for w in rounds["win_rates"]:
        rows.append(f"{w['policy'] + ' (' + w['judge'] + ', ' + w['decoding'] + ')':34s} {_interval(w)} "
                    f"{_interval(w.get('style_controlled') or {}):>21s}")
    held = (rounds.get("reward_on_new_items") or {}).get("heldout") or {}

    def acc(a: dict | None) -> str:
        a = a or {}
        gold = f", vs gold {a['accuracy_gold']:.3f}" if a.get("accuracy_gold") is not None else ""
        return f"{_fmt(a.get('accuracy'), '.3f')}{gold}"

    if held:
        rows.append(f"reward models on round {k}'s {held['after'].get('n', 0)} held-out new pairs: round {j}'s "
                    f"{acc(held.get('before'))}; round {k}'s {acc(held.get('after'))}")
    return rows
