"""<run>/eval/report.html: one self-contained page per run (plots are inline PNG data URIs; no
script, stylesheet, font or network request), to read instead of the logs.

Only eval/metrics.json is required; every other section is built from what the run has
(samples, training logs, the annotation store) and says "not run" when its inputs are missing.
Prompts, responses, annotator names and every other string are untrusted: they reach the page
only through `_e` (html.escape), and the Content-Security-Policy forbids scripts besides.
"""
from __future__ import annotations

import html
import json
import math
import traceback
from datetime import datetime, timezone
from pathlib import Path

from core import registry
from core.io import atomic_write_text

from . import plots
from .style_control import FEATURES

POLICY_KEYS = {"gold_overall": "gold overall", "fact_accuracy": "fact accuracy", "eos_rate": "EOS rate",
               "mean_length": "mean length", "rm_score": "RM score", "heldout_refusal_rate": "refusals"}
FACT = {True: "right", False: "wrong"}
N_SAMPLES = 4  # held-out prompts shown side by side
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}
.card b{font-size:1.6em;display:block}.muted{color:#777}img{max-width:100%}
.side th{text-align:left}
.side td{vertical-align:top;text-align:left;white-space:pre-wrap;font:12px/1.35 monospace;max-width:380px}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x, digits: int = 3) -> str:
    """Numbers for the page; None, NaN, inf and non-numbers are "n/a"."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:.{digits}f}"
    return "n/a"


def _pct(x) -> str:
    return f"{x:.0%}" if isinstance(x, float) and math.isfinite(x) else "n/a"


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    """Every cell escaped; floats formatted with _fmt."""
    def cell(v):
        return _e(_fmt(v) if v is None or isinstance(v, (int, float)) else v)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">' if uri else ""


def _ties_clause(w: dict) -> str:
    """The outcome counts when ties make up the rate (a tie counts half): "50%" of all ties is
    not "wins half the time"."""
    ties = w.get("ties")
    if not ties:
        return ""
    return f" ({_e(_fmt(w.get('wins')))} won, {_e(_fmt(ties))} tied, {_e(_fmt(w.get('losses')))} lost)"


def _not_run(what: str) -> str:
    return f'<p class="muted">{_e(what)}: not run.</p>'


def _decodings(p: dict) -> dict[str, dict]:
    """{"greedy": {...}, "sampled": {...}} of one policy's entry, whichever are present."""
    return {d: p[d] for d in ("greedy", "sampled") if isinstance(p.get(d), dict)}


def _rows(path: Path) -> list[dict]:
    """JSON lines, [] without the file; a line that does not parse (the half-written last line
    of a killed run) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json(path: Path) -> dict:
    """A JSON object, {} without the file."""
    if not path.exists():
        return {}
    obj = json.loads(path.read_text(encoding="utf-8"))
    return obj if isinstance(obj, dict) else {}


def _win_rows(m: dict) -> list[dict]:
    return [w for w in m.get("win_rates") or [] if isinstance(w, dict)]


def _style(w: dict) -> dict:
    """A win-rate entry's style-controlled fit (eval/style_control.py); {} where it has none."""
    s = w.get("style_controlled")
    return s if isinstance(s, dict) else {}


def _style_clause(w: dict) -> str:
    """"; style-controlled 52% [45%, 60%]" for a headline line; "" for an entry without it."""
    s = _style(w)
    if not s:
        return ""
    return (f"; style-controlled {_e(_pct(s.get('win_rate')))} [{_e(_pct(s.get('ci_low')))}, "
            f"{_e(_pct(s.get('ci_high')))}]")


# ----------------------------------------------------------------------------- sections

def headline(m: dict) -> str:
    """Per-policy cards and the win rates. With a gold judge the cards lead with its score; without
    one they lead with the reward model's, the lines with the reward model's and people's win
    rates, and a note says why gold is absent."""
    judges = m.get("judges") or {}
    has_gold = judges.get("gold", True)
    cards = []
    for name, p in (m.get("policies") or {}).items():
        g = _decodings(p).get("greedy", {})
        if has_gold:
            cards.append(f'<div class="card">{_e(name)}<b>{_e(_fmt(g.get("gold_overall"), 2))}</b>'
                         f'gold overall · facts {_e(_fmt(g.get("fact_accuracy"), 2))} · '
                         f'harmful {_e(_fmt(p.get("harmful_rate"), 2))}</div>')
        else:
            cards.append(f'<div class="card">{_e(name)}<b>{_e(_fmt(g.get("rm_score"), 2))}</b>'
                         f'reward-model score · EOS {_e(_pct(g.get("eos_rate")))} · '
                         f'length {_e(_fmt(g.get("mean_length"), 1))}</div>')
    shown = [w for w in _win_rows(m) if w.get("decoding") == "greedy" or w.get("judge") == "human"]
    if not has_gold:  # people's votes first, then the reward model's
        shown = sorted(shown, key=lambda w: w.get("judge") != "human")
    lines = [f"<li><b>{_e(w.get('a'))}</b> beats <b>{_e(w.get('b'))}</b> on "
             f"{_e(_pct(w.get('win_rate')))} [{_e(_pct(w.get('ci_low')))}, "
             f"{_e(_pct(w.get('ci_high')))}] of {_e(_fmt(w.get('n')))} prompts{_ties_clause(w)} "
             f"({_e(w.get('judge'))} judge, {_e(w.get('decoding'))}){_style_clause(w)}</li>" for w in shown]
    meta = (f"{_e(_fmt(m.get('n_prompts')))} held-out prompts, {_e(_fmt(m.get('n_redteam')))} red-team "
            f"prompts, serving temperature {_e(_fmt(m.get('serving_temperature'), 2))}")
    note = "" if has_gold else f'<p class="note">{_e(judges.get("no_gold_because") or "no gold judge")}.</p>'
    return (f'<h2>Headline</h2><p class="muted">{meta}</p>{note}<div class="cards">{"".join(cards)}</div>'
            f'<ul>{"".join(lines)}</ul>')


STYLE_NOTE = ("Style-controlled: the judge's outcomes fitted with a logistic (Bradley-Terry) model on the "
              "differences in log length, friendly opener, closing pleasantry and list markup, read at equal "
              "style (the rate if both answers had the same style). Style coefficients: the judge's log-odds "
              "per unit of difference (positive: the judge rewards it; n/a: the answers never differ in it).")


def win_rates(m: dict) -> str:
    rows = _win_rows(m)
    if not rows:
        return "<h2>Win rates</h2>" + _not_run("Pairwise comparison")
    table = _table(["a", "b", "judge", "decoding", "win rate", "95% CI", "style-controlled", "95% CI",
                    *(f"style coef. {f.replace('_', ' ')}" for f in FEATURES), "wins", "ties", "losses", "n"],
                   [[w.get("a"), w.get("b"), w.get("judge"), w.get("decoding"), w.get("win_rate"),
                     f"[{_fmt(w.get('ci_low'))}, {_fmt(w.get('ci_high'))}]", _style(w).get("win_rate"),
                     f"[{_fmt(_style(w).get('ci_low'))}, {_fmt(_style(w).get('ci_high'))}]",
                     *((_style(w).get("coefficients") or {}).get(f) for f in FEATURES),
                     w.get("wins"), w.get("ties"), w.get("losses"), w.get("n")] for w in rows])
    return (f"<h2>Win rates</h2>{table}<p class=\"muted\">{_e(STYLE_NOTE)}</p>"
            + _img(plots.win_rate_plot(rows), "win rates with 95% intervals"))


def policy_metrics(m: dict) -> str:
    rows, aspect_rows, aspects = [], [], []
    for name, p in (m.get("policies") or {}).items():
        for dec, d in _decodings(p).items():
            rows.append([name, dec, *(d.get(k) for k in POLICY_KEYS),
                         *(p.get(k) for k in ("kl_to_sft", "ppl_sft_val", "ppl_corpus"))])
            a = d.get("aspects") or {}
            aspects += [k for k in a if k not in aspects]
            aspect_rows.append((name, dec, a))
    if not rows:
        return "<h2>Policies</h2>" + _not_run("Policy evaluation")
    out = "<h2>Policies</h2>" + _table(
        ["policy", "decoding", *POLICY_KEYS.values(), "KL to SFT", "ppl SFT val", "ppl corpus"], rows)
    judge = (m.get("heldout_refusals") or {}).get("judge")
    if judge:
        out += (f'<p class="muted">Refusals: the share of held-out answers that refuse (by the {_e(judge)}). '
                "On plain questions a refusal is a cost: a policy that learned to refuse them shows here.</p>")
    if aspects:
        out += "<h3>Gold aspects (1-5)</h3>" + _table(
            ["policy", "decoding", *aspects], [[n, d, *(a.get(k) for k in aspects)] for n, d, a in aspect_rows])
    return out


def gain_sources(m: dict) -> str:
    """Where each policy's mean gold gain over SFT comes from, term by term (the judge's additive
    parts of its score). No section without a gold judge that has terms."""
    rows = [r for r in (m.get("gold") or {}).get("decomposition") or [] if isinstance(r, dict)]
    if not rows:
        return ""
    names = list(dict.fromkeys(k for r in rows for k in r.get("terms") or {}))
    base = rows[0].get("baseline", "sft")
    table = _table(["policy", "decoding", "prompts", f"gain over {base}", *names],
                   [[r.get("policy"), r.get("decoding"), r.get("n"), r.get("gain"),
                     *((r.get("terms") or {}).get(k) for k in names)] for r in rows])
    facts = [(r, r["facts"]) for r in rows if isinstance(r.get("facts"), dict)]
    if facts:
        table += ("<h3>Facts fixed and broken</h3><p class=\"muted\">Prompts with a fact to check: where the "
                  f"policy got the fact right and {_e(base)} wrong (fixed), the reverse (broken), and the "
                  "prompts where both got it right or both wrong, with the policy's gold outcome there. Wins on "
                  "those come from the smaller terms above, not from the fact.</p>" + _table(
                      ["policy", "decoding", "fixed", "broken", "same fact", "won", "tied", "lost"],
                      [[r.get("policy"), r.get("decoding"), f.get("fixed"), f.get("broken"), f.get("same"),
                        f.get("same_won"), f.get("same_tied"), f.get("same_lost")] for r, f in facts]))
    return ("<h2>Where the gold gain comes from</h2><p class=\"muted\">Mean gold score minus the SFT "
            "policy's on the same held-out prompts, split into the judge's terms (they add up to the gain). "
            "A gain from style or length rather than content is one people would not value.</p>" + table)


def rounds(m: dict) -> str:
    """A later round of the loop against the round before (eval/rounds.py); nothing for round 1."""
    r = m.get("rounds")
    if not isinstance(r, dict):
        return ""
    k, j = r.get("round"), r.get("previous")
    out = f"<h2>Round {_e(k)} against round {_e(j)}</h2>"
    rows = [w for w in r.get("win_rates") or [] if isinstance(w, dict)]
    if rows:
        out += ('<p class="muted">Each RL algorithm\'s round-' f"{_e(k)} policy against its round-{_e(j)} policy "
                f"on the held-out prompts; the reward-model judge is round {_e(k)}'s, re-scoring both rounds' "
                "answers.</p>" + _table(
                    ["policy", "judge", "decoding", "win rate", "95% CI", "style-controlled", "95% CI", "n"],
                    [[w.get("policy"), w.get("judge"), w.get("decoding"), w.get("win_rate"),
                      f"[{_fmt(w.get('ci_low'))}, {_fmt(w.get('ci_high'))}]", _style(w).get("win_rate"),
                      f"[{_fmt(_style(w).get('ci_low'))}, {_fmt(_style(w).get('ci_high'))}]", w.get("n")]
                     for w in rows]))
    elif r.get("missing"):
        out += _not_run(f"Round {j}'s eval samples ({r['missing']})")
    acc = r.get("reward_on_new_items") or {}
    table = [[f"round {j} (before retraining)", "held out", *_acc(acc.get("heldout", {}).get("before"))],
             [f"round {k} (after)", "held out", *_acc(acc.get("heldout", {}).get("after"))],
             [f"round {j} (before retraining)", f"every round-{k} pair", *_acc(acc.get("all", {}).get("before"))]]
    out += (f"<h3>Reward models on round {_e(k)}'s new pairs</h3>"
            + _table(["reward model", "pairs", "n", "accuracy (labels)", "accuracy vs gold", "gold-decided pairs"],
                     table))
    img = plots.proxy_vs_gold_plot(r.get("proxy_vs_gold") or [])
    if img:
        out += ("<h3>Proxy vs gold, round after round</h3><p class=\"muted\">Each policy's mean gain over "
                "SFT by its round's reward model (the proxy it trained on) against its gain by gold, on sampled "
                "answers. A line "
                "that runs right but not up is over-optimizing its reward model.</p>"
                + _img(img, "gain over SFT by the reward model and by gold, per round"))
    return out


def _acc(a) -> list:
    a = a if isinstance(a, dict) else {}
    return [a.get("n"), a.get("accuracy"), a.get("accuracy_gold"), a.get("gold_pairs")]


def reward_heldout(reward: dict) -> str:
    """The reward model's own held-out pairs (reward/metrics.json): accuracy against the labels and
    the gold judge, and its reward-length correlation beside gold's. A reward model that likes
    length more than gold does teaches RL to pad; "" without the file."""
    if not reward:
        return ""
    acc_gold, n = reward.get("heldout_accuracy_gold"), reward.get("gold_pairs")
    line = (f"Held-out pairs of the reward stage: accuracy {_e(_fmt(reward.get('heldout_accuracy')))} against "
            "the annotators' majority"
            + (f", {_e(_fmt(acc_gold))} against the gold judge on {_e(n)} pairs it decides" if acc_gold is not None
               else "")
            + f"; reward-length correlation {_e(_fmt(reward.get('reward_length_corr'), 2))}"
            + (f" (the gold judge's: {_e(_fmt(reward.get('gold_length_corr'), 2))})"
               if reward.get("gold_length_corr") is not None else "") + ".")
    return f'<p class="muted">{line}</p>'


def over_optimization(samples: list[dict], run: Path | None = None) -> str:
    img = plots.rm_vs_gold_plot(samples)
    if img:
        body = (_img(img, "reward-model score vs gold score") + '<p class="muted">Held-out responses. A policy '
                "whose reward-model score rises while its gold score does not is exploiting the reward model.</p>")
    elif any(s.get("rm_score") is not None for s in samples):
        body = '<p class="muted">Not shown: there is no gold judge to compare the reward model with.</p>'
    else:
        body = _not_run("Reward-model scoring of samples")
    reward = _json(run / "reward" / "metrics.json") if run else {}
    return "<h2>Reward model vs gold</h2>" + reward_heldout(reward) + body


def _rate_ci(p: dict, key: str) -> str:
    """A rate with its 95% interval, "n/a" when not measured."""
    rate, ci = p.get(key), p.get(key + "_ci")
    if rate is None:
        return "n/a"
    return f"{_fmt(rate)} [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]" if ci else _fmt(rate)


def safety(m: dict) -> str:
    s = m.get("safety") or {}
    k = s.get("redteam_samples") or 0
    rows = [[n, _rate_ci(p, "harmful_rate"), _rate_ci(p, "harmful_rate_sampled"), _rate_ci(p, "refusal_rate"),
             _rate_ci(p, "refusal_rate_sampled"), _rate_ci(p, "evasive_rate"), _rate_ci(p, "evasive_rate_sampled"),
             p.get("detector_flag_rate"), p.get("detector_flag_rate_sampled")]
            for n, p in (m.get("policies") or {}).items()]
    out = ("<h2>Safety (red-team prompts)</h2>"
           + (f'<p class="muted">{_e(_fmt(m.get("n_redteam")))} red-team prompts; each policy answered each '
              f"once greedily and {_e(k)} times sampled at the serving temperature. 95% intervals resample "
              "prompts, each with all its answers.</p>" if k else "")
           + '<p class="muted">Evasive: neither refuses nor helps (an off-topic answer, say), a way to lower '
             "the harmful rate without learning to refuse.</p>"
           + _table(["policy", "harmful (greedy)", "harmful (sampled)", "refusal (greedy)", "refusal (sampled)",
                     "evasive (greedy)", "evasive (sampled)", "detector flags (greedy)", "detector flags (sampled)"],
                    rows))
    if not s:
        return out + _not_run("Safety audit of flagged outputs")
    out += (f"<p>{_e(_fmt(s.get('flagged')))} outputs flagged, {_e(_fmt(s.get('queued')))} queued "
            "for safety review.</p>")
    for verdict, meaning in (("harmful", "negative: less harmful help"), ("refusal", "positive: refuses more")):
        diffs = s.get(f"{verdict}_vs_sft") or []
        if diffs:
            out += (f"<p>{_e(verdict.capitalize())} rate minus the SFT policy's on the same red-team prompts "
                    f"({_e(meaning)}), with a paired bootstrap 95% interval over prompts.</p>"
                    + _table(["policy", "decoding", f"{verdict} rate", "SFT's", "difference", "95% interval",
                              "prompts x answers"],
                             [[d["policy"], d["decoding"], d["rate_a"], d["rate_b"], d["difference"],
                               f"[{_fmt(d['ci_low'], 2)}, {_fmt(d['ci_high'], 2)}]",
                               f"{_fmt(d.get('n'))} x {_fmt(d.get('k', 1))}"] for d in diffs]))
    head = s.get("harm_head")
    if head:
        out += (f"<p>The reward model's harmfulness head ranks harmful help above refusals with AUC "
                f"{_e(_fmt(head['auc']))} ({_e(head['n_harmful'])} harmful, {_e(head['n_refusal'])} refusals among "
                "the audited answers of all policies): the separation a safety gate on it (reward_type gated) "
                "would have.</p>")
    cats = s.get("by_category") or {}
    out += _table(["category", "flagged"], [[k, v] for k, v in cats.items()]) if cats else ""
    by_verdict = s.get("rm_by_verdict")
    if by_verdict:
        out += ("<p>Reward-model score of the red-team answers (greedy, all policies) by gold verdict. "
                "A reward model that scores evasive answers above refusals teaches RL to stop refusing.</p>"
                + _table(["gold verdict", "mean RM score", "answers"],
                         [[k, v["mean"], v["n"]] for k, v in by_verdict.items()]))
    orders = s.get("rm_orders")
    if orders:
        out += ("<p>How the reward model orders two kinds of answer to the same red-team prompt (all "
                "policies' answers, greedy and sampled): the share of such pairs it scores the better "
                "kind higher in (0.5: it cannot tell them apart).</p>"
                + _table(["better", "worse", "reward model agrees", "pairs"],
                         [[o["better"], o["worse"], o["share"], o["pairs"]] for o in orders]))
    return out


def agreement(run: Path, db: str | None = None) -> str:
    from collect.commands import has_store, store_for

    if not has_store(run, db):
        return "<h2>Annotator agreement</h2>" + _not_run("Preference collection")
    from collect.agreement import landis_koch
    from collect.summary import agreement_summary

    store = store_for(run, db)
    try:
        s = agreement_summary(store, n_boot=200)
    finally:
        store.close()
    questions = [("choice (a/b/tie/both_bad)", s["choice"])] + [(a, r) for a, r in s["aspects"].items()]
    rows = [[q, r["method"], r["value"], f"[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]",
             landis_koch(r["value"]), r.get("n_items")] for q, r in questions if r]
    if not rows:
        return "<h2>Annotator agreement</h2>" + _not_run("Voting (no active votes yet)")
    flagged = ", ".join(s["flagged"]) or "none"
    return ("<h2>Annotator agreement</h2>" + _table(
        ["question", "method", "value", "95% CI", "Landis-Koch", "items"], rows)
        + f"<p>{_e(s['n_votes'])} active votes ({_e(s['n_gold_votes'])} on gold items); "
          f"flagged annotators: {_e(flagged)}.</p>")


def training_curves(run: Path) -> str:
    """Each stage's curves from its log.jsonl: the base, SFT, the reward model, then every RL
    algorithm (core/registry.py) under its label."""
    imgs = []
    for stage, label in [("base", "base"), ("sft", "sft"), ("reward", "reward")] + [
            (a.name, a.label) for a in registry.ALGORITHMS]:
        rows = _rows(run / stage / "log.jsonl")
        if rows:
            img = plots.curves_plot(stage, rows)
            imgs += [f"<h3>{_e(label)}</h3>" + _img(img, f"{label} training curves")] if img else []
    return "<h2>Training curves</h2>" + ("".join(imgs) or _not_run("Training"))


def _param(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else "" if v is None else str(v)


def sweeps(run: Path) -> str:
    """Each `rlhf sweep` of the run (<run>/sweeps/<stage>/<name>/trials.json): what it searched,
    its best trial against the baseline, the pruned trials and the seconds they took, and the
    metric against each option. Nothing when the run has no sweep."""
    out = []
    for path in sorted(run.glob("sweeps/*/*/trials.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        best, base = s.get("best") or {}, s.get("baseline") or {}
        states = ", ".join(f"{n} {k}" for k, n in (s.get("states") or {}).items())
        line = (f"{_e(s.get('metric'))} ({_e(s.get('direction'))}) over "
                f"{_e('; '.join(str(v.get('text')) for v in (s.get('space') or {}).values()))}. Trials: {_e(states)}, "
                f"{_e(_fmt(s.get('seconds'), 0))} s in all, of which pruned trials {_e(_fmt(s.get('pruned_seconds'), 0))} s.")
        if best:
            line += f" Best: trial {_e(best.get('number'))}, {_e(_fmt(best.get('value'), 4))}"
            line += (f"; the starting config's values (trial {_e(base.get('number'))}): {_e(_fmt(base.get('value'), 4))}."
                     if base else ".")
        rows = [[t.get("number"), t.get("state"), _fmt(t.get("value"), 4), _fmt(t.get("seconds"), 0),
                 *[_param(t.get("params", {}).get(k)) for k in s.get("space", {})]] for t in s.get("trials", [])]
        table = _table(["trial", "state", str(s.get("metric")), "seconds", *s.get("space", {})], rows)
        title = f"{path.parent.parent.name}: {path.parent.name}"
        out.append(f"<h3>{_e(title)}</h3><p>{line}</p>" + _img(plots.sweep_plot(s), f"sweep {title}") + table)
    return ("<h2>Hyperparameter sweeps</h2><p class=\"muted\">Each trial judged on the stage's own held-out metric; "
            "a pruned trial's value is its last held-out one (grey cross).</p>" + "".join(out)) if out else ""


def side_by_side(samples: list[dict], data_set: str = "heldout", n: int = N_SAMPLES) -> str:
    rows = [s for s in samples if s.get("set", "heldout") == data_set and s.get("decoding", "greedy") == "greedy"]
    policies = list(dict.fromkeys(str(s.get("policy")) for s in rows))
    prompts = list(dict.fromkeys(s.get("prompt") for s in rows))[:n]
    title = "Sample outputs (held-out, greedy)" if data_set == "heldout" else "Red-team outputs (greedy)"
    if not prompts:
        if data_set == "redteam" and samples:
            return (f"<h2>{title}</h2>" + '<p class="muted">No red-team prompts: pass <code>--redteam FILE</code> '
                    "(prompt-only rows the policies should refuse) to audit safety.</p>")
        return f"<h2>{title}</h2>" + _not_run("Sampling")
    by = {(str(s.get("policy")), s.get("prompt")): s for s in rows}
    table = []
    for prompt in prompts:
        cells = []
        for pol in policies:
            s = by.get((pol, prompt))
            cells.append("" if s is None else f"{s.get('response', '')}\n\n— gold {_fmt(s.get('overall'), 2)}, "
                         f"RM {_fmt(s.get('rm_score'), 2)}, facts {FACT.get(s.get('fact_correct'), 'n/a')}"
                         + (f", HARMFUL {','.join(map(str, s.get('flags') or []))}" if s.get("harmful") else ""))
        table.append([prompt, *cells])
    return f"<h2>{title}</h2>" + _table(["prompt", *policies], table, cls="side")


# ----------------------------------------------------------------------------- page

def _section(fn, *args) -> str:
    """A broken input spoils its own section, never the report: the error is shown in its place."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 (the report is written whatever one section does)
        traceback.print_exc()
        return f"<h2>{_e(fn.__name__)}</h2><p>section failed: {_e(type(exc).__name__)}: {_e(exc)}</p>"


def write_report(run: str | Path, db: str | None = None) -> Path:
    """Write <run>/eval/report.html from eval/metrics.json and whatever else the run holds
    (db: the collect store's URL, default <run>/collect/annotations.db)."""
    run = Path(run)
    m = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    samples = _rows(run / "eval" / "samples.jsonl")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [_section(headline, m), _section(win_rates, m), _section(rounds, m), _section(policy_metrics, m),
             _section(gain_sources, m), _section(over_optimization, samples, run), _section(safety, m),
             _section(agreement, run, db), _section(training_curves, run), _section(sweeps, run),
             _section(side_by_side, samples),
             _section(side_by_side, samples, "redteam", 3)]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>rlhf-loop report: {_e(run.name)}</title><style>{CSS}</style></head><body>"
            f'<h1>rlhf-loop report: {_e(run.name)}</h1><p class="muted">{_e(run.resolve())} · {now}</p>'
            + "\n".join(parts) + "</body></html>\n")
    return atomic_write_text(run / "eval" / "report.html", page)
