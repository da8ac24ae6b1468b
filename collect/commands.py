"""`rlhf collect ...` subcommands as plain functions (collect/cli.py wires the arguments).

The store lives at <run>/collect/annotations.db (SQLite) unless `db` names another SQLAlchemy
URL (`postgresql+psycopg://user:pass@host/db`); the export goes to
<run>/collect/preferences.jsonl (with its dataset card README.md beside it) either way. Each
function prints a short summary for people and returns the numbers for scripts and tests.
Messages name a URL with its password masked.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from core.config import UserError

from . import assign, export as export_mod, users
from .store import Store, mask_url, open_store, store_exists
from .summary import agreement_summary


def db_path(run: str | Path) -> Path:
    return Path(run) / "collect" / "annotations.db"


def preferences_path(run: str | Path) -> Path:
    return Path(run) / "collect" / "preferences.jsonl"


def guidelines_path(run: str | Path) -> Path:
    """This round's guidelines (markdown): `collect serve` shows them when --guidelines is not
    given. The demo writes its own there."""
    return Path(run) / "collect" / "guidelines.md"


def db_location(run: str | Path, db: str | None = None) -> str:
    """The store's URL or SQLite path: db when given, else <run>/collect/annotations.db."""
    return str(db) if db else str(db_path(run))


def has_store(run: str | Path, db: str | None = None) -> bool:
    """Whether the run's store exists (any database; creates nothing)."""
    return store_exists(db_location(run, db))


def store_for(run: str | Path, db: str | None = None) -> Store:
    return open_store(db_location(run, db))


def existing_store(run: str | Path, db: str | None = None) -> Store:
    """The run's store for a command that reads one: a mistyped --run or --db is an error, not a
    new empty store."""
    if not has_store(run, db):
        raise UserError(f"no annotation store at {mask_url(db_location(run, db))}: check --run / --db "
                        "(`rlhf collect import` or `users add` creates one)")
    return store_for(run, db)


def users_add(run: str | Path, name: str, role: str, password: str | Callable[[], str],
              db: str | None = None) -> None:
    """Add an account; `password` may be a function that asks for it, called once the name and
    role are known to be good (nobody types a password twice to learn the name is taken)."""
    store = store_for(run, db)
    try:
        if callable(password):
            users.check_new_user(store, name, role)
            password = password()
        users.add_user(store, name, role, password)
    finally:
        store.close()
    print(f"added {role} {name!r} to {mask_url(db_location(run, db))}")


def import_items(run: str | Path, file: str | Path, db: str | None = None) -> int:
    store = store_for(run, db)
    try:
        n = assign.import_items(store, file)
        total = assign.admin_progress(store)["items"]
    finally:
        store.close()
    review = total.get("review_only", 0)
    print(f"imported {n} items from {file}; the store now holds {total['regular']} regular "
          f"and {total['gold']} gold items" + (f", and {review} for the safety reviewers only" if review else ""))
    return n


def export(run: str | Path, min_agreement: float = 0.0, min_votes: int = 1,
           db: str | None = None, min_harm_gap: float = export_mod.MIN_HARM_GAP, round_no: int = 0,
           out: str | Path | None = None) -> dict[str, Any]:
    """Write the preference pairs (default <run>/collect/preferences.jsonl); round_no: only that
    annotation round's items (0 = every round)."""
    if not min_harm_gap > 0:
        raise UserError(f"--min_harm_gap must be > 0 (above 4 turns it off), got {min_harm_gap}")
    store = existing_store(run, db)
    try:
        stats = export_mod.export_preferences(store, out or preferences_path(run),
                                              min_agreement=min_agreement, min_votes=min_votes,
                                              min_harm_gap=min_harm_gap, round_no=round_no)
    finally:
        store.close()
    dropped = ", ".join(f"{k} {n}" for k, n in stats["excluded"].items() if n) or "none"
    print(f"wrote {stats['n_pairs']} preference pairs to {stats['path']} "
          f"(from {stats['n_items']} items; not exported: {dropped})")
    print(f"dataset card: {stats['card']}")
    if stats["flagged_annotators"]:
        print(f"annotators to check: {', '.join(stats['flagged_annotators'])} "
              f"(see the card's Annotators table)")
    return stats


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def report(run: str | Path, overlap: int = 3, db: str | None = None) -> dict[str, Any]:
    """Progress per annotator and the agreement table, as the admin dashboard shows them."""
    store = existing_store(run, db)
    try:
        prog = assign.admin_progress(store, overlap=overlap)
        summary = agreement_summary(store, n_boot=200)
    finally:
        store.close()
    it, votes = prog["items"], prog["votes"]
    print(f"items: {it['regular']} regular ({it['complete']} with >= {overlap} votes, "
          f"{it['in_progress']} in progress, {it['untouched']} untouched), {it['gold']} gold"
          + (f", {it['review_only']} for the safety reviewers only" if it.get("review_only") else ""))
    print(f"active votes: {votes['regular']} on regular items, {votes['gold']} gold checks (votes on gold "
          "items; the per-round and per-annotator vote counts below are regular votes)")
    if len(prog["rounds"]) > 1:
        for r in prog["rounds"]:
            print(f"  round {r['round']}: {r['items']} items, {r['complete']} complete, "
                  f"{r['in_progress']} in progress, {r['untouched']} untouched, "
                  f"{r['votes']} regular votes")
    for a in prog["annotators"]:
        s = summary["annotators"].get(a["annotator"])
        share = _fmt(s["agreement"]["share"]) if s else "n/a"
        print(f"  {a['annotator']:16s} regular votes {a['done']:5d}  gold checks {a['gold_done']:3d}  "
              f"open {a['open']:3d}  agreement {share}")
    if summary["choice"] is not None:
        c = summary["choice"]
        print(f"choice agreement: {c['method']} = {_fmt(c['value'])} ({c['band']})")
        for aspect, r in summary["aspects"].items():
            print(f"  {aspect:18s} {r['method']} = {_fmt(r['value'])}  "
                  f"interval alpha = {_fmt(r['alpha']['interval']['value'])}")
    pos = summary["position_bias"]
    print(f"position bias: left wins {_fmt(pos['share'])} of {pos['n_decisive']} "
          f"(p = {_fmt(pos['p_value'])})")
    for name in summary["flagged"]:
        print(f"FLAGGED {name}: {'; '.join(summary['annotators'][name]['why'])}")
    return {"progress": prog, "agreement": summary}
