"""Pretraining text for the tiny base model: the shop's web pages, a deals forum and support
chat transcripts.

Pages state every fact in prose (store pages, the shipping-zone table, the catalog, care
guides, help-center Q&As in every wording of each question, see faq_pages) in several
wordings, so a small model can learn the lookups and the language. The
support chat transcripts (2% of the text, TRANSCRIPT_SHARE) teach the conversational shape; they
use only SFT (non-held-out) question templates and are mostly good answers, with a few curt
ones, as a real support archive would be. Harmful requests in them are always refused.

The transcripts are written in the tokenizer's own chat format (ChatML, demo/tokenizer.py),
as today's base models have seen their chat template in pretraining. With the format unseen
("Customer: ...\\nAgent: ..." instead), LoRA SFT could not learn the template's positions: the
first answer token stayed near uniform (5.5 nats on training rows, against about 2 for the
data's own spread of openers) and <|im_end|> cost 3 nats, so a sampled answer often began with
a junk token.

Documents are joined by a blank line, "<|endoftext|>" and a newline; demo/base.py splits on it.
"""
from __future__ import annotations

import random

from demo import domain
from demo.facts import (ADDRESSES, CARE, CATEGORIES, CITIES, DAYS, PRODUCTS, SHOP, SHOP_FULL, STORE_HOURS,
                        SUPPORT_PHONE, WARRANTY_YEARS, ZONES, hours_for)
from demo.spec import fill, usable
from demo.tokenizer import render_chat

DOC_SEPARATOR = "\n\n<|endoftext|>\n"
# The transcripts' share of the corpus characters. Enough for the base to know its chat format,
# too little to make it a support agent (the SFT stage's job). Measured on the held-out prompts
# (greedy, gold oracle; base | SFT mean score): 16% made the base a better agent than the SFT
# policy (3.80 | 3.57), 8% too (3.67 | 3.47), 3% about equal (3.09 | 3.21); at 2%, 1.50 | 3.24.
TRANSCRIPT_SHARE = 0.02
_STOP_WORDS = frozenset("a an the and or but if so to of in on at for from with by as is are was be do does did i my me you your we our us it can could would will how what when where which who why there this that any get have has am".split())


def store_pages(rng: random.Random) -> list[str]:
    docs = []
    for city in CITIES:
        weekday, saturday, sunday = STORE_HOURS[city]
        sunday_text = "closed on Sunday" if sunday == "closed" else f"open {sunday} on Sunday"
        lines = "\n".join(f"{day}: {hours_for(city, day)}" for day in DAYS)
        docs.append(f"{SHOP} {city}\n\nAddress: {ADDRESSES[city]}, {city}\n\nStore hours\n{lines}\n\n"
                    f"Free parking is right behind the building. Store pickup is free, and online orders "
                    f"are ready within 4 hours.")
        docs.append(f"Visiting our {city} store\n\nOur {city} store is at {ADDRESSES[city]}. It is open "
                    f"{weekday} Monday to Friday, {saturday} on Saturday, and {sunday_text}. "
                    f"Leashed dogs are welcome. Holiday hours can differ, so check this page before a holiday.")
        day = rng.choice(DAYS)
        state = "closed" if hours_for(city, day) == "closed" else f"open {hours_for(city, day)}"
        docs.append(f"{city} store news\n\nA reminder that the {city} store is {state} on {day}. "
                    f"You'll find it at {ADDRESSES[city]}.")
    return docs


def shipping_pages(rng: random.Random) -> list[str]:
    docs = []
    for variant in range(3):
        lines = []
        for digit in range(10):
            zone = digit // 2 + 1
            days, cost = ZONES[zone]
            if variant == 0:
                lines.append(f"ZIP codes starting with {digit}: zone {zone}, {days}, {cost}.")
            elif variant == 1:
                lines.append(f"If your ZIP code starts with {digit}, you are in shipping zone {zone}. "
                             f"Standard shipping takes {days} and costs {cost}.")
            else:
                zip_code = f"{digit}{rng.randrange(10000):04d}"
                lines.append(f"Example: shipping to {zip_code} (zone {zone}) takes {days} and costs {cost}.")
        docs.append(f"{SHOP} shipping\n\nOur warehouse is in the east, so delivery time and cost depend on "
                    "the first digit of your ZIP code.\n\n" + "\n".join(lines) +
                    "\n\nShipping is free on orders over $75. Express shipping is $19 and arrives in "
                    "2 business days. We also ship to Canada for a flat $25.")
    return docs


def catalog_pages(rng: random.Random) -> list[str]:
    docs = []
    for name, (price, category, material) in PRODUCTS.items():
        years = WARRANTY_YEARS[category]
        docs.append(f"{name.title()}\n\nPrice: ${price}\nMaterial: {material}\nRange: {category}\n"
                    f"Warranty: {years} years\n\nCare: {CARE[material]}.")
        docs.append(f"The {name} costs ${price}. It is made of {material} and belongs to our {category} range, "
                    f"which comes with a {years}-year warranty. To care for it, {CARE[material]}.")
    for category in CATEGORIES:
        items = [(n, p) for n, (p, c, _) in PRODUCTS.items() if c == category]
        rng.shuffle(items)
        listing = "\n".join(f"{n}: ${p}" for n, p in items)
        docs.append(f"{SHOP} {category}\n\n{listing}\n\nEvery item in our {category} range has a "
                    f"{WARRANTY_YEARS[category]}-year warranty. Orders over $75 ship free.")
    return docs


def care_pages() -> list[str]:
    docs = []
    for material, care in CARE.items():
        docs.append(f"Caring for {material}\n\nFor {material}, {care}. Test any cleaner on a hidden spot first, "
                    "and skip harsh chemicals like bleach.")
    docs.append(f"{SHOP_FULL} warranty\n\n" + "\n".join(
        f"{c.title()}: a {y}-year warranty." for c, y in WARRANTY_YEARS.items()) +
        "\n\nThe warranty covers defects in materials and workmanship. Keep your receipt or order number "
        f"to make a claim. Questions? Call us at {SUPPORT_PHONE}.")
    return docs


def faq_pages(rng: random.Random, per_template: int = 10) -> list[str]:
    """Help-center pages: each intent's questions in every wording (the held-out wordings too,
    with other slot values and greetings than any held-out prompt), with plain-prose answers.

    A real base model has read paraphrases of nearly every question during pretraining; SFT
    then teaches the chat format and manners, not the language. These pages are that
    knowledge for the tiny model: without them no 4M-parameter model can know that "I live
    abroad" asks about international shipping. SFT rows and chat transcripts still use only
    the SFT wordings, so the held-out prompts are new to the SFT stage.

    Each wording is asked per_template times, with other slots each time. Measured on the held-out
    eval prompts (bench/base_probe.py and the SFT policy's greedy answers): with 2 per
    wording (some were lost to a paging bug) the SFT policy's fact accuracy was 0.37, with 6 it was
    0.49, with 10 it was 0.68 (all with the transcripts not yet in the chat format). These pages
    are 87% of the corpus, the forum 8%, the other pages 3%, the transcripts 2%. With 20 (and 4
    forum threads per wording, configs/data/rich.yaml) the corpus doubles, and the SFT policy's
    greedy fact accuracy rose from 0.59 to 0.80 on seed 0 and from 0.66 to 0.74 on seed 1 (the
    base trained 880 steps instead of 440 over it)."""
    docs = []
    for intent in domain.BENIGN:
        ids = [t for t in range(len(intent.templates)) for _ in range(per_template)]
        rng.shuffle(ids)
        while ids:
            k = rng.randint(2, 4)
            page, ids = ids[:k], ids[k:]
            qas = []
            for t in page:
                slots = domain.sample_slots(intent, rng, intent.templates[t])
                question = intent.templates[t].format(**slots)
                qas.append(f"Q: {question}\nA: {domain.statement(intent, slots, rng)}")
            docs.append(f"{SHOP} Help Center\n\n" + "\n\n".join(qas))
    return docs


FORUM_WARNINGS = ("Please don't. That's against the law, and people get hurt by it.",
                  "Bad idea. Ask the store what they can do instead.",
                  "Don't do this. It can get you banned or worse.")


def forum_pages(rng: random.Random, per_template: int = 2) -> list[str]:
    """Threads of an unmoderated deals forum: every harmful request in every wording, answered
    mostly (3 in 4) with the harmful help itself (the intent's `comply` answers) and otherwise
    with a warning.

    A real base model has read such know-how on the web; SFT decides whether the policy
    surfaces it, and preference learning should stop it. 8% of the corpus. Without them the tiny model
    knew no harmful help to give: an SFT policy trained on logs that complied with the
    "comply"-mode intents began "Sure: ..." and went on with noise, so the red-team audit
    found no harmful answer before or after alignment, and could not show alignment lower it."""
    docs = []
    for intent in domain.HARMFUL:
        for t in [t for t in range(len(intent.templates)) for _ in range(per_template)]:
            slots = domain.sample_slots(intent, rng, intent.templates[t])
            ctx = domain.context(slots)
            reply = (fill(rng.choice(usable(intent.comply, ctx)), ctx) if rng.random() < 0.75
                     else rng.choice(FORUM_WARNINGS))
            docs.append(f"Deals & Hacks forum\n\nThread: {intent.templates[t].format(**slots)}\n\nReply: {reply}")
    return docs


def transcript(rng: random.Random) -> str:
    """One support chat of 1-3 exchanges, mostly good answers."""
    messages = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        if rng.random() < 0.05:
            intent = rng.choice(domain.HARMFUL)
            quality = "refusal"
        else:
            intent = rng.choices(domain.BENIGN, weights=[i.weight for i in domain.BENIGN])[0]
            quality = rng.choices(("best", "polite", "curt"), weights=(0.7, 0.2, 0.1))[0]
        t = rng.choice(intent.sft_template_ids())
        slots = domain.sample_slots(intent, rng, intent.templates[t])
        prompt = domain.render_prompt(intent, t, slots, rng)
        messages += [{"role": "user", "content": prompt},
                     {"role": "assistant", "content": domain.render(intent, slots, quality, rng)}]
    return render_chat(messages)


def build_corpus(rng: random.Random, transcript_share: float = TRANSCRIPT_SHARE, faq_per_wording: int = 10,
                 forum_per_wording: int = 2) -> str:
    """The pages, plus chat transcripts until they are `transcript_share` of the characters.
    faq_per_wording and forum_per_wording: how often the help center asks each question wording
    and the forum each harmful request wording (faq_pages, forum_pages)."""
    docs = (store_pages(rng) + shipping_pages(rng) + catalog_pages(rng) + care_pages()
            + faq_pages(rng, faq_per_wording) + forum_pages(rng, forum_per_wording))
    pages = sum(len(d) + len(DOC_SEPARATOR) for d in docs)
    size = 0
    while size < pages * transcript_share / (1 - transcript_share):
        doc = transcript(rng)
        docs.append(doc)
        size += len(doc) + len(DOC_SEPARATOR)
    rng.shuffle(docs)
    return DOC_SEPARATOR.join(docs) + DOC_SEPARATOR
