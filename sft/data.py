"""SFT data checks, the train/validation split, and prompt-paraphrase augmentation.

Pure Python (no torch), so every rule here is unit-tested on hand-made rows. Rows arrive already
parsed and validated in one conversational form:

    {"prompt": [{"role": "system"|"user"|"assistant", "content": str}, ...],
     "completion": [{"role": "assistant", "content": str}],
     "meta": {"_format": "prompt_completion_str" | "prompt_completion_chat" | "messages", ...},
     "_source": "path/to/file.jsonl:12"}

Order of use in the SFT stage (each step's docstring says why the order matters):

    report = check_rows(rows, count_tokens=..., max_tokens=...)   # stop on report.errors
    train, val = split_train_val(rows, val_fraction=0.1, seed=cfg.seed)
    train = augment_paraphrases(train, simple_paraphrase, n_variants=1, val_rows=val)
"""
from __future__ import annotations

import copy
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from core.config import ConfigError
from core.prompts import normalize_text
from core.prompts import prompt_key as core_prompt_key
from core.split import describe_split as core_describe_split, split_by_prompt

log = logging.getLogger(__name__)

Row = dict[str, Any]
ERROR, WARNING, INFO = "error", "warning", "info"
# More than this share of overlong rows is an error: truncation cuts off EOS, and a model
# that rarely sees EOS learns to ramble. A stray long row or two is only worth a warning.
OVERLONG_ERROR_SHARE = 0.01
_N_SHOWN = 3  # example locations per finding in CheckReport.format()


# ------------------------------------------------------------------------- normalization

def prompt_key(row: Row) -> str:
    """The row's prompt identity (core.prompts.prompt_key), used for duplicates, grouping, leakage
    and the split: normalized text, system messages left out, roles kept for multi-turn prompts."""
    return core_prompt_key(row["prompt"])


def completion_text(row: Row) -> str:
    return "\n".join(m["content"] for m in row["completion"])


def _completion_key(row: Row) -> str:
    # Answers that differ only in case, spacing or a final full stop are the same answer;
    # counting them as distinct would inflate contradictions with noise.
    return normalize_text(completion_text(row))


def _loc(row: Row, index: int) -> str:
    return str(row.get("_source") or f"row {index}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------- split

def split_train_val(
    rows: Sequence[Row], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Row], list[Row]]:
    """Split rows into (train, val) BEFORE training, by core.split's rule for every stage.

    Rows that share a normalized prompt always land on the same side, otherwise validation
    loss would be measured on questions the model was trained on (support logs often answer
    one question several ways). A prompt's side depends only on (seed, prompt), so a seed gives
    the same split on every machine; val holds at least one prompt whenever there are two.
    Both sides keep the input order.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(f"val_fraction must be a number, got {type(val_fraction).__name__}")
    if not 0.0 < val_fraction <= 0.5:
        raise ConfigError(f"key 'val_fraction' must be in (0, 0.5] for SFT, got {val_fraction}")
    rows = list(rows)
    if len(rows) < 2:
        return rows, []
    train, val = split_by_prompt(rows, val_fraction, seed, key=prompt_key)
    log.info("split: %d train, %d val rows", len(train), len(val))
    return train, val


def describe_split(train: Sequence[Row], val: Sequence[Row]) -> dict[str, Any]:
    """Sizes of a split for metrics.json and the run card; n_shared_prompts should be 0."""
    return core_describe_split(train, val, key=prompt_key)


# ------------------------------------------------------------------------- checks

@dataclass
class Finding:
    """One kind of problem, with every row it concerns ("file:line" locations)."""

    level: str  # error | warning | info
    check: str  # e.g. "duplicate", "empty_completion", "format.line_endings"
    message: str
    count: int  # how many rows (or prompt groups, as the message says) are affected
    locations: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # short human-readable illustrations
    details: list[dict[str, Any]] = field(default_factory=list)  # per-group data for tools/tests

    def format(self) -> str:
        lines = [f"[{self.level.upper()}] {self.check}: {self.message}"]
        if self.locations:
            more = len(self.locations) - _N_SHOWN
            shown = ", ".join(self.locations[:_N_SHOWN]) + (f" (+{more} more)" if more > 0 else "")
            lines.append(f"    at {shown}")
        lines += [f"    e.g. {e}" for e in self.examples[:_N_SHOWN]]
        return "\n".join(lines)


@dataclass
class CheckReport:
    n_rows: int
    kind: str = "SFT"  # what was checked: SFT, preference or prompt data
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    info: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def findings(self) -> list[Finding]:
        return self.errors + self.warnings + self.info

    def add(self, finding: Finding) -> None:
        {ERROR: self.errors, WARNING: self.warnings, INFO: self.info}[finding.level].append(finding)

    def get(self, check: str) -> Finding | None:
        return next((f for f in self.findings if f.check == check), None)

    def format(self) -> str:
        head = (
            f"{self.kind} data check: {self.n_rows} rows, {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings, {len(self.info)} info"
        )
        return "\n".join([head] + [f.format() for f in self.findings] + (["OK"] if self.ok else []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kind": self.kind,
            "n_rows": self.n_rows,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
            "info": [asdict(f) for f in self.info],
        }


def check_rows(
    rows: Sequence[Row],
    *,
    val_rows: Sequence[Row] | None = None,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
) -> CheckReport:
    """Check SFT rows for problems that silently hurt training; nothing is dropped or fixed.

    Errors (the stage stops): empty prompt/completion, train/val leakage, overlong rows above
    1% of the data. Warnings: exact duplicates, a few overlong rows, inconsistent formatting.
    Info: contradictions (same prompt, different answers), normal in support logs and what
    preference learning later resolves.
    """
    if max_tokens is not None and count_tokens is None:
        raise ValueError("max_tokens needs count_tokens (the tokenizer's length function)")
    rows = list(rows)
    report = CheckReport(n_rows=len(rows))
    locs = [_loc(r, i) for i, r in enumerate(rows)]
    for finding in (
        *_check_empty(rows, locs),
        _check_leakage(rows, locs, val_rows) if val_rows is not None else None,
        _check_overlong(rows, locs, count_tokens, max_tokens) if max_tokens is not None else None,
        *_check_duplicates_and_contradictions(rows, locs),
        *_check_formatting(rows, locs),
    ):
        if finding is not None:
            report.add(finding)
    return report


def _check_empty(rows: list[Row], locs: list[str]) -> list[Finding]:
    bad_prompt, bad_completion = [], []
    for row, loc in zip(rows, locs):
        turns = [m for m in row["prompt"] if m["role"] != "system"]
        if not any(m["role"] == "user" for m in turns) or any(not m["content"].strip() for m in turns):
            bad_prompt.append(loc)
        if not completion_text(row).strip():
            bad_completion.append(loc)
    out = []
    if bad_prompt:
        out.append(Finding(ERROR, "empty_prompt",
                           f"{_n(len(bad_prompt), 'row')} with no user message or an empty/whitespace-only turn",
                           len(bad_prompt), bad_prompt))
    if bad_completion:
        out.append(Finding(ERROR, "empty_completion",
                           f"{_n(len(bad_completion), 'row')} with an empty/whitespace-only completion",
                           len(bad_completion), bad_completion))
    return out


def _check_leakage(rows: list[Row], locs: list[str], val_rows: Sequence[Row]) -> Finding | None:
    train_at: dict[str, list[str]] = defaultdict(list)
    for row, loc in zip(rows, locs):
        train_at[prompt_key(row)].append(loc)
    val_at: dict[str, list[str]] = defaultdict(list)
    for i, row in enumerate(val_rows):
        val_at[prompt_key(row)].append(_loc(row, i))
    shared = sorted(set(train_at) & set(val_at))
    if not shared:
        return None
    details = [{"prompt": k, "train": train_at[k], "val": val_at[k]} for k in shared]
    return Finding(
        ERROR, "leakage",
        f"{_n(len(shared), 'prompt')} in both train and validation; validation loss would be "
        "measured on trained questions (split with split_train_val)",
        len(shared),
        [loc for d in details for loc in d["train"] + d["val"]],
        [f"{_short(d['prompt'])!r}: train {d['train'][0]} / val {d['val'][0]}" for d in details],
        details,
    )


def _check_overlong(
    rows: list[Row], locs: list[str], count_tokens: Callable[[str], int], max_tokens: int
) -> Finding | None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    over = []
    for row, loc in zip(rows, locs):
        text = "\n".join(m["content"] for m in row["prompt"]) + "\n" + completion_text(row)
        n = count_tokens(text)
        if n > max_tokens:
            over.append((loc, n))
    if not over:
        return None
    level = ERROR if len(over) > OVERLONG_ERROR_SHARE * len(rows) else WARNING
    return Finding(
        level, "overlong",
        f"{_n(len(over), 'row')} ({len(over) / len(rows):.1%}) over max_tokens={max_tokens}; "
        "truncation would cut off their EOS",
        len(over), [loc for loc, _ in over], [f"{loc}: {n} tokens" for loc, n in over],
    )


def _check_duplicates_and_contradictions(rows: list[Row], locs: list[str]) -> list[Finding]:
    by_prompt: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row, loc in zip(rows, locs):
        by_prompt[prompt_key(row)][_completion_key(row)].append(loc)
    dupes, contra = [], []
    for key in sorted(by_prompt):
        answers = by_prompt[key]
        for answer, where in answers.items():
            if len(where) > 1:
                dupes.append({"prompt": key, "completion": answer, "locations": where})
        if len(answers) > 1:
            where = [loc for w in answers.values() for loc in w]
            contra.append({"prompt": key, "n_answers": len(answers), "locations": where})
    out = []
    if dupes:
        n_extra = sum(len(d["locations"]) - 1 for d in dupes)
        out.append(Finding(
            WARNING, "duplicate",
            f"{n_extra} redundant copies in {_n(len(dupes), 'group')} of identical prompt+completion "
            "(they overweight those examples)",
            n_extra, [loc for d in dupes for loc in d["locations"]],
            [f"{len(d['locations'])}x {_short(d['prompt'])!r} at {', '.join(d['locations'][:_N_SHOWN])}"
             for d in dupes],
            dupes,
        ))
    if contra:
        most = max(d["n_answers"] for d in contra)
        out.append(Finding(
            INFO, "contradiction",
            f"{_n(len(contra), 'prompt')} with more than one distinct answer (up to {most}); "
            "normal for support logs, preference data resolves them",
            len(contra), [loc for d in contra for loc in d["locations"]],
            [f"{_short(d['prompt'])!r}: {d['n_answers']} answers at {', '.join(d['locations'][:_N_SHOWN])}"
             for d in contra],
            contra,
        ))
    return out


def _role_problem(row: Row) -> str | None:
    """Why a row's roles break the chat template's expectations, or None."""
    roles = [m["role"] for m in row["prompt"]]
    turns = roles[1:] if roles[:1] == ["system"] else roles
    if "system" in turns:
        return "system message after the first position"
    if any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(turns)):
        return f"prompt roles do not alternate user/assistant: {'/'.join(roles)}"
    if turns and turns[-1] != "user":
        return "prompt does not end with a user message"
    comp = [m["role"] for m in row["completion"]]
    if comp != ["assistant"]:
        return f"completion is not one assistant message: {'/'.join(comp) or 'empty'}"
    return None


def _check_formatting(rows: list[Row], locs: list[str]) -> list[Finding]:
    out = []
    formats = Counter(str(r.get("meta", {}).get("_format", "unknown")) for r in rows)
    if len(formats) > 1:
        common = formats.most_common(1)[0][0]
        odd = [loc for r, loc in zip(rows, locs) if r.get("meta", {}).get("_format", "unknown") != common]
        counts = ", ".join(f"{k}: {v}" for k, v in formats.most_common())
        out.append(Finding(WARNING, "format.mixed_formats",
                           f"rows come in {len(formats)} raw formats ({counts})", len(odd), odd))

    problems = [(loc, p) for r, loc in zip(rows, locs) if (p := _role_problem(r))]
    if problems:
        out.append(Finding(WARNING, "format.roles", f"{_n(len(problems), 'row')} with unexpected roles",
                           len(problems), [loc for loc, _ in problems],
                           [f"{loc}: {p}" for loc, p in problems]))

    padded = [loc for r, loc in zip(rows, locs) if (t := completion_text(r)) != t.strip()]
    if padded:
        out.append(Finding(WARNING, "format.whitespace",
                           f"{_n(len(padded), 'completion')} with leading/trailing whitespace "
                           "(the model learns to emit it before EOS)", len(padded), padded))

    crlf = [loc for r, loc in zip(rows, locs)
            if any("\r" in m["content"] for m in r["prompt"] + r["completion"])]
    if crlf:
        out.append(Finding(WARNING, "format.line_endings",
                           f"{len(crlf)} of {_n(len(rows), 'row')} contain \\r\\n or \\r line endings",
                           len(crlf), crlf))

    has_sys = [any(m["role"] == "system" for m in r["prompt"]) for r in rows]
    n_sys = sum(has_sys)
    if 0 < n_sys < len(rows):
        minority = n_sys <= len(rows) - n_sys  # point at the smaller, likelier-wrong group
        where = [loc for s, loc in zip(has_sys, locs) if s == minority]
        out.append(Finding(WARNING, "format.system_prompt",
                           f"system prompt in {_n(n_sys, 'row')}, absent in {len(rows) - n_sys}; "
                           f"listed: rows {'with' if minority else 'without'} one",
                           len(where), where))
    return out


# ------------------------------------------------------------------------- augmentation

def augment_paraphrases(
    rows: Sequence[Row],
    paraphrase_fn: Callable[[str, random.Random], str],
    n_variants: int = 1,
    seed: int = 0,
    *,
    val_rows: Sequence[Row] | None = None,
) -> list[Row]:
    """Return rows plus up to n_variants paraphrased copies of each, right after its original.

    Apply AFTER split_train_val and to the TRAIN rows only: a paraphrase of a validation
    prompt in train is leakage that prompt_key cannot see. Pass val_rows so that a paraphrase
    which happens to match a validation prompt is dropped too.

    Each variant replaces the last user message with paraphrase_fn(text, rng), keeps the same
    completion, gets meta["augmented"] = True and _source + " (paraphrase)". A variant whose
    prompt_key equals any original, validation or earlier variant prompt is skipped (it would
    be a duplicate, or pair another prompt with this answer), so a row may get fewer variants.
    One random.Random(seed) drives the whole pass, so the output is deterministic.
    """
    if isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 0:
        raise ValueError(f"n_variants must be an int >= 0, got {n_variants!r}")
    rng = random.Random(seed)
    taken = {prompt_key(r) for r in rows} | {prompt_key(r) for r in (val_rows or ())}
    out: list[Row] = []
    for row in rows:
        out.append(row)
        last_user = max((i for i, m in enumerate(row["prompt"]) if m["role"] == "user"), default=None)
        if last_user is None:
            continue
        text = row["prompt"][last_user]["content"]
        made = 0
        for _ in range(4 * n_variants):  # a few retries: rule-based paraphrasers often repeat
            if made == n_variants:
                break
            new_text = paraphrase_fn(text, rng)
            if not isinstance(new_text, str):
                raise TypeError(f"paraphrase_fn returned {type(new_text).__name__}, expected str")
            variant = _with_user_text(row, last_user, new_text)
            key = prompt_key(variant)
            if not new_text.strip() or key in taken:
                continue
            taken.add(key)
            out.append(variant)
            made += 1
    return out


def _with_user_text(row: Row, index: int, text: str) -> Row:
    new = copy.deepcopy(row)
    new["prompt"][index]["content"] = text
    new["meta"] = {**new.get("meta", {}), "augmented": True}
    new["_source"] = f"{row.get('_source', '')} (paraphrase)".lstrip()
    return new


_OPENER_RE = re.compile(
    r"^\s*(?:hi there|hey there|hello there|hi|hello|hey|good (?:morning|afternoon|evening))"
    r"\s*[,!.]*\s+",
    re.IGNORECASE,
)
_OPENERS = ("", "Hi, ", "Hello, ", "Hey there, ")
# Swapped in either direction; the right-hand side is written in its canonical case.
_SWAPS = (
    ("can you tell me", "could you tell me"),
    ("what are", "what're"),
    ("what is", "what's"),
    ("I want to", "I'd like to"),
    ("how do I", "how can I"),
    ("do you know", "any idea"),
    ("thanks", "thank you"),
)


def _replace_keep_case(text: str, old: str, new: str) -> str:
    def repl(m: re.Match) -> str:
        return new[0].upper() + new[1:] if m.group(0)[0].isupper() else new

    return re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", repl, text, flags=re.IGNORECASE)


def simple_paraphrase(text: str, rng: random.Random) -> str:
    """Rule-based paraphrase: new polite opener, phrase swaps, optional question mark.

    Deterministic for a given rng state. Good enough to teach a tiny model that surface
    variations of a question share an answer; plug in a model-based paraphraser for more.
    """
    body = _OPENER_RE.sub("", text, count=1).strip()
    if not body.strip():
        return text
    for a, b in _SWAPS:
        flip = rng.random() < 0.5  # drawn for every pair so rng use does not depend on the text
        if not flip:
            continue
        if re.search(rf"(?<!\w){re.escape(a)}(?!\w)", body, re.IGNORECASE):
            body = _replace_keep_case(body, a, b)
        elif re.search(rf"(?<!\w){re.escape(b)}(?!\w)", body, re.IGNORECASE):
            body = _replace_keep_case(body, b, a)
    if body.rstrip().endswith("?"):
        body = body.rstrip().rstrip("?") + rng.choice(("?", ""))
    opener = rng.choice(_OPENERS)
    if opener and not re.match(r"I\b|[A-Z]{2}", body):  # keep "I" and acronyms capitalized
        body = body[0].lower() + body[1:]
    elif not opener:
        body = body[0].upper() + body[1:]
    return opener + body
