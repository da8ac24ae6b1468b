"""The loop's prompt file: the user's prompts, each tagged `pref` (preference collection and PPO)
or `eval` (held out for evaluation), written to <run>/data/prompts.jsonl in the run-directory
layout every stage reads. The rows are kept as given (a plain string or a list of messages)."""
from __future__ import annotations

from pathlib import Path

from core.config import UserError
from core.io import write_jsonl
from core.prompts import prompt_key
from core.records import iter_raw_rows, read_prompts, RowProblem
from core.split import split_by_prompt


def write_tagged_prompts(src: str | Path, out: Path, fraction: float, max_eval: int, seed: int) -> dict:
    """Tag each prompt `eval` or `pref` by core.split's rule (the one every stage holds prompts out
    by), at most max_eval prompts held out."""
    read_prompts(src)  # every row checked first: a bad row stops the loop with file:line
    rows = []
    for loc, row in iter_raw_rows(src):
        if isinstance(row, RowProblem):  # already reported by read_prompts; never reached
            raise UserError(f"{loc}: {row}")
        rows.append(dict(row))
    if len({prompt_key(r["prompt"]) for r in rows}) < 2:
        raise UserError(f"{src}: {len(rows)} prompt(s) are too few to hold any out for evaluation")
    pref, held = split_by_prompt(rows, fraction, seed, max_held_out=max_eval)
    eval_ids = {id(r) for r in held}
    tagged = [{**row, "tags": ["eval" if id(row) in eval_ids else "pref"]} for row in rows]
    write_jsonl(out, tagged)
    return {"prompts": len(tagged), "eval": len(held), "pref": len(pref), "path": str(out)}
