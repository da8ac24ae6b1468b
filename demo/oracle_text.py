"""Text features of the demo's gold oracle (demo/oracle.py): words, the domain's lexicon (which
words and word pairs its texts use, each intent's topic words), repetition, style phrases and
harmful-help cues. No scoring here: the weights live in demo/oracle.py.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache

from demo import domain
from demo.facts import context
from demo.spec import fields_of, fill

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|\$?\d+(?:[.,:-]\d+)*%?")
_STOP = frozenset("""a an the and or but if so to of in on at for from with by as is are was be been it its
it's this that these those i i'm i'd you you're your we we'll we're our us my me they them their he she his her
do does did can could will would should may might have has had not no yes up out any all there here what when
where which who how than then too very just also about into over per one""".split())
OPENER_RE = re.compile(r"^\W*(hi\b|hello\b|hey\b|happy to help|glad to help|thanks|thank you|great question|"
                        r"good question|sure thing|of course|absolutely)", re.IGNORECASE)
CLOSE_RE = re.compile(r"anything else|have a (great|nice|good|lovely) day|hope (that|this) helps|let me know|"
                       r"thanks for shopping", re.IGNORECASE)
REFUSAL_RE = re.compile(r"\b(can't|cannot|can not|won't|unable to|not able to)\b.{0,20}\b(help|assist|share|"
                         r"do|give|provide|write)\b|not something i can", re.IGNORECASE)
APOLOGY_RE = re.compile(r"\b(sorry|afraid|apologi[sz]e)\b", re.IGNORECASE)
GENERIC_RE = re.compile(r"check our website|contact customer service|reach out to customer service|"
                         r"look into it|find that information", re.IGNORECASE)
SENT_RE = re.compile(r"[^.!?]+[.!?]*")
# the policy writing the customer's next turn, or chat-template tokens left in the text
LEAK_RE = re.compile(r"\b(customer|agent|user|assistant|system)\s*:|<\|", re.IGNORECASE)
KEY_SLOTS = ("city", "day", "zip", "product", "material", "category", "order")


def word_list(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def shape(word: str) -> str:
    # numbers generalize: "$649" and "$12" are the same word to the lexicon
    return re.sub(r"\d+", "0", word)


def _lexicon_texts(intent, rng: random.Random) -> tuple[list[str], list[str]]:
    """Every question and answer wording of an intent, for a few slot draws: (all, good answers)."""
    texts, good = [], []
    for t, template in enumerate(intent.templates):
        slots = domain.sample_slots(intent, rng, template)
        texts.append(template.format(**slots))
        ctx = context(slots)
        if intent.harmful:
            fmts, values = intent.redirects + intent.comply, [""]
        else:
            fmts, values = intent.says + intent.bare + intent.extras, [intent.value(ctx), *intent.wrong_values(ctx)]
        for i, v in enumerate(values):
            actx = domain.answer_context(intent, slots, v)
            filled = [fill(f, actx) for f in fmts if fields_of(f) <= actx.keys()]
            texts += filled
            if i == 0:
                good += filled if not intent.harmful else [fill(f, actx) for f in intent.redirects
                                                           if fields_of(f) <= actx.keys()]
    return texts, good


@lru_cache(maxsize=1)
def lexicon() -> tuple[frozenset, frozenset, frozenset, dict]:
    """Words, within-sentence word pairs and style words the domain uses, and each intent's
    topic words (from its good answers only: a non-answer's words are on no topic)."""
    from demo import corpus

    rng = random.Random(1234)
    texts, topic = [], {}
    for intent in domain.INTENTS:
        own = set()
        for _ in range(4):
            all_texts, good = _lexicon_texts(intent, rng)
            texts += all_texts
            own.update(w for g in good for w in word_list(g))
        topic[intent.name] = frozenset(own)
    texts += (domain.OPENERS + domain.CLOSES + domain.GENERIC + domain.APOLOGIES + domain.REFUSAL_CLOSES
              + domain.CURT_REFUSALS)
    texts += corpus.store_pages(rng) + corpus.shipping_pages(rng) + corpus.catalog_pages(rng) + corpus.care_pages()
    words, pairs = set(), set()
    for text in texts:
        for sentence in SENT_RE.findall(text):
            ws = [shape(w) for w in word_list(sentence)]
            words.update(ws)
            pairs.update(zip(ws, ws[1:]))
    style = set(_STOP)
    for phrase in domain.OPENERS + domain.CLOSES + domain.APOLOGIES + domain.REFUSAL_CLOSES:
        style.update(word_list(phrase))
    return frozenset(words), frozenset(pairs), frozenset(style), topic


def sentence_pairs(text: str) -> list[tuple[str, str]]:
    """Word pairs inside sentences (a pair across a sentence break says nothing about sense)."""
    out = []
    for sentence in SENT_RE.findall(text):
        ws = [shape(w) for w in word_list(sentence)]
        out += zip(ws, ws[1:])
    return out


@lru_cache(maxsize=1)
def harm_cues() -> tuple[re.Pattern, ...]:
    return tuple(re.compile(c, re.IGNORECASE) for i in domain.HARMFUL for c in i.comply_cues)


def repetition(words: list[str], text: str) -> float:
    """0 for text that never repeats itself, towards 1 for a phrase said over and over."""
    if len(words) < 3:
        return 0.5 if len(words) == 2 and words[0] == words[1] else 0.0
    grams = list(zip(words, words[1:], words[2:]))
    rep3 = 1 - len(set(grams)) / len(grams)
    sents = [" ".join(word_list(s)) for s in SENT_RE.findall(text)]
    sents = [s for s in sents if s]
    dup = 1 - len(set(sents)) / len(sents) if len(sents) > 1 else 0.0
    # a content word said over and over ("the" four times in two sentences is just English)
    top = max(Counter(w for w in words if w not in _STOP).values(), default=0)
    rep1 = max(0, top - 3) / len(words)
    return min(1.0, max(rep3, dup, 2 * rep1))


def overlap(phrase_words: list[str], have: set[str], style: frozenset) -> float:
    content = [w for w in phrase_words if w not in style]
    return sum(w in have for w in content) / len(content) if content else 0.0
