"""A sweep's results: trials.json, best.yaml and the table printed at the end."""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from core.config import apply_updates, to_dict
from core.io import atomic_write_text, write_json

from .objective import Metric
from .space import Param


def trial_rows(study) -> list[dict]:
    """Every trial of the study: number, state, value (a pruned trial's: its last held-out value),
    values, held-out curve [[step, value], ...], seconds and directory."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        curve = sorted(t.intermediate_values.items())
        value = t.value if t.value is not None else (curve[-1][1] if curve and t.state.name == "PRUNED" else None)
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": value, "params": dict(t.params),
                     "curve": [[int(s), float(v)] for s, v in curve], "seconds": t.user_attrs.get("seconds"),
                     "dir": t.user_attrs.get("dir")})
    return rows


def best_row(rows: list[dict], metric: Metric) -> dict | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None and not math.isnan(r["value"])]
    if not done:
        return None
    return min(done, key=lambda r: r["value"] if metric.direction == "minimize" else -r["value"])


def format_table(rows: list[dict], params: list[Param], metric: Metric, best: dict | None) -> str:
    names = [p.name for p in params]
    width = {n: max(10, len(n)) for n in names}
    head = f"{'trial':>5s} {'state':9s} {metric.name:>14s} {'seconds':>8s}  " + " ".join(f"{n:>{width[n]}s}" for n in names)
    lines = [head]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}" + (" (last)" if r["state"] == "pruned" else "")
        cells = []
        for n in names:
            v = r["params"].get(n)
            cells.append(f"{'' if v is None else format(v, '.3g') if isinstance(v, float) else v!s:>{width[n]}}")
        star = " *" if best is not None and r["number"] == best["number"] else ""
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"{r['number']:5d} {r['state']:9s} {value:>14s} {seconds:>8s}  " + " ".join(cells) + star)
    return "\n".join(lines)


def best_config(base, params: list[Param], best: dict):
    """The starting config with the best trial's values (written as best.yaml)."""
    return apply_updates(base, {k: v for k, v in best.items() if k in {p.name for p in params}}, "best trial")


def write_results(study, where: Path, stage: str, base, params: list[Param], metric: Metric, sweep: dict) -> dict:
    """trials.json and best.yaml in the sweep's directory; prints the table."""
    rows = trial_rows(study)
    best = best_row(rows, metric)
    baseline = rows[0] if rows and all(rows[0]["params"].get(p.name) == getattr(base, p.name) for p in params) \
        else None
    pruned = [r for r in rows if r["state"] == "pruned"]
    space = {p.name: {"kind": p.kind, "low": p.low, "high": p.high, "step": p.step, "choices": list(p.choices),
                      "text": p.describe()} for p in params}
    summary = {"stage": stage, "metric": metric.name, "direction": metric.direction, "space": space,
               "best": best, "baseline": baseline,
               "states": {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})},
               "seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
               "pruned_seconds": round(sum(r["seconds"] or 0 for r in pruned), 1),
               "sweep": sweep, "trials": rows}
    write_json(where / "trials.json", summary)
    print(format_table(rows, params, metric, best))
    if best is None:
        print(f"[sweep] no trial finished; nothing written to {where / 'best.yaml'}")
        return summary
    cfg = best_config(base, params, best["params"])
    head = (f"# rlhf sweep: the best of {len(rows)} trials on {metric.name} ({metric.direction}): trial "
            f"{best['number']}, {best['value']:.4f}")
    if baseline is not None and baseline["value"] is not None:
        head += f"; the starting config's values (trial {baseline['number']}): {baseline['value']:.4f}"
    text = head + f"\n# use: rlhf {stage} --config {where / 'best.yaml'} (it writes to the stage's usual directory)\n"
    atomic_write_text(where / "best.yaml", text + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"[sweep] best: trial {best['number']}, {metric.name} {best['value']:.4f}"
          + (f" (baseline {baseline['value']:.4f})" if baseline and baseline["value"] is not None else "")
          + f"; {where / 'best.yaml'}")
    return summary
