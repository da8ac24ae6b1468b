"""Mismatched negatives: extra training pairs in which a prompt's chosen answer beats the chosen
answer to another prompt.

Every collected pair holds two answers to the same prompt, so nothing in a few hundred of them
tells a reward model that an answer must be about what was asked: two samples of one policy are
both on the question, or both off it. The model then scores an answer by its form (a confident
price, a polite close), and RL and best-of-n pick fluent answers about another product, or a
benign shop answer to a harmful request instead of a refusal. Pairing each chosen answer with the
chosen answer of another prompt, the negatives dense retrieval trains on (Karpukhin et al., 2020,
"Dense Passage Retrieval", sec. 3.2), teaches exactly that: a good answer to another question is
a bad answer to this one. On a harmful prompt whose chosen answer is a refusal, the negative is
an ordinary shop answer, the off-topic reply an aligned policy drifts to; on a benign prompt it
is often another prompt's refusal.

A refusal (found by the pattern `refusals`, by default the stock phrases of refusals and apologies
that jailbreak studies count refusals by, e.g. Zou et al., 2023, "Universal and Transferable
Adversarial Attacks", sec. 3) is never the negative of a prompt whose own chosen answer is a
refusal: it is right for every harmful request, so there it would be a false negative. For a prompt
answered helpfully it stays a negative: refusing a benign question is worse than answering it. On
the demo (seed 0, three RL seeds) refusals among every prompt's negatives cost PPO red-team
refusals; kept out of every prompt's negatives, the reward model scored refusals of benign
questions above right answers (1.38 against 1.28) and PPO refused benign questions. With this rule
they stay below (0.39 against 1.60), and red-team answers are ranked right in 0.905 of decisive
pairs (0.884 without negatives).

A share `hard` of the negatives are hard ones: the chosen answer of one of the POOL training
prompts that share the most words with this one (idf-weighted, as BM25 ranks passages), the hard
negatives dense retrieval gains most from (Karpukhin et al., 2020, sec. 5.2; Xiong et al., 2021,
"ANCE"). A random negative is about another topic; a hard one is about the same item asked another
thing ("can I return the blanket?" for "how much is the blanket?") or the same question about
another item, the two mistakes the demo's reward model made when picking the best of 16 answers.
Like DPR's rule that a BM25 negative must not contain the answer, the same question in other
words (prompts alike beyond SAME_QUESTION: "Hi, ..." and "Good morning! ..." around one request)
and a chosen answer that shares half its words with this one's are skipped. On the demo (seeds 0
and 1, one negative per pair, three RL seeds), hard negatives made RLOO refuse more red-team
requests on both seeds and PPO on one, and lowered PPO's raw gold win rate; docs/demo-results.md
has the numbers.

Only training pairs are drawn from, never held-out ones, so held-out accuracy stays honest. A new
pair keeps its row's prompt, chosen answer and round; its target is a sure preference (agreement
1, margin 0) and it has no aspect ratings (the aspect loss skips it).
"""
from __future__ import annotations

import random
import re

import numpy as np

from core.config import REFUSAL_LIKE
from core.prompts import prompt_key, prompt_text

MAX_DRAWS = 50  # draws for one negative before giving up (a training set of nearly one prompt)
POOL = 10  # hard negatives come from this many closest prompts
SAME_QUESTION = 0.9  # prompt similarity (see `nearest`) from which two prompts ask the same (greetings aside)
PARAPHRASE = 0.5  # word overlap (Jaccard) of two chosen answers from which they say the same
# function words and courtesies, which say nothing about what is asked
STOP = frozenset("a an the and or but if of to in on at for from with by about as is are was were be been am do "
                 "does did have has had i me my we our you your it its this that these those there what which who "
                 "how when where why can could would should will shall may might must please thanks thank hi "
                 "hello hey so just any some".split())


def words(text, numbers: bool = True) -> set[str]:
    """The content words of a text (casefolded; function words and courtesies left out; numbers
    too unless `numbers`: in a question they are mostly order numbers and postcodes)."""
    return {w for w in re.findall(r"[\w$%]+", prompt_text(text).casefold())
            if w not in STOP and (numbers or not w.isdigit())}


def nearest(texts: list[set[str]], k: int, below: float | None = None, chunk: int = 256) -> list[list[int]]:
    """For each word set the indices of the (at most) k others most alike, best first, by cosine
    similarity of idf-weighted binary word vectors, among those less alike than `below` if given; sets
    sharing no word are never near. Chunked, so memory grows as chunk x len(texts), not its square."""
    from scipy.sparse import csr_matrix, diags

    vocab: dict[str, int] = {}
    cols = [[vocab.setdefault(w, len(vocab)) for w in sorted(t)] for t in texts]
    n = len(texts)
    flat = np.array([c for row in cols for c in row], dtype=int)
    idf = np.log((n + 1) / (np.bincount(flat, minlength=len(vocab)) + 0.5))
    x = csr_matrix((idf[flat], (np.repeat(np.arange(n), [len(c) for c in cols]), flat)), shape=(n, len(vocab)))
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    x = diags(1 / np.where(norm > 0, norm, 1)) @ x
    out = []
    for start in range(0, n, chunk):
        sim = (x[start:start + chunk] @ x.T).toarray()
        for r, row in enumerate(sim):
            row[start + r] = 0.0
            if below is not None:
                row[row >= below] = 0.0
            top = np.argsort(-row, kind="stable")[:k]
            out.append([int(j) for j in top if row[j] > 0])
    return out


def mismatched_pairs(rows: list[dict], ratio: float, seed: int = 0, refusals: str = REFUSAL_LIKE,
                     hard: float = 0.0) -> list[dict]:
    """`ratio` new pairs per row (validated preference rows; a fractional part adds one more with
    that probability): the row's prompt and chosen answer, and as the rejected answer the chosen
    answer of a uniformly drawn row with another prompt and another chosen text; when the regular
    expression `refusals` (case-insensitive; '' finds none) finds both chosen answers, two refusals,
    another is drawn. With probability `hard` the row is drawn among the hard candidates instead
    (see the module docstring), when there are any. Each new pair's `negative` field says which:
    "random" or "hard". Deterministic for a seed; [] for ratio 0 or when no row has another prompt."""
    if ratio <= 0 or not rows:
        return []
    rng = random.Random(f"mismatched-negatives-{seed}")
    keys = [prompt_key(r["prompt"]) for r in rows]
    if len(set(keys)) < 2:
        return []
    found = re.compile(refusals, re.IGNORECASE) if refusals else None
    refusal = [bool(found and found.search(r["chosen"])) for r in rows]
    whole, part = int(ratio), ratio - int(ratio)

    def allowed(i: int, j: int) -> bool:  # another prompt, another text, not two refusals
        return (keys[j] != keys[i] and str(rows[j]["chosen"]).strip() != str(rows[i]["chosen"]).strip()
                and not (refusal[i] and refusal[j]))

    close = hard_candidates(rows, keys, allowed) if hard > 0 else None
    out = []
    for i, row in enumerate(rows):
        for _ in range(whole + (rng.random() < part)):
            if close and close[i] and rng.random() < hard:
                out.append(_negative(row, rows[rng.choice(close[i])]["chosen"], "hard"))
                continue
            for _ in range(MAX_DRAWS):
                j = rng.randrange(len(rows))
                if allowed(i, j):
                    out.append(_negative(row, rows[j]["chosen"], "random"))
                    break
    return out


def _negative(row: dict, other: str, kind: str) -> dict:
    """The row's prompt and chosen answer against `other`; `negative` says how it was drawn."""
    return {**row, "rejected": other, "margin": 0.0, "agreement": 1.0, "n_votes": None,
            "aspects_chosen": None, "aspects_rejected": None, "item_id": None, "negative": kind}


def hard_candidates(rows: list[dict], keys: list[str], allowed) -> list[list[int]]:
    """For each row i the rows j it may take a hard negative from: those of the POOL prompts closest
    to its own that do not ask the same question in other words, with allowed(i, j) and a chosen
    answer that does not say what its own says."""
    order = list(dict.fromkeys(keys))
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    prompt_words = [words(rows[members[key][0]]["prompt"], numbers=False) for key in order]
    close = dict(zip(order, nearest(prompt_words, POOL, below=SAME_QUESTION)))
    answer = [words(r["chosen"]) for r in rows]
    out = []
    for i, key in enumerate(keys):
        mine = answer[i]
        out.append([j for p in close[key] for j in members[order[p]]
                    if allowed(i, j) and len(mine & answer[j]) < PARAPHRASE * max(1, len(mine | answer[j]))])
    return out
