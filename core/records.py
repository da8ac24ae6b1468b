"""Record types and their readers: one definition, used by every stage.

A reader loads JSONL, JSON, CSV, Parquet or a `datasets` directory saved with `save_to_disk`,
validates every row and raises a DataError listing each bad row as `file:line: field: problem`.
Nothing is skipped silently: a run stops before training. Text formats are parsed with the
standard library so errors can name the line; Parquet and `save_to_disk` directories go through
the `datasets` library and are located by row number.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import UserError

ROLES = ("system", "user", "assistant")
ASPECTS = ("quality", "relevance", "helpfulness", "harmfulness", "correctness", "realism",
           "comprehensibility")
MAX_ERRORS_SHOWN = 20


class DataError(UserError):
    """Bad input rows. `problems` holds one 'file:line: field: problem' string per problem."""

    def __init__(self, problems: list[str], n_rows: int | None = None):
        self.problems = problems
        shown = problems[:MAX_ERRORS_SHOWN]
        more = len(problems) - len(shown)
        head = f"{len(problems)} problem(s) in the input data"
        if n_rows is not None:
            head += f" ({n_rows} rows read)"
        lines = [head + "; fix them and run again (nothing was trained):"] + [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class RowProblem(ValueError):
    """Raised by a row validator; the reader adds the file:line location."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


# ---------------------------------------------------------------- raw row iteration

def iter_raw_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, row) for each row of a file or dataset directory.

    A row that cannot even be parsed is yielded as a RowProblem so the caller reports it
    with the others instead of stopping at the first.
    """
    path = Path(path)
    if not path.exists():
        raise DataError([f"{path}: file not found"])
    if path.is_dir():
        yield from _iter_datasets_dir(path)
        return
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _iter_json(path)
    elif suffix == ".csv":
        yield from _iter_csv(path)
    elif suffix == ".parquet":
        yield from _iter_datasets(path, "parquet")
    else:
        raise DataError([f"{path}: unknown format '{suffix}' (use .jsonl, .json, .csv, .parquet "
                         "or a datasets directory saved with save_to_disk)"])


def _iter_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{n}", RowProblem("(row)", f"not valid JSON: {e.msg} at column {e.colno}")


def _iter_json(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        yield f"{path}:{e.lineno}", RowProblem("(file)", f"not valid JSON: {e.msg}")
        return
    if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list):
        yield f"{path}:1", RowProblem("(file)", "expected a JSON list of rows")
        return
    for i, row in enumerate(data):
        yield f"{path}:row {i + 1}", row


def _iter_csv(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            # line_num is the line where this row ended (multi-line quoted fields)
            yield f"{path}:{reader.line_num}", {k: _csv_value(v) for k, v in row.items()}


def _csv_value(v: str | None) -> Any:
    """CSV cells are text; a cell holding a JSON list/dict (chat messages, tags) is decoded."""
    if v and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _iter_datasets(path: Path, builder: str):
    import datasets

    ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    for i, row in enumerate(ds):
        yield f"{path}:row {i + 1}", row


def _iter_datasets_dir(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises several types here
        raise DataError([f"{path}: not a dataset saved with save_to_disk ({e})"]) from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError([f"{path}: DatasetDict without a 'train' split (has {list(ds)})"])
        ds = ds["train"]
    for i, row in enumerate(ds):
        yield f"{path}:row {i + 1}", row


def read_rows(path: str | Path, validate: Callable[[dict], dict]) -> list[dict]:
    """Read and validate every row; raise one DataError listing all bad rows.

    Each returned row carries `_source` = 'file:line' so later checks can point at it.
    """
    rows, problems, n = [], [], 0
    for loc, raw in iter_raw_rows(path):
        n += 1
        try:
            if isinstance(raw, RowProblem):
                raise raw
            if not isinstance(raw, dict):
                raise RowProblem("(row)", f"expected an object, got {type(raw).__name__}")
            row = validate(raw)
        except RowProblem as e:
            problems.append(f"{loc}: {e.field}: {e.problem}")
            continue
        row["_source"] = loc
        rows.append(row)
    if problems:
        raise DataError(problems, n)
    if not rows:
        raise DataError([f"{path}: no rows"])
    return rows


# ---------------------------------------------------------------- field checks

def _text(row: dict, key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    if key not in row or row[key] is None:
        if required:
            raise RowProblem(key, "missing")
        return None
    v = row[key]
    if not isinstance(v, str):
        raise RowProblem(key, f"must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise RowProblem(key, "empty")
    return v


def _messages(value: Any, key: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowProblem(key, "must be a non-empty list of {role, content} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RowProblem(f"{key}[{i}]", "must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise RowProblem(f"{key}[{i}].role", f"must be one of {', '.join(ROLES)}, got {m['role']!r}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise RowProblem(f"{key}[{i}].content", "empty or not a string")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _meta(row: dict) -> dict:
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise RowProblem("meta", f"must be an object, got {type(meta).__name__}")
    return dict(meta)


def _unit_float(row: dict, key: str, default: float | None, lo: float = -1e9, hi: float = 1e9):
    v = row.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RowProblem(key, f"must be a number, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise RowProblem(key, f"must be in [{lo}, {hi}], got {v}")
    return float(v)


# ---------------------------------------------------------------- record validators

def validate_sft(row: dict) -> dict:
    """SFT example in any of TRL's formats → one conversational form:
    {"prompt": [messages...], "completion": [assistant message], "meta": {..., "_format": ...}}."""
    meta = _meta(row)
    if "messages" in row and row["messages"] is not None:
        msgs = _messages(row["messages"], "messages")
        if msgs[-1]["role"] != "assistant":
            raise RowProblem("messages", "the last message must be the assistant's answer")
        if len(msgs) < 2:
            raise RowProblem("messages", "needs at least one prompt message before the answer")
        prompt, completion, fmt = msgs[:-1], msgs[-1:], "messages"
    elif "prompt" in row and "completion" in row:
        p, c = row["prompt"], row["completion"]
        if isinstance(p, list) or isinstance(c, list):
            prompt, completion, fmt = _messages(p, "prompt"), _messages(c, "completion"), "prompt_completion_chat"
            if any(m["role"] != "assistant" for m in completion):
                raise RowProblem("completion", "chat completion messages must have role 'assistant'")
        else:
            prompt = [{"role": "user", "content": _text(row, "prompt")}]
            completion = [{"role": "assistant", "content": _text(row, "completion")}]
            fmt = "prompt_completion_str"
    else:
        have = ", ".join(sorted(k for k in row if not k.startswith("_"))) or "nothing"
        raise RowProblem("(row)", f"needs 'prompt' + 'completion' or 'messages' (has {have})")
    meta["_format"] = fmt
    return {"prompt": prompt, "completion": completion, "meta": meta}


def validate_prompt(row: dict) -> dict:
    tags = row.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowProblem("tags", "must be a list of strings")
    pid = row.get("id")
    if pid is not None and not isinstance(pid, (str, int)):
        raise RowProblem("id", f"must be a string, got {type(pid).__name__}")
    return {"id": None if pid is None else str(pid), "prompt": _text(row, "prompt"), "tags": list(tags)}


def _response(row: dict, key: str) -> str:
    """A preference response: a string, or a chat list whose last message is the assistant's."""
    v = row.get(key)
    if v is None:
        raise RowProblem(key, "missing")
    if isinstance(v, list):
        return _messages(v, key)[-1]["content"]
    return _text(row, key)


def _aspects(row: dict, key: str) -> dict | None:
    v = row.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise RowProblem(key, "must be an object {aspect: rating}")
    for a, x in v.items():
        if a not in ASPECTS:
            raise RowProblem(f"{key}.{a}", f"unknown aspect (known: {', '.join(ASPECTS)})")
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 1 <= x <= 5:
            raise RowProblem(f"{key}.{a}", f"must be a rating in [1, 5], got {x!r}")
    return {a: float(x) for a, x in v.items()}


def validate_preference(row: dict) -> dict:
    """Preference pair in TRL's columns plus our annotation fields (all optional)."""
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        prompt = _messages(prompt, "prompt")[-1]["content"]
    else:
        prompt = _text(row, "prompt")
    chosen, rejected = _response(row, "chosen"), _response(row, "rejected")
    n_votes = row.get("n_votes")  # None: a pair without vote counts (not from an annotation round)
    if n_votes is not None and (isinstance(n_votes, bool) or not isinstance(n_votes, int) or n_votes < 1):
        raise RowProblem("n_votes", f"must be a positive integer, got {n_votes!r}")
    return {
        "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "margin": _unit_float(row, "margin", 0.0, -4.0, 4.0),
        "agreement": _unit_float(row, "agreement", 1.0, 0.0, 1.0),
        "n_votes": n_votes,
        "aspects_chosen": _aspects(row, "aspects_chosen"),
        "aspects_rejected": _aspects(row, "aspects_rejected"),
        "item_id": None if row.get("item_id") is None else str(row["item_id"]),
    }


def read_sft(path: str | Path) -> list[dict]:
    return read_rows(path, validate_sft)


def read_prompts(path: str | Path) -> list[dict]:
    rows = read_rows(path, validate_prompt)
    for i, r in enumerate(rows):
        r["id"] = r["id"] or f"p{i}"
    return rows


def read_preferences(path: str | Path) -> list[dict]:
    return read_rows(path, validate_preference)


def count_rows(path: str | Path) -> int:
    """Row count for run cards (cheap: no validation)."""
    return sum(1 for _ in iter_raw_rows(path))
