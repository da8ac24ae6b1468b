"""The loop's prompt file: the user's prompts, each tagged `pref` (preference collection and PPO)
or `eval` (held out for evaluation), written to <run>/data/prompts.jsonl in the run-directory
layout every stage reads. The rows are kept as given (a plain string or a list of messages)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.config import UserError
from core.io import write_jsonl
from core.records import iter_raw_rows, read_prompts, RowProblem


def held_out(key: str, seed: int, fraction: float) -> bool:
    """A prompt's side of the split, from a hash of its text and the seed: the same prompt is
    held out in every run with this seed, whatever else the file holds."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def write_tagged_prompts(src: str | Path, out: Path, fraction: float, max_eval: int, seed: int) -> dict:
    read_prompts(src)  # every row checked first: a bad row stops the loop with file:line
    rows = []
    for loc, row in iter_raw_rows(src):
        if isinstance(row, RowProblem):  # already reported by read_prompts; never reached
            raise UserError(f"{loc}: {row}")
        row = dict(row)
        key = json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)
        rows.append((key, row))
    eval_keys = sorted({k for k, _ in rows if held_out(k, seed, fraction)})[:max_eval]
    if not eval_keys and rows:  # a tiny file: hold out one prompt all the same
        eval_keys = [min(k for k, _ in rows)]
    if len(eval_keys) == len({k for k, _ in rows}):
        raise UserError(f"{src}: {len(rows)} prompt(s) are too few to hold any out for evaluation")
    chosen = set(eval_keys)
    tagged = [{**row, "tags": ["eval" if key in chosen else "pref"]} for key, row in rows]
    write_jsonl(out, tagged)
    n_eval = sum(1 for r in tagged if r["tags"] == ["eval"])
    return {"prompts": len(tagged), "eval": n_eval, "pref": len(tagged) - n_eval, "path": str(out)}
