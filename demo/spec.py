"""What an intent of the demo domain is made of, and how values of each kind are found in text.

The intent tables (demo/intents_*.py) only fill in `Intent` records; all behaviour lives in
demo/domain.py (rendering, parsing) and demo/oracle.py (scoring), so the tables stay readable.

Rules for writing an intent:
- `templates`: the question paraphrases. Template i is held out when i % 4 == 3, i.e. 25% of
  them: never in SFT rows or chat transcripts, only in prompts.jsonl and redteam.jsonl and,
  as pretraining knowledge, in the corpus's help-center pages (demo/corpus.faq_pages).
- `cues`: (regex, weight) keyword rules over the lowercased question; parse() picks the intent
  with the highest total weight among those whose `requires` slots are present and whose
  `forbids` slots are absent. Cues are rules about words, never lists of generated prompts.
- `kind` names how the fact is written ("money", "clock", ...; "named" = one of a fixed set of
  phrases); a harmful request has kind "".
- `says` / `bare` / `extras`: format strings over the slot context (demo.facts.context) and
  `{v}`, the fact's value. A string is only used when every field it names is available.
- `allowed`: other values of the same kind that `says`/`extras` state on purpose (e.g. the
  "$75" of "free on orders over $75"); they are not counted as conflicting facts.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Union

Fact = Union[str, Callable[[dict], str]]
Domain = Union[tuple, Callable[[dict], tuple]]


@dataclass(frozen=True)
class Intent:
    name: str
    templates: tuple[str, ...]
    cues: tuple[tuple[str, float], ...]
    kind: str = ""
    fact: Fact = ""
    wrong: Domain = ()              # candidate wrong values (the correct one is filtered out)
    says: tuple[str, ...] = ()
    bare: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # slot -> values this intent draws from
    mode: str = "best"              # the most common answer quality in the SFT logs
    weight: float = 1.0             # share of SFT rows, relative
    # harmful requests only
    category: str = ""
    comply: tuple[str, ...] = ()
    comply_cues: tuple[str, ...] = ()
    redirects: tuple[str, ...] = ()

    @property
    def harmful(self) -> bool:
        return not self.kind

    @property
    def slot_names(self) -> tuple[str, ...]:
        return self.requires + self.optional

    def value(self, ctx: dict) -> str:
        return self.fact(ctx) if callable(self.fact) else self.fact

    def wrong_values(self, ctx: dict) -> tuple[str, ...]:
        values = self.wrong(ctx) if callable(self.wrong) else self.wrong
        right = norm_value(self.kind, self.value(ctx))
        allowed = {norm_value(self.kind, a) for a in self.allowed}
        return tuple(v for v in values if norm_value(self.kind, v) not in allowed | {right})

    def sft_template_ids(self) -> list[int]:
        return [i for i in range(len(self.templates)) if i % 4 != 3]

    def heldout_template_ids(self) -> list[int]:
        return [i for i in range(len(self.templates)) if i % 4 == 3]


# How a value of each kind is written; found values are compared after norm_value().
KIND_PATTERNS = {
    "money": r"\$ ?\d+(?:,\d{3})*(?:\.\d\d)?",
    "bdays": r"\b\d+(?: ?(?:-|to|–) ?\d+)? business days?\b",
    "days": r"\b\d+(?: ?(?:-|to|–) ?\d+)? days?\b",
    "nhours": r"\b\d+ hours?\b",
    "minutes": r"\b\d+ minutes?\b",
    "years": r"\b\d+[- ]years?\b",
    "percent": r"\b\d+ ?(?:%|percent\b)",
    "weeks": r"\b\d+(?: ?(?:-|to|–) ?\d+)? weeks?\b",
    "clock": r"\b\d{1,2}(?::\d\d)? ?[ap]m ?(?:to|-|–|until) ?\d{1,2}(?::\d\d)? ?[ap]m\b|\bclosed\b",
    "phone": r"\b1-8\d\d-\d{3}-\d{4}\b",
    "address": r"\b\d+ [a-z]+ (?:street|avenue|road|boulevard|lane|court)\b",
    "swatches": r"\b\d+ (?:free )?(?:fabric )?swatch(?:es)?\b",
}
_KIND_RES = {k: re.compile(p, re.IGNORECASE) for k, p in KIND_PATTERNS.items()}


def norm_value(kind: str, text: str) -> str:
    """Canonical spelling, so "$649.00", "$ 649" and "$649" compare equal."""
    s = " ".join(text.lower().split())
    if kind == "named":
        return s
    s = re.sub(r" ?(?:–|\bto\b|\buntil\b|-) ?", "-", s)
    if kind == "money":
        s = s.replace(" ", "").replace(",", "")
        return s[:-3] if s.endswith(".00") else s
    if kind == "clock":
        return s.replace(" ", "")
    if kind == "years":
        return re.sub(r"(\d+)[- ]years?", r"\1-year", s)
    if kind == "percent":
        return re.sub(r"(\d+) ?(?:%|percent)", r"\1%", s)
    if kind == "swatches":
        return re.sub(r"(\d+).*", r"\1 swatches", s)
    if kind in ("nhours", "minutes", "weeks", "days", "bdays"):
        return s[:-1] if s.endswith("s") else s  # "1 hour" == "1 hours"
    return s


def find_values(kind: str, text: str, named: tuple[str, ...] = ()) -> set[str]:
    """Normalized values of `kind` stated in text; for "named", which of `named` appear."""
    if kind == "named":
        low = " ".join(text.lower().split())
        return {norm_value(kind, v) for v in named if norm_value(kind, v) in low}
    return {norm_value(kind, m.group(0)) for m in _KIND_RES[kind].finditer(text)}


@lru_cache(maxsize=None)
def fields_of(fmt: str) -> frozenset[str]:
    return frozenset(f for _, f, _, _ in string.Formatter().parse(fmt) if f)


def usable(fmts: tuple[str, ...], ctx: dict) -> list[str]:
    """The format strings whose fields are all available, preferring those that name the most
    slots: an answer that can mention the product or order asked about should mention it."""
    ok = [f for f in fmts if fields_of(f) <= ctx.keys()]
    if not ok:
        return []
    best = max(len(fields_of(f) & SLOT_FIELDS) for f in ok)
    return [f for f in ok if len(fields_of(f) & SLOT_FIELDS) == best]


SLOT_FIELDS = frozenset({"city", "day", "zip", "product", "material", "category", "order"})


def fill(fmt: str, ctx: dict) -> str:
    text = fmt.format(**ctx)
    return text[:1].upper() + text[1:]
