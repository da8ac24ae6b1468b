"""Tests for sft/data.py: checks, leakage-free split, paraphrase augmentation (no torch)."""
from __future__ import annotations

import json
import random

import pytest

from sft.data import (
    augment_paraphrases,
    check_rows,
    completion_text,
    describe_split,
    prompt_key,
    simple_paraphrase,
    split_train_val,
)


def row(question, answer, line, *, system=None, fmt="messages", file="d.jsonl"):
    prompt = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    return {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": answer}],
        "meta": {"_format": fmt},
        "_source": f"{file}:{line}",
    }


def clean_rows():
    return [row(f"What is the price of item {i}?", f"Item {i} costs ${i}.", i + 1) for i in range(20)]


# ---------------------------------------------------------------- prompt_key

def test_prompt_key_normalizes_case_space_and_end_punctuation():
    a = row("  What are your   opening hours?? ", "x", 1)
    b = row("what are your opening\nhours", "y", 2)
    assert prompt_key(a) == prompt_key(b) == "what are your opening hours"


def test_prompt_key_keeps_roles_and_ignores_system():
    multi = row("hi", "x", 1)
    multi["prompt"] += [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Hours?"}]
    assert prompt_key(multi) == "user: hi\nassistant: hello\nuser: hours"
    # The same question under a system prompt is the same question (matters for leakage).
    assert prompt_key(row("Hours?", "x", 1, system="Be brief.")) == prompt_key(row("hours", "y", 2))
    # Inner punctuation is content: "order #12" differs from "order 12".
    assert prompt_key(row("order #12?", "x", 1)) != prompt_key(row("order 12?", "x", 2))


# ---------------------------------------------------------------- split

def shared_prompt_rows(n_questions=30, answers_per_question=3):
    """Like the demo logs: each question answered several ways, some with different casing."""
    rows, line = [], 1
    for q in range(n_questions):
        for a in range(answers_per_question):
            text = f"Where is my order {q}?" if a % 2 == 0 else f"where is my ORDER {q}"
            rows.append(row(text, f"answer {a} for {q}", line))
            line += 1
    return rows


def test_split_has_no_leakage_when_rows_share_prompts():
    rows = shared_prompt_rows()
    for seed in range(5):
        train, val = split_train_val(rows, val_fraction=0.2, seed=seed)
        assert len(train) + len(val) == 90
        assert {prompt_key(r) for r in train}.isdisjoint({prompt_key(r) for r in val})
        assert describe_split(train, val)["n_shared_prompts"] == 0
        # Whole groups moved: every val prompt has all 3 of its answers in val.
        assert len(val) % 3 == 0
        assert check_rows(train, val_rows=val).get("leakage") is None


def test_split_is_deterministic_and_honours_fraction():
    rows = [row(f"question number {i}", "a", i) for i in range(200)]
    t1, v1 = split_train_val(rows, val_fraction=0.1, seed=7)
    t2, v2 = split_train_val(list(rows), val_fraction=0.1, seed=7)
    _, v3 = split_train_val(rows, val_fraction=0.1, seed=8)
    assert [r["_source"] for r in v1] == [r["_source"] for r in v2]
    assert [r["_source"] for r in t1] == [r["_source"] for r in t2]
    assert [r["_source"] for r in v1] != [r["_source"] for r in v3]
    assert len(v1) + len(t1) == 200 and 10 <= len(v1) <= 30  # 200 prompts at 0.1: sd of the count is 4.2
    # Input order is kept on both sides (traceable back to the file).
    assert [r["_source"] for r in t1] == sorted((r["_source"] for r in t1), key=lambda s: int(s.split(":")[1]))

    grouped = shared_prompt_rows(n_questions=100)  # 300 rows in groups of 3
    _, val = split_train_val(grouped, val_fraction=0.15, seed=0)
    assert len(val) % 3 == 0 and 15 <= len(val) <= 81


def test_split_minimum_and_validation():
    two = [row("a", "x", 1), row("b", "y", 2)]
    train, val = split_train_val(two, val_fraction=0.1)
    assert len(train) == 1 and len(val) == 1
    # However few prompts fall under the fraction, val gets one and train never empties.
    big = [row("a", f"x{i}", i) for i in range(10)] + [row("b", "y", 11), row("b", "z", 12)]
    train, val = split_train_val(big, val_fraction=0.05)
    assert train and val and {prompt_key(r) for r in val}.isdisjoint({prompt_key(r) for r in train})
    assert len(val) in (2, 10) and len(train) == 12 - len(val)
    assert split_train_val([row("a", "x", 1)]) == ([row("a", "x", 1)], [])
    assert split_train_val([]) == ([], [])
    for bad in (0, 0.0, 0.51, 1.0, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            split_train_val(two, val_fraction=bad)
    with pytest.raises(TypeError):
        split_train_val(two, val_fraction="0.1")
    with pytest.raises(ValueError, match="share one prompt"):
        split_train_val([row("Hours?", "9-5", 1), row("hours", "nine to five", 2)])


# ---------------------------------------------------------------- checks

def test_clean_rows_pass():
    report = check_rows(clean_rows(), count_tokens=lambda s: len(s.split()), max_tokens=100)
    assert report.ok and report.findings == []
    assert report.format().endswith("OK")


def test_exact_duplicates_counted_with_locations():
    rows = clean_rows()
    rows.append(row("what is the price of item 3", "Item 3 costs $3", 21))  # same after normalization
    rows.append(row("What is the price of item 3?", "Item 3 costs $3.", 22))
    rows.append(row("What is the price of item 5?", "Item 5 costs $5.", 23))
    report = check_rows(rows)
    dup = report.get("duplicate")
    assert dup is not None and dup.level == "warning" and dup in report.warnings
    assert dup.count == 3  # redundant copies: 2 extra of item 3, 1 extra of item 5
    assert len(dup.details) == 2
    assert dup.details[0]["locations"] == ["d.jsonl:4", "d.jsonl:21", "d.jsonl:22"]
    assert dup.details[1]["locations"] == ["d.jsonl:6", "d.jsonl:23"]
    assert set(dup.locations) == {"d.jsonl:4", "d.jsonl:21", "d.jsonl:22", "d.jsonl:6", "d.jsonl:23"}
    assert report.ok  # duplicates warn, they do not stop training
    assert report.get("contradiction") is None


def test_contradictions_are_info_with_answer_counts():
    rows = clean_rows() + [
        row("What is the price of item 1?", "It is free.", 30),
        row("what is the price of item 1", "Sorry, no idea.", 31),
        row("What is the price of item 2?", "About two dollars.", 32),
    ]
    report = check_rows(rows)
    c = report.get("contradiction")
    assert c is not None and c in report.info and report.ok
    assert c.count == 2
    assert [(d["prompt"], d["n_answers"]) for d in c.details] == [
        ("what is the price of item 1", 3),
        ("what is the price of item 2", 2),
    ]
    assert c.details[0]["locations"] == ["d.jsonl:2", "d.jsonl:30", "d.jsonl:31"]
    assert "up to 3" in c.message
    assert "3 answers at d.jsonl:2, d.jsonl:30, d.jsonl:31" in report.format()


def test_planted_leakage_is_an_error_naming_both_sides():
    train = clean_rows()
    val = [row("WHAT is the price of item 7", "different answer", 1, file="v.jsonl"),
           row("A question only in val", "a", 2, file="v.jsonl")]
    report = check_rows(train, val_rows=val)
    leak = report.get("leakage")
    assert not report.ok and leak in report.errors
    assert leak.count == 1
    assert leak.details == [{"prompt": "what is the price of item 7",
                             "train": ["d.jsonl:8"], "val": ["v.jsonl:1"]}]
    assert leak.locations == ["d.jsonl:8", "v.jsonl:1"]


def test_empty_rows_are_errors_naming_source():
    rows = clean_rows()
    rows[4]["completion"][0]["content"] = "   \n"
    rows[9]["prompt"][0]["content"] = ""
    report = check_rows(rows)
    assert not report.ok
    assert report.get("empty_completion").locations == ["d.jsonl:5"]
    assert report.get("empty_prompt").locations == ["d.jsonl:10"]
    text = report.format()
    assert "[ERROR] empty_completion" in text and "d.jsonl:5" in text


def test_overlong_warning_then_error_above_one_percent():
    count_words = lambda s: len(s.split())  # noqa: E731 - stands in for a tokenizer
    rows = [row(f"question {i}", "short answer", i) for i in range(200)]
    rows[10] = row("question ten " + "word " * 50, "short", 11)
    report = check_rows(rows, count_tokens=count_words, max_tokens=20)
    over = report.get("overlong")
    assert over.level == "warning" and over.locations == ["d.jsonl:11"] and report.ok
    assert over.examples == ["d.jsonl:11: 53 tokens"]  # "question ten" 2 + 50 "word" + "short" 1
    rows[20] = row("q", "long " * 30, 21)
    rows[30] = row("q2", "long " * 30, 31)  # 3 of 200 = 1.5% > 1%
    report = check_rows(rows, count_tokens=count_words, max_tokens=20)
    assert report.get("overlong").level == "error" and not report.ok
    assert report.get("overlong").count == 3
    with pytest.raises(ValueError, match="count_tokens"):
        check_rows(rows, max_tokens=20)


def test_inconsistent_formatting_detected():
    rows = clean_rows()
    rows[0]["meta"]["_format"] = "prompt_completion_str"
    rows[1]["meta"]["_format"] = "prompt_completion_str"
    rows[2]["completion"][0]["content"] = "Item 2 costs $2.\n"
    rows[3]["completion"][0]["content"] = "Line one\r\nLine two"
    rows[4]["prompt"].insert(0, {"role": "system", "content": "You are a shop assistant."})
    rows[5]["completion"][0]["role"] = "user"
    rows[6]["prompt"].append({"role": "user", "content": "and again?"})  # user, user
    report = check_rows(rows)
    assert report.ok  # formatting problems warn
    mixed = report.get("format.mixed_formats")
    assert mixed.count == 2 and mixed.locations == ["d.jsonl:1", "d.jsonl:2"]
    assert "messages: 18, prompt_completion_str: 2" in mixed.message
    assert report.get("format.whitespace").locations == ["d.jsonl:3"]
    assert report.get("format.line_endings").locations == ["d.jsonl:4"]
    sys_f = report.get("format.system_prompt")
    assert sys_f.locations == ["d.jsonl:5"] and "system prompt in 1 row, absent in 19" in sys_f.message
    roles = report.get("format.roles")
    assert roles.locations == ["d.jsonl:6", "d.jsonl:7"]
    assert "completion is not one assistant message: user" in roles.examples[0]
    assert "do not alternate" in roles.examples[1]


def test_report_format_and_to_dict():
    rows = clean_rows() + [row(f"What is the price of item {i}?", "dup", 100 + i) for i in range(5)]
    rows += [row(f"What is the price of item {i}?", "dup", 200 + i) for i in range(5)]
    rows[0]["completion"][0]["content"] = ""
    report = check_rows(rows)
    text = report.format()
    assert text.splitlines()[0] == "SFT data check: 30 rows, 1 errors, 1 warnings, 1 info"
    dup_line = next(line for line in text.splitlines() if line.startswith("    at d.jsonl:100"))
    assert dup_line.count("d.jsonl:") == 3 and "(+7 more)" in dup_line  # 3 of 10 locations shown
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["n_rows"] == 30
    assert d["errors"][0]["check"] == "empty_completion"
    assert d["warnings"][0]["count"] == 5


# ---------------------------------------------------------------- augmentation

QUESTIONS = [
    "Hi, can you tell me what are your opening hours?",
    "What is the return policy?",
    "I want to return my lamp",
    "How do I track my order?",
    "Do you know when my parcel arrives?",
]


def test_augment_keeps_completions_and_never_duplicates():
    rows = [row(q, f"answer {i}", i + 1) for i, q in enumerate(QUESTIONS)]
    out = augment_paraphrases(rows, simple_paraphrase, n_variants=3, seed=0)
    variants = [r for r in out if r["meta"].get("augmented")]
    assert [r for r in out if not r["meta"].get("augmented")] == rows
    assert len(variants) >= len(rows)  # at least one variant per question in practice
    keys = [prompt_key(r) for r in out]
    assert len(keys) == len(set(keys))  # no variant equals an original or another variant
    by_source = {r["_source"]: r for r in rows}
    for v in variants:
        assert v["_source"].endswith(" (paraphrase)")
        orig = by_source[v["_source"].removesuffix(" (paraphrase)")]
        assert completion_text(v) == completion_text(orig)
        assert prompt_key(v) != prompt_key(orig)
    assert all("augmented" not in r["meta"] for r in rows)  # inputs untouched


def test_augment_is_deterministic_and_respects_val():
    rows = [row(q, f"answer {i}", i + 1) for i, q in enumerate(QUESTIONS)]
    a = augment_paraphrases(rows, simple_paraphrase, n_variants=2, seed=3)
    b = augment_paraphrases(rows, simple_paraphrase, n_variants=2, seed=3)
    assert a == b
    # A paraphraser that always maps to a val prompt must produce nothing.
    val = [row("What is our secret?", "x", 1, file="v.jsonl")]
    out = augment_paraphrases(rows, lambda t, rng: "what is our secret", n_variants=2, val_rows=val)
    assert out == rows
    # Identity paraphrases are skipped, never duplicated.
    assert augment_paraphrases(rows, lambda t, rng: t.upper() + "?", n_variants=2) == rows
    assert augment_paraphrases(rows, simple_paraphrase, n_variants=0) == rows


def test_augment_only_last_user_message_changes():
    r = row("first question", "x", 1, system="Be kind.")
    r["prompt"] += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]
    out = augment_paraphrases([r], lambda t, rng: t + " please", n_variants=1)
    assert len(out) == 2
    assert [m["content"] for m in out[1]["prompt"]] == ["Be kind.", "first question", "ok", "second please"]


def test_simple_paraphrase_rules_and_determinism():
    text = "Hi, can you tell me what are your opening hours?"
    seen = {simple_paraphrase(text, random.Random(s)) for s in range(40)}
    assert "Could you tell me what're your opening hours?" in seen
    assert "Hey there, can you tell me what are your opening hours" in seen
    assert all(not s.startswith("Hi, hi") for s in seen)
    assert simple_paraphrase(text, random.Random(5)) == simple_paraphrase(text, random.Random(5))
    # "I" stays capitalized after an opener.
    outs = {simple_paraphrase("I want to return it", random.Random(s)) for s in range(40)}
    assert all("i want" not in o and "i'd" not in o for o in outs)
    assert "Hello, I'd like to return it" in outs
