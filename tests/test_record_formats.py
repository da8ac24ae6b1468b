"""Files the readers cannot decode are DataErrors naming file:line; a problem that many rows share
is reported once with a count."""
import json

import pytest

from core.records import DataError, read_preferences, read_prompts, read_sft


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- unreadable files

def test_non_utf8_lines_are_named(tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_bytes(b'{"prompt": "ok", "chosen": "a", "rejected": "b"}\n{"prompt": "caf\xe9", "chosen": "a", '
                   b'"rejected": "b"}\n')
    with pytest.raises(DataError) as e:
        read_preferences(jl)
    assert e.value.problems == [f"{jl}:2: (row): not UTF-8 text (byte 0xe9 at column 16); save the file as UTF-8"]
    js = tmp_path / "p.json"
    js.write_bytes(b'[\n{"prompt": "a"},\n{"prompt": "\xff"}\n]')
    with pytest.raises(DataError, match=rf"{js}:3: \(row\): not UTF-8 text \(byte 0xff at column 13\)"):
        read_prompts(js)
    cs = tmp_path / "p.csv"
    cs.write_bytes(b"prompt,completion\nhi,there\n\x93quoted\x94,x\n")
    with pytest.raises(DataError) as e:
        read_sft(cs)
    assert e.value.problems == [f"{cs}:3: (row): not UTF-8 text (byte 0x93 at column 1); save the file as UTF-8"]


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes("\ufeffprompt,completion\nhi,there\n".encode())
    assert read_sft(f)[0]["completion"][0]["content"] == "there"


def test_corrupt_parquet_is_a_data_error(tmp_path):
    f = tmp_path / "d.parquet"
    f.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError) as e:
        read_preferences(f)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(f"{f}: not a readable Parquet file (")


def test_a_problem_many_rows_share_is_shown_once_with_a_count(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a"}] * 72 + [{"prompt": "q", "chosen": "a",
                                                                                "rejected": "b", "n_votes": 0}])
    with pytest.raises(DataError) as e:
        read_preferences(f)
    assert len(e.value.problems) == 73
    assert e.value.grouped == [f"rejected: missing — 72 rows (first: {f}:1, {f}:2, {f}:3, ...)",
                               f"{f}:73: n_votes: must be a positive integer, got 0"]
    assert str(e.value).splitlines()[1:] == [f"  {g}" for g in e.value.grouped]
