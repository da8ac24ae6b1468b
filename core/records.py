"""Record types and their readers: one definition, used by every stage.

A reader loads JSONL, JSON, CSV, Parquet or a `datasets` directory saved with `save_to_disk`
(core/rowfiles.py), validates every row and raises a DataError listing each bad row as
`file:line: field: problem`. Nothing is skipped silently: a run stops before training.

Every TRL dataset format is read, standard (strings) and conversational (message lists):
  SFT          `messages`, or `prompt` + `completion`       → {"prompt": [...], "completion": [...]}
  prompt-only  `prompt`                                     → {"id", "prompt": [...], "tags"}
  preference   `prompt` + `chosen` + `rejected`, or only `chosen` + `rejected` with the prompt
               implicit in both (the longest shared prefix becomes the prompt)
                                                            → {"prompt": [...], "chosen": str, ...}
A prompt is always a message list inside (core/prompts.py): a string prompt becomes one user
message, and a system prompt or earlier turns stay in it. A preference response is the text of
one assistant message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .prompts import (ROLES, Messages, as_messages, is_plain, prompt_key, prompt_text,  # noqa: F401
                      prompt_value, split_shared_prompt)
from .rowfiles import (MAX_ERRORS_SHOWN, DataError, Problem, RowProblem, group_problems,  # noqa: F401
                       iter_raw_rows, read_rows)

ASPECTS = ("quality", "relevance", "helpfulness", "harmfulness", "correctness", "realism",
           "comprehensibility")


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


def prompt_field(value: Any, key: str = "prompt") -> Messages:
    """A prompt given as a string or as messages → messages ending with the user's turn."""
    if value is None:
        raise RowProblem(key, "missing")
    if not isinstance(value, list):
        return [{"role": "user", "content": _text({key: value}, key)}]
    msgs = _messages(value, key)
    if msgs[-1]["role"] != "user":
        raise RowProblem(key, f"the last message must be the user's (the one answered), got {msgs[-1]['role']}")
    return msgs


def validate_prompt(row: dict) -> dict:
    """Prompt-only row: `prompt` (string or messages), optional `id` and `tags`."""
    tags = row.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowProblem("tags", "must be a list of strings")
    pid = row.get("id")
    if pid is not None and not isinstance(pid, (str, int)):
        raise RowProblem("id", f"must be a string, got {type(pid).__name__}")
    return {"id": None if pid is None else str(pid), "prompt": prompt_field(row.get("prompt")), "tags": list(tags)}


def response_field(value: Any, key: str, after: str = "") -> str:
    """A preference response: a string, or exactly one assistant message."""
    if value is None:
        raise RowProblem(key, "missing")
    if not isinstance(value, list):
        text = _text({key: value}, key, allow_empty=True)
        if not text.strip():
            raise RowProblem(key, "empty" + after)
        return text
    if not value:
        raise RowProblem(key, "empty" + after)
    msgs = _messages(value, key)
    roles = [m["role"] for m in msgs]
    if roles != ["assistant"]:
        raise RowProblem(key, f"must be the answer alone{after}: one assistant message, got {'/'.join(roles)}")
    return msgs[0]["content"]


def _implicit_prompt(row: dict) -> tuple[Messages, str, str]:
    """TRL's implicit-prompt preference row: the prompt is the prefix chosen and rejected share."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    for key, v in (("chosen", chosen), ("rejected", rejected)):
        if v is None:
            raise RowProblem(key, "missing")
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise RowProblem("rejected", "must be a message list when chosen is one, or both strings")
    if isinstance(chosen, list):
        chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    else:
        chosen, rejected = _text(row, "chosen"), _text(row, "rejected")
    if chosen == rejected:
        raise RowProblem("rejected", "identical to chosen, so no prompt can be told from the answers")
    prompt, c, r = split_shared_prompt(chosen, rejected)
    if not prompt:
        raise RowProblem("prompt", "missing, and chosen and rejected share no beginning to take it from")
    if isinstance(prompt, list) and prompt[-1]["role"] != "user":
        raise RowProblem("prompt", "chosen and rejected differ before the last answer: their shared "
                                   f"beginning ends with the {prompt[-1]['role']}'s message, not the user's")
    after = " after the prompt they share"
    return as_messages(prompt), response_field(c, "chosen", after), response_field(r, "rejected", after)


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
    """Preference pair in TRL's columns (prompt explicit or implicit) plus our annotation fields
    (all optional)."""
    if row.get("prompt") is None:
        prompt, chosen, rejected = _implicit_prompt(row)
    else:
        prompt = prompt_field(row["prompt"])
        chosen, rejected = response_field(row.get("chosen"), "chosen"), response_field(row.get("rejected"), "rejected")
    n_votes = row.get("n_votes")  # None: a pair without vote counts (not from an annotation round)
    if n_votes is not None and (isinstance(n_votes, bool) or not isinstance(n_votes, int) or n_votes < 1):
        raise RowProblem("n_votes", f"must be a positive integer, got {n_votes!r}")
    round_no = row.get("round")  # the annotation round that made the pair (core/rounds.py); None: not said
    if round_no is not None and (isinstance(round_no, bool) or not isinstance(round_no, int) or round_no < 1):
        raise RowProblem("round", f"must be a whole number >= 1, got {round_no!r}")
    return {
        "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "margin": _unit_float(row, "margin", 0.0, -4.0, 4.0),
        "agreement": _unit_float(row, "agreement", 1.0, 0.0, 1.0),
        "n_votes": n_votes,
        "aspects_chosen": _aspects(row, "aspects_chosen"),
        "aspects_rejected": _aspects(row, "aspects_rejected"),
        "item_id": None if row.get("item_id") is None else str(row["item_id"]),
        "round": round_no,
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


def file_row(row: dict) -> dict:
    """A validated row as a stage writes it back to JSONL: the prompt as prompt_value gives it
    (a string for a plain prompt, so files of plain data look as they always did)."""
    return {**row, "prompt": prompt_value(row["prompt"])}
