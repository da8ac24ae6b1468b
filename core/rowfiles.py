"""Rows from data files, and the errors that name where a bad row is.

iter_raw_rows reads JSONL, JSON, CSV, Parquet or a `datasets` directory saved with
`save_to_disk`. Text formats are decoded and parsed with the standard library so an error can
name its line: a line that is not UTF-8 or not valid JSON becomes a RowProblem at that line and
the other rows are still read. Parquet files and `save_to_disk` directories go through the
`datasets` library and are located by row number; a file it cannot open is a DataError naming it.

read_rows validates every row and raises one DataError listing every bad one; DataError's message
shows each kind of problem once with a count and the first locations.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import UserError

MAX_ERRORS_SHOWN = 20
FIRST_SHOWN = 3  # locations listed for a problem that many rows share


@dataclass(frozen=True)
class Problem:
    """One bad field of one row."""
    loc: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.field}: {self.problem}"


def group_problems(problems: list[str | Problem]) -> list[str]:
    """One line per kind of problem, in order of first appearance: a problem of one row as
    'file:line: field: problem', one that n rows share as
    'field: problem — n rows (first: file:3, file:4, file:9, ...)'."""
    groups: dict[Any, list] = {}
    for p in problems:
        groups.setdefault((p.field, p.problem) if isinstance(p, Problem) else p, []).append(p)
    lines = []
    for key, items in groups.items():
        if len(items) == 1 or not isinstance(items[0], Problem):
            lines += [str(p) for p in items]
            continue
        field, problem = key
        first = ", ".join(p.loc for p in items[:FIRST_SHOWN]) + (", ..." if len(items) > FIRST_SHOWN else "")
        lines.append(f"{field}: {problem} — {len(items)} rows (first: {first})")
    return lines


class DataError(UserError):
    """Bad input rows. `problems` holds one 'file:line: field: problem' string per problem."""

    def __init__(self, problems: list[str | Problem], n_rows: int | None = None,
                 outcome: str = "nothing was trained"):
        """outcome: what the user is told did not happen (a stage trains; an import stores)."""
        self.problems = [str(p) for p in problems]
        self.n_rows = n_rows
        self.outcome = outcome
        self._given = list(problems)
        self.grouped = group_problems(problems)
        shown = self.grouped[:MAX_ERRORS_SHOWN]
        more = len(self.grouped) - len(shown)
        head = f"{len(problems)} problem(s) in the input data"
        if n_rows is not None:
            head += f" ({n_rows} rows read)"
        if len(self.grouped) == 1:  # one kind of problem: one line, as every user error is
            super().__init__(f"{self.grouped[0]} ({outcome})")
            return
        lines = [head + f"; fix them and run again ({outcome}):"] + [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more kinds of problem")
        super().__init__("\n".join(lines))

    def told_as(self, outcome: str) -> "DataError":
        """The same problems, ending in another outcome ("nothing was imported")."""
        return type(self)(self._given, self.n_rows, outcome)

    def __reduce__(self):
        # rebuilt from its rows' problems, not its message: a stage that runs in a worker
        # process (`rlhf loop --jobs 2`) sends its error back pickled
        return type(self), (self._given, self.n_rows, self.outcome)


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
        yield from _iter_parquet(path)
    else:
        raise DataError([f"{path}: unknown format '{suffix}' (use .jsonl, .json, .csv, .parquet "
                         "or a datasets directory saved with save_to_disk)"])


def _not_utf8(e: UnicodeDecodeError, column: int) -> RowProblem:
    return RowProblem("(row)", f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at column {column}); "
                               "save the file as UTF-8")


def _decode_lines(data: bytes) -> Iterator[tuple[int, str | RowProblem]]:
    """(line number, text or RowProblem) per line; a leading byte-order mark is dropped."""
    for n, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            yield n, _not_utf8(e, e.start + 1)


def _iter_jsonl(path: Path):
    for n, line in _decode_lines(path.read_bytes()):
        if isinstance(line, RowProblem):
            yield f"{path}:{n}", line
            continue
        if not line.strip():
            continue
        try:
            yield f"{path}:{n}", json.loads(line.rstrip("\r\n"))  # a truncated row: the column where it ends
        except json.JSONDecodeError as e:
            yield f"{path}:{n}", RowProblem("(row)", f"not valid JSON: {e.msg} at column {e.colno}")


def _decode_whole(path: Path) -> tuple[str | None, list[tuple[str, RowProblem]]]:
    """The file's text, or None and a problem for every line that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return None, [(f"{path}:{n}", line) for n, line in _decode_lines(data) if isinstance(line, RowProblem)]


def _iter_json(path: Path):
    text, bad = _decode_whole(path)
    if text is None:
        yield from bad
        return
    try:
        data = json.loads(text)
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
    text, bad = _decode_whole(path)
    if text is None:  # rows may span lines: no row is parsed until every line decodes
        yield from bad
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
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


def _iter_parquet(path: Path):
    import datasets
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(str(path)).close()  # a file that is not Parquet fails here, before datasets logs it
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    except Exception as e:  # noqa: BLE001 - pyarrow and datasets raise several types here
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise DataError([f"{path}: not a readable Parquet file ({reason})"]) from e
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


def read_rows(path: str | Path, validate: Callable[[dict], dict], outcome: str = "nothing was trained") -> list[dict]:
    """Read and validate every row; raise one DataError listing all bad rows (`outcome`: what did
    not happen, as DataError says it).

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
            problems.append(Problem(loc, e.field, e.problem))
            continue
        row["_source"] = loc
        rows.append(row)
    if problems:
        raise DataError(problems, n, outcome=outcome)
    if not rows:
        raise DataError([f"{path}: no rows"], outcome=outcome)
    return rows
