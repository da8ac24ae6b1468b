"""`rlhf data check FILE`: validate and check an SFT data file before training on it.

Reports duplicates, contradictions (same prompt, different answers), train/validation leakage
(with --val), empty and overlong rows (token counts need --model) and inconsistent formatting.
Exit status 1 when there are errors, so it can gate a pipeline.
"""
from __future__ import annotations

import argparse

from core.records import read_sft
from sft.data import check_rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rlhf data check", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="SFT data: JSONL, JSON, CSV, Parquet or a save_to_disk directory")
    ap.add_argument("--val", help="validation file to check for leakage against")
    ap.add_argument("--model", help="model/tokenizer directory, to count tokens for the overlong check")
    ap.add_argument("--max_length", type=int, default=256, help="token limit per row (with --model)")
    args = ap.parse_args(argv)

    rows = read_sft(args.file)  # raises DataError naming file:line for malformed rows
    val = read_sft(args.val) if args.val else None
    count = None
    if args.model:
        from core.models import load_tokenizer
        from sft.train import token_counter

        count = token_counter(load_tokenizer(args.model))
    report = check_rows(rows, val_rows=val, count_tokens=count, max_tokens=args.max_length if count else None)
    print(report.format())
    return 0 if report.ok else 1
