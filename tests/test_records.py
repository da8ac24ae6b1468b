import json

import pytest

from core.records import DataError, read_preferences, read_prompts, read_sft


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_sft_formats_normalize_to_chat(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [
        {"prompt": "Hi?", "completion": "Hello."},
        {"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Q"},
                      {"role": "assistant", "content": "A"}]},
        {"prompt": [{"role": "user", "content": "Q2"}], "completion": [{"role": "assistant", "content": "A2"}]},
    ])
    rows = read_sft(f)
    assert rows[0]["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "Hello."}]
    assert [m["role"] for m in rows[1]["prompt"]] == ["system", "user"]
    assert rows[1]["completion"][0]["content"] == "A"
    assert [r["meta"]["_format"] for r in rows] == ["prompt_completion_str", "messages", "prompt_completion_chat"]
    assert rows[2]["_source"] == f"{f}:3"


def test_every_bad_row_reported_with_file_line_field(tmp_path):
    f = _jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "completion": "fine"},
        "{not json",
        {"prompt": "no answer"},
        {"prompt": "x", "completion": "   "},
        {"prompt": 3, "completion": "y"},
        {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
    ])
    with pytest.raises(DataError) as e:
        read_sft(f)
    p = e.value.problems
    assert len(p) == 6  # every bad row, not just the first; the good row is not reported
    assert p[0].startswith(f"{f}:2: (row): not valid JSON")
    assert p[1] == f"{f}:3: (row): needs 'prompt' + 'completion' or 'messages' (has prompt)"
    assert p[2] == f"{f}:4: completion: empty"
    assert p[3] == f"{f}:5: prompt: must be a string, got int"
    assert p[4].startswith(f"{f}:6: messages[0].role: must be one of")
    assert p[5] == f"{f}:7: messages: the last message must be the assistant's answer"
    assert "nothing was trained" in str(e.value)


def test_csv_reports_line_numbers(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('prompt,completion\nhello,world\n"multi\nline",\nq,a\n')
    with pytest.raises(DataError) as e:
        read_sft(f)
    assert e.value.problems == [f"{f}:4: completion: empty"]  # the multi-line row ends on line 4


def test_json_parquet_and_saved_dataset(tmp_path):
    import datasets

    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for src in ("d.json", "d.parquet", "saved"):
        got = read_sft(tmp_path / src)
        assert [r["completion"][0]["content"] for r in got] == ["b", "d"], src
    bad = datasets.Dataset.from_list([{"prompt": "a", "completion": ""}])
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"bad:row 1: completion: empty"):
        read_sft(tmp_path / "bad")


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_sft(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown format '.txt'"):
        read_sft(tmp_path / "x.txt")


def test_preferences_validation(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q", "chosen": "good", "rejected": "bad", "margin": 1.5, "agreement": 0.67, "n_votes": 3,
         "aspects_chosen": {"quality": 4}},
        {"prompt": "q", "chosen": "good"},
        {"prompt": "q", "chosen": "good", "rejected": ""},
        {"prompt": "q", "chosen": "a", "rejected": "b", "agreement": 1.5},
        {"prompt": "q", "chosen": "a", "rejected": "b", "aspects_chosen": {"wit": 3}},
    ])
    with pytest.raises(DataError) as e:
        read_preferences(f)
    assert e.value.problems == [
        f"{f}:2: rejected: missing",
        f"{f}:3: rejected: empty",
        f"{f}:4: agreement: must be in [0.0, 1.0], got 1.5",
        f"{f}:5: aspects_chosen.wit: unknown aspect (known: quality, relevance, helpfulness, harmfulness, "
        "correctness, realism, comprehensibility)",
    ]
    good = read_preferences(_jsonl(tmp_path / "ok.jsonl", [
        {"prompt": "q", "chosen": [{"role": "assistant", "content": "A"}], "rejected": "B"}]))
    assert good[0]["chosen"] == "A" and good[0]["margin"] == 0.0 and good[0]["n_votes"] is None


def test_prompts_get_ids_and_tags(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "tags": ["eval"]}, {"id": 7, "prompt": "b"}])
    rows = read_prompts(f)
    assert [(r["id"], r["tags"]) for r in rows] == [("p0", ["eval"]), ("7", [])]


def test_data_errors_survive_pickling(tmp_path):
    """A stage in a worker process (`rlhf loop --jobs 2`) sends its DataError back pickled: the
    message the user reads must be the same, not one problem per character."""
    import pickle

    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a"}) + "\n" for i in range(5)))
    with pytest.raises(DataError) as e:
        read_preferences(f)
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == str(e.value) and again.problems == e.value.problems
    assert str(again).startswith("rejected: missing — 5 rows (first: ")
    assert str(again).endswith("(nothing was trained)")
    told = pickle.loads(pickle.dumps(e.value.told_as("nothing was imported")))
    assert str(told).endswith("(nothing was imported)") and told.problems == e.value.problems
