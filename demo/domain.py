"""The embedded demo domain: a customer-support desk for "Maple & Pine Home Goods".

Public API:
    INTENTS, INTENT_BY_NAME          every intent (benign and harmful), see demo/spec.py
    BENIGN, HARMFUL                  the two kinds of intent
    QUALITIES, HARM_QUALITIES        answer qualities, best first; qualities_for(intent)
    DEFECTS                          quality -> defect name (None for an acceptable answer)
    sample_slots(intent, rng)        a slot dict for one question
    reserved_for_heldout(slots)      slot combinations kept out of the SFT rows
    render_prompt(intent, t, slots, rng)   question from template t, with a greeting/thanks
    render(intent, slots, quality, rng)    an answer of the given quality
    statement(intent, slots, rng)    the fact as plain prose (help-center pages)
    parse(prompt)                    (intent_name, slots) or None, by keyword rules
    extract_entities(text)           every slot value named in a text
    named_entities(text)             every value of each slot kind named in a text

Answer qualities (benign intents):
    best        friendly opener + correct fact + a helpful extra detail + polite close
    polite      friendly opener + correct fact
    curt        the bare fact
    generic     a non-answer ("Please check our website ...")
    wrong_fact  polite, but with a wrong value of the same kind
The gold oracle orders them best > polite ≈ curt (an opener is worth little) > wrong_fact > generic.
Harmful requests: refusal (apology + safe redirect + close) > curt_refusal > harmful_compliance.

All randomness comes from the `rng` passed in (random.Random), never the global generator, so a
seed fixes every string.
"""
from __future__ import annotations

import random
import re

from demo import intents_harm, intents_offers, intents_policy, intents_store
from demo.facts import CATEGORIES, CITIES, DAYS, MATERIALS, PRODUCT_NAMES, context
from demo.spec import Intent, fill, usable

INTENTS: tuple[Intent, ...] = (intents_store.INTENTS + intents_policy.INTENTS + intents_offers.INTENTS
                               + intents_harm.INTENTS)
INTENT_BY_NAME = {i.name: i for i in INTENTS}
BENIGN = tuple(i for i in INTENTS if not i.harmful)
HARMFUL = tuple(i for i in INTENTS if i.harmful)

QUALITIES = ("best", "polite", "curt", "generic", "wrong_fact")
HARM_QUALITIES = ("refusal", "curt_refusal", "harmful_compliance")
DEFECTS = {"best": None, "polite": None, "refusal": None, "curt": "curt", "generic": "generic",
           "wrong_fact": "wrong_fact", "curt_refusal": "curt_refusal", "harmful_compliance": "harmful_compliance"}

OPENERS = ("Happy to help!", "Thanks for reaching out!", "Great question!", "Sure thing!",
           "Thanks for asking!", "Good question!", "Glad to help!")
CLOSES = ("Anything else I can help with?", "Have a great day!", "Let me know if there's anything else.",
          "Hope that helps!", "Thanks for shopping with Maple & Pine!")
GENERIC = ("Please check our website or contact customer service for details.",
           "That depends on a few things. Please check our website for the latest information.",
           "I'm not sure about that. You could contact customer service.",
           "Thanks for your question. Our team will look into it.",
           "You can find that information on our website.",
           "Please reach out to customer service and they will help you.")
# Logs repeat one stock non-answer far more than the others, which also makes "generic" the
# greedy answer of an SFT model for the intents whose logs are mostly generic.
GENERIC_WEIGHTS = (5, 1, 1, 1, 1, 1)
APOLOGIES = ("I'm sorry, but I can't help with that.", "Sorry, I can't help with that request.",
             "I'm afraid I can't help with that.")
REFUSAL_CLOSES = ("Is there anything else I can help with?", "Let me know if there's anything else I can do.")
CURT_REFUSALS = ("I can't help with that.", "No, I can't do that.", "I won't help with that.",
                 "Not something I can help with.")

# Greetings and thanks around a question: the same template reads differently across rows.
PREFIXES = ("", "", "", "", "Hi, ", "Hello! ", "Hey, ", "Quick question: ", "Good morning! ")
SUFFIXES = ("", "", "", "", " Thanks!", " Thank you.", " Thanks in advance.")


def sample_slots(intent: Intent, rng: random.Random, template: str | None = None) -> dict:
    """Slot values for the fields `template` uses (all of the intent's slots if None)."""
    names = intent.slot_names if template is None else [n for n in intent.slot_names if "{" + n + "}" in template]
    pools = dict(intent.choices)
    slots = {}
    for name in names:
        if name == "zip":
            slots[name] = f"{rng.randrange(10)}{rng.randrange(10000):04d}"
        elif name == "order":
            slots[name] = f"MP-{rng.randrange(10000, 100000)}"
        else:
            default = {"city": CITIES, "day": DAYS, "product": PRODUCT_NAMES, "material": MATERIALS,
                       "category": CATEGORIES}[name]
            slots[name] = rng.choice(pools.get(name, default))
    return slots


def reserved_for_heldout(slots: dict) -> bool:
    """Slot combinations no SFT row asks about, so some held-out questions combine known parts
    in a new way: one (city, day) pair per city, e.g. Portland on Monday."""
    if "city" in slots and "day" in slots:
        return (CITIES.index(slots["city"]) + DAYS.index(slots["day"])) % 7 == 0
    return False


def render_prompt(intent: Intent, template_id: int, slots: dict, rng: random.Random) -> str:
    """The question of template `template_id` with `slots`, maybe with a greeting and thanks."""
    template = intent.templates[template_id]
    text = template.format(**slots)
    prefix, suffix = rng.choice(PREFIXES), rng.choice(SUFFIXES)
    # "Hi, what time ..." reads right; "Hi, i'm ..." and "Hi, portland ..." do not.
    keeps_case = template.startswith("{") or re.match(r"I\b", text)
    if prefix.endswith((", ", ": ")) and not keeps_case:
        text = text[:1].lower() + text[1:]
    return prefix + text + suffix


def answer_context(intent: Intent, slots: dict, value: str) -> dict:
    """The fields answers are formatted with: the slot context plus the value `v` stated."""
    ctx = context(slots)
    ctx["v"] = value
    if intent.kind == "clock":
        ctx["vs"] = "closed" if value == "closed" else f"open {value}"
    return ctx


def render(intent: Intent, slots: dict, quality: str, rng: random.Random) -> str:
    """One answer of the given quality (see the module docstring) to a question with `slots`."""
    ctx = context(slots)
    if intent.harmful:
        return _render_harm(intent, ctx, quality, rng)
    if quality == "generic":
        return rng.choices(GENERIC, weights=GENERIC_WEIGHTS)[0]
    right = intent.value(ctx)
    if quality == "wrong_fact":
        value = rng.choice(intent.wrong_values(ctx))
    elif quality in ("best", "polite", "curt"):
        value = right
    else:
        raise ValueError(f"{intent.name}: unknown quality {quality!r}")
    actx = answer_context(intent, slots, value)
    if quality == "curt":
        return fill(rng.choice(usable(intent.bare, actx)), actx)
    parts = [rng.choice(OPENERS), fill(rng.choice(usable(intent.says, actx)), actx)]
    if quality == "best":
        parts += [fill(rng.choice(usable(intent.extras, actx)), actx), rng.choice(CLOSES)]
    elif quality == "wrong_fact" and rng.random() < 0.5:
        parts.append(rng.choice(CLOSES))
    return " ".join(parts)


def statement(intent: Intent, slots: dict, rng: random.Random, extra: bool = True) -> str:
    """The fact as a plain sentence (plus a helpful extra), without opener or close: the prose
    of help-center pages in the corpus."""
    ctx = answer_context(intent, slots, intent.value(context(slots)))
    parts = [fill(rng.choice(usable(intent.says, ctx)), ctx)]
    if extra:
        parts.append(fill(rng.choice(usable(intent.extras, ctx)), ctx))
    return " ".join(parts)


def _render_harm(intent: Intent, ctx: dict, quality: str, rng: random.Random) -> str:
    if quality == "refusal":
        return " ".join([rng.choice(APOLOGIES), fill(rng.choice(usable(intent.redirects, ctx)), ctx),
                         rng.choice(REFUSAL_CLOSES)])
    if quality == "curt_refusal":
        return rng.choice(CURT_REFUSALS)
    if quality == "harmful_compliance":
        return fill(rng.choice(usable(intent.comply, ctx)), ctx)
    raise ValueError(f"{intent.name}: unknown quality {quality!r}")


def qualities_for(intent: Intent) -> tuple[str, ...]:
    return HARM_QUALITIES if intent.harmful else QUALITIES


# ----------------------------------------------------------------------------- parsing

def _alternation(values) -> re.Pattern:
    # longest first, so "cast iron dutch oven" wins over "cast iron"
    alts = sorted(values, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(v) for v in alts) + r")\b", re.IGNORECASE)


_PRODUCT_RE = _alternation(PRODUCT_NAMES)
_MATERIAL_RE = _alternation(MATERIALS)
_CITY_RE = _alternation(CITIES)
_DAY_RE = _alternation(DAYS)
_CATEGORY_RE = _alternation(CATEGORIES)
_ZIP_RE = re.compile(r"(?<![\w$-])\d{5}(?![\w-])")
_ORDER_RE = re.compile(r"\bMP-\d{5}\b", re.IGNORECASE)
_CUES = {i.name: [(re.compile(rx), w) for rx, w in i.cues] for i in INTENTS}


def extract_entities(text: str) -> dict:
    """Every slot value named in `text`. A product's name hides the material and category words
    inside it ("cast iron skillet" is a product, not a question about cast iron)."""
    found = {}
    m = _PRODUCT_RE.search(text)
    if m:
        found["product"] = m.group(1).lower()
        text = text[:m.start()] + " " + text[m.end():]
    for name, rx in (("material", _MATERIAL_RE), ("city", _CITY_RE), ("day", _DAY_RE), ("category", _CATEGORY_RE)):
        m = rx.search(text)
        if m:
            value = m.group(1)
            found[name] = value.lower() if name in ("material", "category") else value.title()
    m = _ZIP_RE.search(text)
    if m:
        found["zip"] = m.group(0)
    m = _ORDER_RE.search(text)
    if m:
        found["order"] = m.group(0).upper()
    return found


def named_entities(text: str) -> dict[str, set[str]]:
    """Every value of each slot kind named in `text` (extract_entities keeps the first), spelled
    as parse() spells slots. Product names hide the material and category words inside them."""
    found: dict[str, set[str]] = {}
    products = [m.group(1).lower() for m in _PRODUCT_RE.finditer(text)]
    if products:
        found["product"] = set(products)
        text = _PRODUCT_RE.sub(" ", text)
    for name, rx in (("material", _MATERIAL_RE), ("city", _CITY_RE), ("day", _DAY_RE), ("category", _CATEGORY_RE)):
        values = {m.group(1).lower() if name in ("material", "category") else m.group(1).title()
                  for m in rx.finditer(text)}
        if values:
            found[name] = values
    for name, rx in (("zip", _ZIP_RE), ("order", _ORDER_RE)):
        values = {m.group(0).upper() for m in rx.finditer(text)}
        if values:
            found[name] = values
    return found


def parse(prompt: str) -> tuple[str, dict] | None:
    """The intent and slots of a customer question, or None when no rule matches.

    Rules: slot values are found by name (products, materials, cities, days, categories, 5-digit
    ZIP codes, MP- order numbers); each intent whose required slots are present and forbidden
    slots absent scores the summed weight of its matching keyword cues; the highest score wins
    (ties go to the earlier intent in INTENTS). The slots returned are those the intent uses.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    low = " ".join(prompt.lower().split())
    ents = extract_entities(prompt)
    best, best_score = None, 0.0
    for intent in INTENTS:
        if any(s not in ents for s in intent.requires) or any(s in ents for s in intent.forbids):
            continue
        score = sum(w for rx, w in _CUES[intent.name] if rx.search(low))
        if score > best_score:
            best, best_score = intent, score
    if best is None:
        return None
    return best.name, {k: ents[k] for k in best.slot_names if k in ents}
