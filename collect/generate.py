"""`rlhf collect generate`: two responses per held-out prompt, stored as comparison items.

Either one policy sampled twice (two seeds: the pairs a reward model learns from) or two
policies once each (`vs`: a blind A/B test; the app never shows which is which). With
`candidates` k > 2, one policy is sampled k times per prompt and the two most different
samples become the pair (`most_different_pair`). With `pairs_per_prompt` p > 1, every prompt
gets p such items, each pass over the prompts with its own seeds. All
policies are adapters on one copy of the base weights (core.policies.attach_adapters), sampled
in batches with the KV cache (core.generation.generate).

Item ids are deterministic, a hash of the two policies, the prompt id, the round and the pass
(no model name in them), so a re-run skips what is stored and only fills in the rest; items go
into the store one batch at a time, so an interrupted run keeps what it finished. A pair whose
two responses are identical teaches nothing and is not stored (counted), nor is one with an
empty response (the store refuses it).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from core.config import UserError
from core.forked import balance, fork_map, resolve_workers
from core.records import read_prompts

from .assign import add_items
from .commands import store_for
from .store import Item

PREF_TAG = "pref"
# Seed offset between passes over the prompts (pairs_per_prompt): far from the batch offsets
# (the prompt's place in the list) and the candidates' (multiples of 1_000_003).
PASS_SEED_STEP = 100_000_007


def pref_prompts(path: str | Path, n: int) -> list[dict]:
    """The first n prompts tagged "pref". A file without any tags is taken whole (someone's
    own prompt list); a tagged file without "pref" rows is an error, not a silent fallback
    onto the eval prompts."""
    rows = read_prompts(path)
    if any(r["tags"] for r in rows):
        rows = [r for r in rows if PREF_TAG in r["tags"]]
        if not rows:
            raise UserError(f"{path}: no prompt is tagged {PREF_TAG!r} (the held-out prompts "
                            "for preference collection)")
    return rows[:n]


def item_id(policy: str, other: str, prompt_id: str, round_no: int = 1, pair_no: int = 0) -> str:
    """Opaque and deterministic: no policy name in anything an annotator's page could carry.
    A later round's items differ from round 1's even for the same policy names, and a prompt's
    second pair (pair_no 1) from its first (round 1's first pairs keep the ids they had before
    rounds and extra pairs existed)."""
    key = (["pair", policy, other, prompt_id] + ([round_no] if round_no != 1 else [])
           + (["pair_no", pair_no] if pair_no else []))
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    return f"pair-{digest[:24]}"


def most_different_pair(responses: list[str]) -> tuple[int, int]:
    """Indices (i < j) of the two non-empty responses whose word sets overlap least (Jaccard
    similarity; the first such pair on ties; (0, 1) when fewer than two are non-empty).

    Two samples of one policy are often two wordings of the same answer, and a vote between
    them teaches a reward model little; two different answers (a refusal and an off-topic
    reply to a harmful request, a right and a wrong fact) teach it what matters. Llama 2
    (Touvron et al., 2023, sec. 3.2.1) sampled the two responses from different model variants
    and temperatures for the same reason: diversity of the compared responses."""
    words = [set(r.lower().split()) for r in responses]
    best, pair = 2.0, (0, 1)
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if not words[i] or not words[j]:
                continue
            similarity = len(words[i] & words[j]) / len(words[i] | words[j])
            if similarity < best:
                best, pair = similarity, (i, j)
    return pair


def _adapter_name(policy: str) -> str:
    # PEFT adapter names become module attribute names: no dots or slashes (a path policy).
    return re.sub(r"\W", "_", policy)


def load_policies(run: Path, policies: list[str], device: str = "auto", threads: int = 0,
                  tokenizer_fixes: dict | None = None):
    """(tokenizer, model): the base model loaded once with each non-base policy attached.
    tokenizer_fixes: eos_token / chat_template, as core.models.load_tokenizer takes them."""
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer
    from core.policies import adapter_dir, attach_adapters, base_dir, tokenizer_dir

    base = base_dir(run)
    tok = load_tokenizer(tokenizer_dir(run), **(tokenizer_fixes or {}))
    model = load_causal_lm(base, resolve_device(device, threads=threads), tok)
    adapters = {_adapter_name(p): adapter_dir(run, p) for p in dict.fromkeys(policies)
                if p != "base"}
    return tok, attach_adapters(model, adapters)


def _sample(model, tok, policy: str, prompts: list, seed: int, gen: dict) -> list[str]:
    from core.generation import generate
    from core.policies import merged_policy

    name = policy if policy == "base" else _adapter_name(policy)
    with merged_policy(model, name) as m:
        return generate(m, tok, prompts, seed=seed, batch_size=len(prompts), **gen)


def generate_pairs(run: str | Path, policy: str = "sft", vs: str | None = None, n: int = 300,
                   temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 96,
                   batch_size: int = 32, seed: int = 0, device: str = "auto",
                   threads: int = 0, tokenizer_fixes: dict | None = None,
                   db: str | None = None, candidates: int = 2, round_no: int = 1, workers: int = 1,
                   pairs_per_prompt: int = 1) -> int:
    """Sample and store up to n pairs per pass; returns how many items this call stored.
    device and threads as in core.device (threads 0 = every core); db: the store's URL
    (default <run>/collect/annotations.db); candidates: samples per prompt to pick the pair
    from (one policy only); round_no: the annotation round the items belong to; workers: single-thread
    processes that share the sampling on the CPU, 0 = one per thread (core/forked.py; the same pairs
    either way); pairs_per_prompt: passes over the prompts, each with its own seeds, so every
    prompt gets that many items (more preference pairs from the same prompts)."""
    run = Path(run)
    other = vs or policy
    if other == policy and temperature <= 0:
        raise UserError("sampling one policy twice needs temperature > 0: greedy decoding "
                        "would give two identical responses for every prompt")
    if candidates < 2 or (candidates > 2 and other != policy):
        raise UserError(f"--candidates {candidates}: must be 2, or more when one policy is "
                        "sampled (an A/B test compares one sample of each policy)")
    if workers < 0:
        raise UserError(f"--workers {workers}: must be 0 (one per thread) or more")
    if pairs_per_prompt < 1:
        raise UserError(f"--pairs_per_prompt {pairs_per_prompt}: must be at least 1")
    prompts = pref_prompts(run / "data" / "prompts.jsonl", n)
    store = store_for(run, db)
    try:
        with store.read() as s:
            stored = set(s.scalars(select(Item.id)))

        def key(p: dict, k: int) -> str:
            return item_id(policy, other, p["id"], round_no, k)

        todo = [(p, k) for k in range(pairs_per_prompt) for p in prompts if key(p, k) not in stored]
        counts = {"stored": 0, "existing": len(prompts) * pairs_per_prompt - len(todo), "identical": 0, "empty": 0}
        if todo:
            tok, model = load_policies(run, [policy, other], device, threads, tokenizer_fixes)
            gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
            meta = dict(gen, policy=policy, vs=vs, seed=seed, candidates=candidates,
                        round=round_no)
            # Batches over all n prompts, not just the missing ones: a prompt's samples then
            # depend only on its place in the list (and the pass k), so a re-run reproduces them
            # (the identical pairs it skipped stay identical) and stores nothing twice.
            batches = [(k, start, prompts[start:start + batch_size]) for k in range(pairs_per_prompt)
                       for start in range(0, len(prompts), batch_size)]
            batches = [(k, start, b) for k, start, b in batches if any(key(p, k) not in stored for p in b)]

            def sample(job):
                k, start, batch = job
                return _sample_pair(model, tok, policy, other, batch, seed + start + k * PASS_SEED_STEP, gen,
                                    candidates)

            # With workers > 1 the batches are dealt to forked single-thread processes
            # (core/forked.py; not on CUDA). Each batch keeps its seed and the items are stored
            # here, in batch order, so the store ends up the same either way.
            chunks = balance(batches, resolve_workers(workers, threads, model), lambda job: len(job[2]))
            ready, order = {}, [(k, start) for k, start, _ in batches]
            with tqdm(total=len(todo), unit="pair", desc=f"{policy} vs {other}") as bar:
                for (k, start, batch), pair in fork_map(sample, chunks):
                    ready[k, start] = (batch, pair)
                    bar.update(sum(key(p, k) not in stored for p in batch))
                    while order and order[0] in ready:
                        done = order.pop(0)
                        batch, (first, second) = ready.pop(done)
                        _store_pairs(store, batch, first, second, stored, policy, other,
                                     dict(meta, pair_no=done[0]) if done[0] else meta, counts)
    finally:
        store.close()
    per = f", {pairs_per_prompt} pairs each" if pairs_per_prompt > 1 else ""
    print(f"stored {counts['stored']} items ({policy} vs {other}) from {len(prompts)} prompts{per}; "
          f"already stored {counts['existing']}, skipped {counts['identical']} identical and "
          f"{counts['empty']} with an empty response")
    return counts["stored"]


def _sample_pair(model, tok, policy: str, other: str, batch: list[dict], seed: int, gen: dict,
                 candidates: int = 2) -> tuple[list[str], list[str]]:
    """The two responses of each prompt of a batch: one sample of each policy, or the most different
    two of `candidates` samples of one."""
    prompts = [p["prompt"] for p in batch]  # message lists: system prompt and earlier turns too
    # Different seeds for every sample: two close policies (a later round's policy and the one it
    # continued) sampled with one seed would often give the same text twice.
    first = _sample(model, tok, policy, prompts, seed, gen)
    if other != policy:
        return first, _sample(model, tok, other, prompts, seed + 1_000_003, gen)
    samples = [first] + [_sample(model, tok, policy, prompts, seed + k * 1_000_003, gen)
                         for k in range(1, candidates)]
    picks = [most_different_pair(list(row)) for row in zip(*samples)]
    first, second = ([samples[pick[side]][n] for n, pick in enumerate(picks)] for side in (0, 1))
    return first, second


def _store_pairs(store, batch: list[dict], first: list[str], second: list[str], stored: set[str], policy: str,
                 other: str, meta: dict, counts: dict) -> None:
    items = []
    for p, a, b in zip(batch, first, second):
        key = item_id(policy, other, p["id"], meta["round"], meta.get("pair_no", 0))
        if key in stored:
            continue
        if not a.strip() or not b.strip():
            counts["empty"] += 1
        elif a.strip() == b.strip():
            counts["identical"] += 1
        else:
            items.append({"id": key, "prompt": p["prompt"],
                          "round": meta["round"], "response_a": a, "response_b": b,
                          "source_a": policy,
                          "source_b": other, "meta": dict(meta, prompt_id=p["id"],
                                                          tags=p["tags"], at=time.time())})
    if items:
        counts["stored"] += add_items(store, items, actor="generate")
