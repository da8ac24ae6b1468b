"""Figures for the HTML report (eval/report.py), each returned as a base64 PNG data URI.

Matplotlib's object API (Figure, Agg canvas) rather than pyplot: no global backend or figure
state, so building a report never touches a caller's plotting session.
"""
from __future__ import annotations

import base64
import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from core import registry

# Per stage: (panel title, log keys drawn on it). Keys absent from a log are skipped, and so
# is a panel with none of its keys. Writers: demo/pretrain.py (base), core/training.py
# JsonlLogger (sft; evaluation rows carry TRL's "eval_" prefix), reward/train.py. Each RL
# algorithm's curves are in its core/registry.py entry.
CURVES = {
    "base": [("loss", ["loss", "val_loss"])],  # val_loss: one held-out point at the end
    "sft": [("loss", ["loss", "eval_loss"]),
            ("token accuracy", ["mean_token_accuracy", "eval_mean_token_accuracy"])],
    "reward": [("pairwise loss", ["loss", "eval_loss"]), ("accuracy", ["accuracy", "eval_accuracy"])],
}
POLICY_COLORS = {"base": "tab:gray", "sft": "tab:blue"}


def curves_of(stage: str) -> list[tuple[str, list[str]]]:
    alg = registry.get(stage)
    return [(title, list(keys)) for title, keys in alg.curves] if alg else CURVES.get(stage, [])


def policy_color(name: str) -> str:
    alg = registry.get(name)
    return alg.color if alg else POLICY_COLORS.get(name, "tab:blue")


def _num(x) -> float | None:
    """A finite float, or None (missing, null, NaN, a string, a bool)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def win_rate_plot(rows: list[dict]) -> str | None:
    """One row per comparison: the win rate and its 95% interval, in the first policy's colour
    (filled), and just below it the style-controlled rate and its interval (hollow, thin) where the
    row has one; 0.5 = no preference."""
    rows = [r for r in rows if _num(r.get("win_rate")) is not None]
    if not rows:
        return None
    fig = Figure(figsize=(6.5, 0.45 * len(rows) + 1.0))
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        w = _num(r["win_rate"])
        lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [i, i], color=policy_color(str(r.get("a"))), lw=2.5, alpha=0.5)
        ax.plot([w], [i], "o", color=policy_color(str(r.get("a"))))
        style = r.get("style_controlled") if isinstance(r.get("style_controlled"), dict) else {}
        sw, slo, shi = (_num(style.get(k)) for k in ("win_rate", "ci_low", "ci_high"))
        if sw is not None:
            if slo is not None and shi is not None:
                ax.plot([slo, shi], [i + 0.25, i + 0.25], color=policy_color(str(r.get("a"))), lw=1, alpha=0.7)
            ax.plot([sw], [i + 0.25], "o", mfc="white", color=policy_color(str(r.get("a"))))
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [f"{r.get('a')} vs {r.get('b')} ({r.get('judge')}, {r.get('decoding')})"
                                     for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first policy (ties count half), 95% interval; hollow: style-controlled")
    return data_uri(fig)


def rm_vs_gold_plot(samples: list[dict]) -> str | None:
    """Reward-model score against gold score, a panel per policy: a policy that climbs the
    reward model without climbing gold is over-optimizing it."""
    by_policy: dict[str, list[tuple[float, float, str]]] = {}
    for s in samples:
        gold, rm = _num(s.get("overall")), _num(s.get("rm_score"))
        if gold is not None and rm is not None and s.get("set", "heldout") == "heldout":
            by_policy.setdefault(str(s.get("policy")), []).append((gold, rm, s.get("decoding", "greedy")))
    if not by_policy:
        return None
    fig = Figure(figsize=(3.2 * len(by_policy), 3.0))
    axes = fig.subplots(1, len(by_policy), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (policy, pts) in zip(axes, by_policy.items()):
        for decoding, color in (("greedy", "tab:blue"), ("sampled", "tab:orange")):
            xy = [(g, r) for g, r, d in pts if d == decoding]
            if xy:
                ax.scatter(*zip(*xy), s=12, alpha=0.6, color=color, label=decoding)
        ax.set_title(f"{policy}  (r = {_pearson([p[0] for p in pts], [p[1] for p in pts])})", fontsize=10)
        ax.set_xlabel("gold overall (1-5)")
    axes[0].set_ylabel("reward-model score")
    axes[0].legend(fontsize=8)
    return data_uri(fig)


def proxy_vs_gold_plot(points: list[dict]) -> str | None:
    """Per RL policy, its mean gain over SFT by its round's reward model (x, the proxy it was
    trained on) against its gain by gold (y), one point per round joined in round order: a line
    that runs right but not up is a policy over-optimizing its reward model (Gao et al. 2022)."""
    pts = [p for p in points if _num(p.get("proxy_gain")) is not None and _num(p.get("gold_gain")) is not None]
    if not pts:
        return None
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.add_subplot()
    for policy in dict.fromkeys(str(p.get("policy")) for p in pts):
        mine = sorted((p for p in pts if str(p.get("policy")) == policy), key=lambda p: p.get("round", 0))
        xs, ys = [_num(p["proxy_gain"]) for p in mine], [_num(p["gold_gain"]) for p in mine]
        ax.plot(xs, ys, "-o", color=policy_color(policy), label=policy)
        for p, x, y in zip(mine, xs, ys):
            ax.annotate(f"r{p.get('round')}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(0, color="grey", ls="--", lw=1)
    ax.axvline(0, color="grey", ls="--", lw=1)
    ax.set_xlabel("gain over SFT by the round's reward model (proxy)")
    ax.set_ylabel("gain over SFT by gold")
    ax.legend(fontsize=8)
    return data_uri(fig)


def _pearson(x: list[float], y: list[float]) -> str:
    n = len(x)
    if n < 3:
        return "n/a"
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return "n/a" if sxx == 0 or syy == 0 else f"{sxy / math.sqrt(sxx * syy):.2f}"


def curves_plot(stage: str, rows: list[dict]) -> str | None:
    """The stage's known curves against step, one panel per quantity."""
    panels = []
    for title, keys in curves_of(stage):
        lines = {k: sorted((r["step"], _num(r.get(k))) for r in rows
                           if _num(r.get("step")) is not None and _num(r.get(k)) is not None) for k in keys}
        lines = {k: v for k, v in lines.items() if v}
        if lines:
            panels.append((title, lines))
    if not panels:
        return None
    fig = Figure(figsize=(min(3.0 * len(panels), 12.0), 2.4), layout="constrained")
    for ax, (title, lines) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, pts in lines.items():
            ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if len(lines) > 1:
            ax.legend(fontsize=7)
    return data_uri(fig)


def sweep_plot(summary: dict) -> str | None:
    """A sweep's trials (sweep/results.py's trials.json): the metric against each searched option,
    one panel per option. Finished trials are dots, pruned ones grey crosses at their last
    held-out value, the baseline (the starting config's values) a black ring, the best a star."""
    trials = [t for t in summary.get("trials", []) if _num(t.get("value")) is not None]
    names = list(summary.get("space", {}))
    if not trials or not names:
        return None
    best = (summary.get("best") or {}).get("number")
    base = (summary.get("baseline") or {}).get("number")
    fig = Figure(figsize=(min(3.2 * len(names), 12.8), 2.6), layout="constrained")
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        spec = summary["space"][name]
        if spec.get("kind") == "choice":  # its values in the order the space lists them
            order = [str(c) for c in spec.get("choices", [])]
            ax.set_xticks(range(len(order)), order)
            ax.set_xlim(-0.5, len(order) - 0.5)
            x_of = lambda v, order=order: order.index(str(v)) if str(v) in order else None  # noqa: E731
        else:
            x_of = _num
            if str(spec.get("kind", "")).startswith("log"):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # the decade labels only
            low, high = _num(spec.get("low")), _num(spec.get("high"))
            if low is not None and high is not None:  # the whole range, to show what was left unexplored
                pad = (high / low) ** 0.04 if str(spec.get("kind", "")).startswith("log") else None
                ax.set_xlim(*((low / pad, high * pad) if pad else (low - 0.04 * (high - low), high + 0.04 * (high - low))))
        for t in trials:
            x = x_of(t["params"].get(name))
            if x is None:
                continue
            y = float(t["value"])
            if t["state"] == "pruned":
                ax.scatter([x], [y], marker="x", color="grey", s=30)
            else:
                ax.scatter([x], [y], color="tab:blue", s=18)
            if t["number"] == base:
                ax.scatter([x], [y], facecolors="none", edgecolors="black", s=110, lw=1.2)
            if t["number"] == best:
                ax.scatter([x], [y], marker="*", color="tab:red", s=140, zorder=3)
        ax.set_xlabel(name)
    fig.axes[0].set_ylabel(f"{summary.get('metric')} ({str(summary.get('direction', ''))[:3]})")
    return data_uri(fig)
