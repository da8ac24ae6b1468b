"""Every TRL dataset format through core/records.py's readers: hand-written files → the exact rows
read, system prompts and earlier turns kept; implicit prompts split off; unreadable files named."""
import json

import pytest

from core.prompts import prompt_key, prompt_text, prompt_value, split_shared_prompt
from core.records import DataError, read_preferences, read_prompts, read_sft

SYS = {"role": "system", "content": "You are the shop's assistant. Be brief."}
U1 = {"role": "user", "content": "Do you sell kettles?"}
A1 = {"role": "assistant", "content": "Yes, three models."}
U2 = {"role": "user", "content": "Which is cheapest?"}
GOOD = {"role": "assistant", "content": "The Basic, at $19."}
BAD = {"role": "assistant", "content": "Kettles boil water."}


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- prompt-only

def test_prompt_only_standard_and_conversational(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Are you open on Sunday?", "tags": ["eval"]},
        {"id": "c1", "prompt": [SYS, U1, A1, U2], "tags": ["pref"]},
        {"prompt": [U1]},
    ])
    rows = read_prompts(f)
    assert rows[0] == {"id": "p0", "prompt": [{"role": "user", "content": "Are you open on Sunday?"}],
                       "tags": ["eval"], "_source": f"{f}:1"}
    assert rows[1]["id"] == "c1" and rows[1]["prompt"] == [SYS, U1, A1, U2]
    assert rows[2]["prompt"] == [U1]


def test_prompt_only_conversation_must_end_with_the_user(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": [U1, A1]}, {"prompt": []}, {"prompt": 7}])
    with pytest.raises(DataError) as e:
        read_prompts(f)
    assert e.value.problems == [
        f"{f}:1: prompt: the last message must be the user's (the one answered), got assistant",
        f"{f}:2: prompt: must be a non-empty list of {{role, content}} messages",
        f"{f}:3: prompt: must be a string, got int",
    ]


# ---------------------------------------------------------------- SFT

def test_sft_messages_and_conversational_prompt_completion_keep_every_turn(tmp_path):
    f = _jsonl(tmp_path / "s.jsonl", [
        {"messages": [SYS, U1, A1, U2, GOOD]},
        {"prompt": [SYS, U1, A1, U2], "completion": [GOOD]},
        {"prompt": "Do you sell kettles?", "completion": "Yes, three models."},
    ])
    rows = read_sft(f)
    assert rows[0]["prompt"] == rows[1]["prompt"] == [SYS, U1, A1, U2]
    assert rows[0]["completion"] == rows[1]["completion"] == [GOOD]
    assert rows[2]["prompt"] == [U1] and rows[2]["completion"] == [A1]
    assert [r["meta"]["_format"] for r in rows] == ["messages", "prompt_completion_chat", "prompt_completion_str"]


# ---------------------------------------------------------------- preference, explicit prompt

def test_conversational_preference_keeps_system_prompt_and_earlier_turns(tmp_path):
    f = _jsonl(tmp_path / "pref.jsonl", [
        {"prompt": [SYS, U1, A1, U2], "chosen": [GOOD], "rejected": [BAD]},
        {"prompt": "Do you sell kettles?", "chosen": " Yes.", "rejected": " No."},
    ])
    rows = read_preferences(f)
    assert rows[0]["prompt"] == [SYS, U1, A1, U2]
    assert (rows[0]["chosen"], rows[0]["rejected"]) == (GOOD["content"], BAD["content"])
    assert rows[1]["prompt"] == [U1] and (rows[1]["chosen"], rows[1]["rejected"]) == (" Yes.", " No.")


def test_explicit_prompt_answer_must_be_one_assistant_message(tmp_path):
    f = _jsonl(tmp_path / "pref.jsonl", [
        {"prompt": [U1], "chosen": [U1, GOOD], "rejected": [BAD]},  # the prompt repeated in chosen
        {"prompt": [SYS], "chosen": [GOOD], "rejected": [BAD]},
    ])
    with pytest.raises(DataError) as e:
        read_preferences(f)
    assert e.value.problems == [
        f"{f}:1: chosen: must be the answer alone: one assistant message, got user/assistant",
        f"{f}:2: prompt: the last message must be the user's (the one answered), got system",
    ]


# ---------------------------------------------------------------- preference, implicit prompt

def test_implicit_prompt_multi_turn_shared_prefix(tmp_path):
    f = _jsonl(tmp_path / "pref.jsonl", [
        {"chosen": [SYS, U1, A1, U2, GOOD], "rejected": [SYS, U1, A1, U2, BAD], "agreement": 0.8},
        {"chosen": [U1, A1], "rejected": [U1, BAD]},
    ])
    rows = read_preferences(f)
    assert rows[0]["prompt"] == [SYS, U1, A1, U2]
    assert (rows[0]["chosen"], rows[0]["rejected"], rows[0]["agreement"]) == (GOOD["content"], BAD["content"], 0.8)
    assert rows[1]["prompt"] == [U1] and (rows[1]["chosen"], rows[1]["rejected"]) == (A1["content"], BAD["content"])


def test_implicit_prompt_standard_strings_cut_at_a_word_boundary(tmp_path):
    f = _jsonl(tmp_path / "pref.jsonl", [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Q: color?\nA: bright", "rejected": "Q: color?\nA: blue"},  # shared "b" stays in the answers
    ])
    rows = read_preferences(f)
    assert (rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"]) == (
        [{"role": "user", "content": "The sky is"}], "blue.", "green.")
    assert (rows[1]["prompt"][0]["content"], rows[1]["chosen"], rows[1]["rejected"]) == (
        "Q: color?\nA:", "bright", "blue")


def test_implicit_prompt_problems_are_named(tmp_path):
    f = _jsonl(tmp_path / "pref.jsonl", [
        {"chosen": [U1, GOOD], "rejected": [U2, BAD]},                 # nothing shared
        {"chosen": [U1, A1, U2, GOOD], "rejected": [U1, BAD, U2, GOOD]},  # differ before the last turn
        {"chosen": "same text", "rejected": "same text"},
        {"chosen": [U1, GOOD], "rejected": "text"},
        {"chosen": "The answer", "rejected": "The answer is longer"},   # nothing left of chosen
        {"chosen": [U1, GOOD, U2], "rejected": [U1, BAD]},
        {"chosen": [U1, A1, U2, GOOD], "rejected": [U1, A1, U1, BAD]},  # the shared part ends with an answer
    ])
    with pytest.raises(DataError) as e:
        read_preferences(f)
    assert e.value.problems == [
        f"{f}:1: prompt: missing, and chosen and rejected share no beginning to take it from",
        f"{f}:2: chosen: must be the answer alone after the prompt they share: one assistant message, "
        "got assistant/user/assistant",
        f"{f}:3: rejected: identical to chosen, so no prompt can be told from the answers",
        f"{f}:4: rejected: must be a message list when chosen is one, or both strings",
        f"{f}:5: chosen: empty after the prompt they share",
        f"{f}:6: chosen: must be the answer alone after the prompt they share: one assistant message, "
        "got assistant/user",
        f"{f}:7: prompt: chosen and rejected differ before the last answer: their shared beginning ends "
        "with the assistant's message, not the user's",
    ]


def test_split_shared_prompt_on_messages_and_strings():
    assert split_shared_prompt([SYS, U1, A1, U2, GOOD], [SYS, U1, A1, U2, BAD]) == ([SYS, U1, A1, U2], [GOOD], [BAD])
    assert split_shared_prompt([U1, A1, U2, GOOD], [U1, BAD]) == ([U1], [A1, U2, GOOD], [BAD])
    assert split_shared_prompt("Hi there. Sure!", "Hi there. No.") == ("Hi there.", "Sure!", "No.")
    assert split_shared_prompt("abc", "abd") == ("", "abc", "abd")


# ---------------------------------------------------------------- the three views of a prompt

def test_prompt_text_key_and_value():
    plain = [{"role": "user", "content": "  Are you OPEN\non Sunday? "}]
    assert prompt_text(plain) == prompt_value(plain) == "  Are you OPEN\non Sunday? "
    assert prompt_key(plain) == prompt_key("  Are you OPEN\non Sunday? ") == "are you open on sunday"
    conv = [SYS, U1, A1, U2]
    assert prompt_text(conv) == ("System: You are the shop's assistant. Be brief.\n\nUser: Do you sell kettles?"
                                 "\n\nAssistant: Yes, three models.\n\nUser: Which is cheapest?")
    assert prompt_value(conv) == conv
    # the system prompt is not part of the identity; the turns and their roles are
    assert prompt_key([SYS, U1]) == prompt_key([U1]) == "do you sell kettles"
    assert prompt_key(conv) == "user: do you sell kettles\nassistant: yes, three models\nuser: which is cheapest"


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
