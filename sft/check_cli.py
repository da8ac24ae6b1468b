"""`rlhf data check FILE`: validate and check a data file before training on it.

The kind of data is told from the columns (or given with --kind): preference pairs (`chosen`,
`rejected`, with or without `prompt`), SFT examples (`messages`, or `prompt` + `completion`) or
prompts alone (`prompt`). Every row is validated first; rows that break the format are reported
one line per kind of problem, with a count and the first rows (file:line). Then, per kind:
  SFT          duplicates, contradictions, train/validation leakage (--val), empty and overlong
               rows (token counts need --model), inconsistent formatting (sft/data.py);
  preference   leakage (--val), pairs whose chosen and rejected are the same text, duplicate
               pairs, pairs preferred both ways, and how many carry a system prompt or turns;
  prompts      duplicate ids, leakage (--val), duplicate prompts, tags, conversations.
Exit status 2 when there are errors, so it can gate a pipeline.
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

from core.config import UserError
from core.records import (DataError, is_plain, iter_raw_rows, prompt_key, read_preferences, read_prompts,
                          read_sft)
from sft.data import ERROR, INFO, WARNING, CheckReport, Finding, check_rows

KINDS = ("sft", "preference", "prompts")
TITLES = {"sft": "SFT", "preference": "preference", "prompts": "prompt"}
READERS: dict[str, Callable] = {"sft": read_sft, "preference": read_preferences, "prompts": read_prompts}


def detect_kind(path: str | Path) -> str:
    """'preference', 'sft' or 'prompts' from the columns the file's rows fill."""
    columns: set[str] = set()
    n = 0
    for n, (_, raw) in enumerate(iter_raw_rows(path), start=1):
        if isinstance(raw, dict):
            columns |= {k for k, v in raw.items() if v is not None}
    if not n:
        raise UserError(f"{path}: no rows")
    if {"chosen", "rejected"} & columns:
        return "preference"
    if {"messages", "completion"} & columns:
        return "sft"
    if "prompt" in columns:
        return "prompts"
    raise UserError(f"{path}: cannot tell the kind of data from its columns ({', '.join(sorted(columns)) or 'none'}): "
                     "expected chosen + rejected (preference), messages or prompt + completion (SFT), "
                     "or prompt alone (prompts); or pass --kind")


def _loc(row: dict, i: int) -> str:
    return str(row.get("_source") or f"row {i + 1}")


def _leakage(rows: list[dict], val_rows: list[dict]) -> Finding | None:
    train_at: dict[str, list[str]] = defaultdict(list)
    for i, r in enumerate(rows):
        train_at[prompt_key(r["prompt"])].append(_loc(r, i))
    val_at: dict[str, list[str]] = defaultdict(list)
    for i, r in enumerate(val_rows):
        val_at[prompt_key(r["prompt"])].append(_loc(r, i))
    shared = sorted(set(train_at) & set(val_at))
    if not shared:
        return None
    return Finding(ERROR, "leakage", f"{len(shared)} prompt(s) in both the file and the validation file",
                   len(shared), [loc for k in shared for loc in train_at[k] + val_at[k]],
                   [f"{train_at[k][0]} / {val_at[k][0]}" for k in shared])


def _groups(rows: list[dict], key: Callable[[dict], object]) -> dict[object, list[str]]:
    out: dict[object, list[str]] = defaultdict(list)
    for i, r in enumerate(rows):
        out[key(r)].append(_loc(r, i))
    return out


def _repeated(level: str, check: str, message: str, groups: dict[object, list[str]]) -> Finding | None:
    many = [locs for locs in groups.values() if len(locs) > 1]
    if not many:
        return None
    return Finding(level, check, message.format(n=sum(len(g) - 1 for g in many), groups=len(many)),
                   sum(len(g) - 1 for g in many), [loc for g in many for loc in g],
                   [", ".join(g[:3]) for g in many])


def _conversations(rows: list[dict], noun: str) -> Finding | None:
    conv = [_loc(r, i) for i, r in enumerate(rows) if not is_plain(r["prompt"])]
    if not conv:
        return None
    return Finding(INFO, "conversations", f"{len(conv)} {noun} have a system prompt or earlier turns (kept: "
                   "every stage sees the whole conversation)", len(conv), conv)


def check_preferences(rows: list[dict], val_rows: list[dict] | None = None) -> CheckReport:
    report = CheckReport(n_rows=len(rows), kind=TITLES["preference"])
    same = [_loc(r, i) for i, r in enumerate(rows) if r["chosen"].strip() == r["rejected"].strip()]
    pair = _groups(rows, lambda r: (prompt_key(r["prompt"]), r["chosen"].strip(), r["rejected"].strip()))
    both_ways = [locs + pair[(k, r, c)] for (k, c, r), locs in pair.items() if c < r and (k, r, c) in pair]
    for f in (
        _leakage(rows, val_rows) if val_rows is not None else None,
        Finding(WARNING, "identical", f"{len(same)} pair(s) whose chosen and rejected are the same text "
                "(they teach nothing)", len(same), same) if same else None,
        _repeated(WARNING, "duplicate", "{n} redundant copies in {groups} group(s) of identical pairs "
                  "(they overweight those pairs)", pair),
        Finding(INFO, "both_ways", f"{len(both_ways)} pair(s) of responses preferred one way in one row and "
                "the other way in another", len(both_ways), [loc for g in both_ways for loc in g],
                [", ".join(g[:3]) for g in both_ways]) if both_ways else None,
        _conversations(rows, "pairs"),
    ):
        if f is not None:
            report.add(f)
    return report


def check_prompts(rows: list[dict], val_rows: list[dict] | None = None) -> CheckReport:
    report = CheckReport(n_rows=len(rows), kind=TITLES["prompts"])
    tags = Counter(t for r in rows for t in r["tags"])
    for f in (
        _repeated(ERROR, "duplicate_id", "{n} row(s) repeat the id of another ({groups} id(s)); ids name "
                  "the comparison items and eval rows", _groups(rows, lambda r: r["id"])),
        _leakage(rows, val_rows) if val_rows is not None else None,
        _repeated(WARNING, "duplicate", "{n} redundant copies in {groups} group(s) of the same prompt",
                  _groups(rows, lambda r: prompt_key(r["prompt"]))),
        Finding(INFO, "tags", "rows per tag: " + ", ".join(f"{t} {n}" for t, n in sorted(tags.items())),
                sum(tags.values())) if tags else None,
        _conversations(rows, "prompts"),
    ):
        if f is not None:
            report.add(f)
    return report


def format_data_error(path: str, kind: str | None, e: DataError) -> str:
    """One summary line, then one line per kind of problem."""
    rows = f"{e.n_rows} rows read, " if e.n_rows is not None else ""
    title = f"{TITLES[kind]} data check" if kind else "data check"
    head = (f"{title}: {path}: {rows}{len(e.problems)} with problems, "
            f"{len(e.grouped)} kind(s) of problem")
    return "\n".join([head] + [f"  {line}" for line in e.grouped])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlhf data check", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="data: JSONL, JSON, CSV, Parquet or a save_to_disk directory")
    ap.add_argument("--kind", choices=KINDS, help="the kind of data (default: told from the columns)")
    ap.add_argument("--val", help="validation file to check for leakage against")
    ap.add_argument("--model", help="model/tokenizer directory, to count tokens for the overlong check (SFT)")
    ap.add_argument("--max_length", type=int, default=256, help="token limit per row (SFT, with --model)")
    ap.add_argument("--chat_template", default="", help="a Jinja chat template file for a --model that has none "
                                                        "(as the stages take it)")
    ap.add_argument("--eos_token", default="", help="the token that ends an assistant turn, as the stages take it")
    args = ap.parse_args(argv)

    kind = args.kind
    loaded, failed = {}, False
    for path in [args.file] + ([args.val] if args.val else []):
        try:
            kind = kind or detect_kind(path)
            loaded[path] = READERS[kind](path)
        except DataError as e:
            if e.n_rows is None and len(e.grouped) == 1:  # the file itself (missing, empty, unknown format)
                raise UserError(e.grouped[0]) from None
            print(format_data_error(path, kind, e))
            failed = True
    if failed:
        return 2
    rows, val = loaded[args.file], loaded.get(args.val)
    if kind == "sft":
        count = None
        if args.model:
            from core.models import load_tokenizer
            from sft.train import token_counter

            tok = load_tokenizer(args.model, eos_token=args.eos_token, chat_template=args.chat_template)
            if not getattr(tok, "chat_template", None):
                raise UserError(f"--model {args.model}: its tokenizer has no chat template, which the token "
                                "counts include; pass --chat_template FILE.jinja, as to the stages")
            count = token_counter(tok)
        report = check_rows(rows, val_rows=val, count_tokens=count, max_tokens=args.max_length if count else None)
    else:
        report = (check_preferences if kind == "preference" else check_prompts)(rows, val)
    print(report.format())
    return 0 if report.ok else 2
