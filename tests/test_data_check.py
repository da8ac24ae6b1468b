"""`rlhf data check FILE`: the kind told from the columns, each kind of problem once with a count,
exit status 2 on errors, one summary."""
import json

import pytest

from cli.main import main as rlhf
from sft.check_cli import detect_kind

U = {"role": "user", "content": "Kettles?"}


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_kind_from_columns(tmp_path):
    assert detect_kind(_jsonl(tmp_path / "a.jsonl", [{"chosen": "x y", "rejected": "x z"}])) == "preference"
    assert detect_kind(_jsonl(tmp_path / "b.jsonl", [{"messages": [U]}])) == "sft"
    assert detect_kind(_jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "completion": "c"}])) == "sft"
    assert detect_kind(_jsonl(tmp_path / "d.jsonl", [{"prompt": [U], "tags": ["eval"]}])) == "prompts"
    assert rlhf(["data", "check", str(_jsonl(tmp_path / "e.jsonl", [{"text": "t"}]))]) == 2


def test_a_missing_or_empty_file_is_one_line(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    for name, said in (("nope.jsonl", "file not found"), ("empty.jsonl", "no rows")):
        assert rlhf(["data", "check", str(tmp_path / name)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"rlhf data: {tmp_path / name}: {said}\n"


def test_each_kind_of_problem_once_with_a_count(tmp_path, capsys):
    rows = [{"prompt": "q1", "chosen": "a", "rejected": "b"}, {"prompt": "q2", "chosen": "a", "rejected": "b"}]
    rows += [{"prompt": f"p{i}", "chosen": "good"} for i in range(72)]
    rows += [{"prompt": "q3", "chosen": "a", "rejected": "b", "agreement": 2}, "{oops"]
    f = _jsonl(tmp_path / "f.jsonl", rows)
    assert rlhf(["data", "check", str(f)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"preference data check: {f}: 76 rows read, 74 with problems, 3 kind(s) of problem",
        f"  rejected: missing — 72 rows (first: {f}:3, {f}:4, {f}:5, ...)",
        f"  {f}:75: agreement: must be in [0.0, 1.0], got 2",
        f"  {f}:76: (row): not valid JSON: Expecting property name enclosed in double quotes at column 2",
    ]


def test_implicit_prompt_preferences_pass_and_findings_are_reported(tmp_path, capsys):
    conv = [{"role": "system", "content": "Be brief."}, U]
    rows = [{"chosen": conv + [{"role": "assistant", "content": f"Yes {i}."}],
             "rejected": conv + [{"role": "assistant", "content": "No."}]} for i in range(3)]
    rows += [{"prompt": "Q?", "chosen": "A", "rejected": "A"},  # identical
             {"prompt": "R?", "chosen": "x", "rejected": "y"}, {"prompt": "R?", "chosen": "x", "rejected": "y"},
             {"prompt": "R?", "chosen": "y", "rejected": "x"}]
    f = _jsonl(tmp_path / "pairs.jsonl", rows)
    assert rlhf(["data", "check", str(f)]) == 0  # warnings and info only
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "preference data check: 7 rows, 0 errors, 2 warnings, 2 info"
    assert "[WARNING] identical: 1 pair(s) whose chosen and rejected are the same text" in out
    assert "[WARNING] duplicate: 1 redundant copies in 1 group(s) of identical pairs" in out
    assert "[INFO] both_ways: 1 pair(s) of responses preferred one way in one row and the other way" in out
    assert "[INFO] conversations: 3 pairs have a system prompt or earlier turns" in out

    val = _jsonl(tmp_path / "val.jsonl", [{"prompt": [U], "chosen": "Yes.", "rejected": "No."}])
    assert rlhf(["data", "check", str(f), "--val", str(val)]) == 2  # the conversation's question is in val
    assert "[ERROR] leakage: 1 prompt(s) in both the file and the validation file" in capsys.readouterr().out


def test_prompt_files(tmp_path, capsys):
    f = _jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "prompt": "Open?", "tags": ["pref"]},
                                            {"id": "a", "prompt": [{"role": "system", "content": "S"}, U]},
                                            {"prompt": " open? ", "tags": ["eval"]}])
    assert rlhf(["data", "check", str(f)]) == 2
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "prompt data check: 3 rows, 1 errors, 1 warnings, 2 info"
    assert "[ERROR] duplicate_id: 1 row(s) repeat the id of another (1 id(s))" in out
    assert "[WARNING] duplicate: 1 redundant copies in 1 group(s) of the same prompt" in out
    assert "[INFO] tags: rows per tag: eval 1, pref 1" in out


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b'{"prompt": "ok"}\n{"prompt": "\xe9t\xe9"}\n'])
def test_unreadable_text_is_one_line_per_problem(tmp_path, capsys, content):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    assert rlhf(["data", "check", str(f), "--kind", "prompts"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"prompt data check: {f}: ")
    assert "not UTF-8 text" in out[1] and out[1].startswith(f"  {f}:")


def test_sft_errors_exit_2(tmp_path, capsys):
    f = _jsonl(tmp_path / "sft.jsonl", [{"prompt": "a", "completion": "b"}])
    val = _jsonl(tmp_path / "val.jsonl", [{"prompt": "A", "completion": "c"}])
    assert rlhf(["data", "check", str(f), "--val", str(val)]) == 2
    assert capsys.readouterr().out.startswith("SFT data check: 1 rows, 1 errors")


def test_token_counts_need_a_tokenizer_with_a_chat_template(tmp_path, capsys):
    """--model with a tokenizer that has no chat template: one line naming the option, exit 2
    (the token counts include the template's own tokens)."""
    from demo.tokenizer import train_tokenizer

    tok = train_tokenizer([f"kettle {i} ships in {i % 5} days" for i in range(100)], vocab_size=300)
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "tok")
    f = _jsonl(tmp_path / "sft.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}])
    assert rlhf(["data", "check", str(f), "--model", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--model {tmp_path / 'tok'}: its tokenizer has no chat template" in err[0], err
    assert "pass --chat_template FILE.jinja" in err[0]

    # the fix it names: the template file the stages take, and the rows are counted with it
    from own_model import QWEN_TEMPLATE

    (tmp_path / "chat.jinja").write_text(QWEN_TEMPLATE)
    assert rlhf(["data", "check", str(f), "--model", str(tmp_path / "tok"), "--chat_template",
                 str(tmp_path / "chat.jinja"), "--max_length", "3"]) == 2  # "a" + "b" + the template > 3
    out = capsys.readouterr().out
    assert "[ERROR] overlong: 2 rows (100.0%) over max_tokens=3" in out and f"{f}:1: 24 tokens" in out
