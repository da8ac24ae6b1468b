"""Prompts as message lists: the one internal form, its text rendering and its identity key.

Inside the project a prompt is a list of {"role", "content"} messages: a plain string prompt
becomes [{"role": "user", "content": text}], so a system prompt and earlier turns travel with
the conversation through every stage. Three views of it:

  prompt_text   what people read and what encoder reward models take: the user's text for a
                one-message prompt (unchanged, so plain prompts keep their text, ids and
                scores), else every message on its own paragraph as "Role: content"
                ("System: Be brief.\\n\\nUser: Hi").
  prompt_key    the identity for grouping and splits (core/split.py): each message's text
                NFKC-normalized, case-folded, whitespace-collapsed and stripped of end
                punctuation ("Hours?" == "hours"), system messages left out (the same question
                under another system prompt is still the same question).
  prompt_value  the prompt as a record field in files we write: the plain string for a
                one-message user prompt (what plain files hold), else the message list.

split_shared_prompt takes the prompt out of a preference pair whose prompt is implicit (TRL's
"implicit prompt" preference format): the longest common prefix of chosen and rejected.
"""
from __future__ import annotations

import unicodedata
from typing import Any

ROLES = ("system", "user", "assistant")
Messages = list[dict[str, str]]


def as_messages(prompt: str | Messages) -> Messages:
    """A prompt in the internal form (a copy; a string becomes one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def is_plain(prompt: str | Messages) -> bool:
    """True for a string or a single user message: a prompt with nothing but the question."""
    return isinstance(prompt, str) or (len(prompt) == 1 and prompt[0]["role"] == "user")


def prompt_text(prompt: str | Messages) -> str:
    """The prompt as plain text (see the module docstring for the rendering)."""
    if isinstance(prompt, str):
        return prompt
    if is_plain(prompt):
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def _strip_punct(text: str) -> str:
    """Strip Unicode punctuation and whitespace at both ends."""
    i, j = 0, len(text)
    while i < j and (text[i].isspace() or unicodedata.category(text[i]).startswith("P")):
        i += 1
    while j > i and (text[j - 1].isspace() or unicodedata.category(text[j - 1]).startswith("P")):
        j -= 1
    return text[i:j]


def normalize_text(text: str) -> str:
    """Casefold, NFKC, collapse whitespace, strip end punctuation: differences people don't read."""
    return _strip_punct(" ".join(unicodedata.normalize("NFKC", text).casefold().split()))


def prompt_key(prompt: str | Messages) -> str:
    """Identity of a prompt for duplicates, grouping and train/validation splits."""
    turns = [m for m in as_messages(prompt) if m["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return normalize_text(turns[0]["content"])
    return "\n".join(f"{m['role']}: {normalize_text(m['content'])}" for m in turns)


def prompt_value(prompt: str | Messages) -> str | Messages:
    """The prompt as written to a record file: a string when it is plain, else the messages."""
    return prompt_text(prompt) if is_plain(prompt) else as_messages(prompt)


def split_shared_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen rest, rejected rest) of an implicit-prompt pair.

    Message lists: the prompt is the longest run of leading messages the two share. Strings:
    the longest common prefix, moved back to the last whitespace inside it so no word is cut
    in two ("The sky is bright" / "The sky is blue" → "The sky is", "bright", "blue"); the
    whitespace at the cut belongs to neither side. The caller checks what is left (an empty
    prompt, an empty or multi-message completion).
    """
    n = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        n += 1
    if isinstance(chosen, list):
        return chosen[:n], chosen[n:], rejected[n:]
    if n < min(len(chosen), len(rejected)):
        # they differ at n: cut at the last whitespace of the shared part, unless it already
        # ends at a word boundary
        at_boundary = (n == 0 or chosen[n - 1].isspace() or
                       (_starts_space(chosen, n) and _starts_space(rejected, n)))
        if not at_boundary:
            n = max((i for i in range(n) if chosen[i].isspace()), default=0)
    return chosen[:n].rstrip(), chosen[n:].lstrip(), rejected[n:].lstrip()


def _starts_space(text: str, i: int) -> bool:
    return i < len(text) and text[i].isspace()
