"""Build the demo domain's data files: SFT logs, held-out prompts, red-team prompts, corpus.

    build_demo_data(out_dir, seed=0) -> {"sft": path, "prompts": path, "redteam": path, "corpus": path}

Rules the files follow (tests/test_demo_domain.py checks each):
- sft.jsonl: simulated support logs, {"prompt", "completion", "meta": {"intent", "quality",
  "defect", "slots", "template"}}. Quality is mixed as in real logs: per intent, exact quotas
  from MIX for its `mode`, so for the curt- and generic-mode intents the most common answer
  is not the best one. About 10% of rows state a wrong fact and 15% are harmful requests
  (38% of those answered with harmful help: 30% for most intents, 50%, the most common
  answer, for the "comply"-mode ones). Only SFT templates (i % 4 != 3) are used, and
  no prompt string repeats.
- prompts.jsonl: held-out prompts, tags ["pref"|"eval", "intent:<name>"], from held-out
  templates only and, where possible, slot combinations the intent never had in the SFT
  rows (domain.reserved_for_heldout keeps some out of SFT on purpose). Harmful requests are 8%
  of the eval prompts and 25% of the pref prompts (HARM_SHARE), so preference learning sees
  enough refusals to learn that a refusal beats both harmful help and an evasive answer.
  Each row also carries "meta" {"intent", "slots", "template"}; core.records readers ignore it.
- redteam.jsonl: harmful requests worded with held-out templates, tags
  ["redteam", "category:<fraud|privacy|dangerous|harassment|deception>"]; the intents share
  them equally, and each intent's held-out wordings take turns (with 96 prompts every one of
  the 30 is used), distinct questions first.
- corpus.txt: see demo/corpus.py.
No prompt string of prompts.jsonl or redteam.jsonl occurs in sft.jsonl or corpus.txt, and pref,
eval and red-team prompts are pairwise disjoint. random.Random(seed) drives the logs and prompts,
and a second stream from the seed the corpus (so a change to the logs' mix leaves the corpus and
the base model alone); the same seed gives byte-identical files.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

from core.io import atomic_write_text, write_jsonl
from demo import domain
from demo.corpus import build_corpus
from demo.spec import Intent

MIX = {
    "best": {"best": 0.42, "polite": 0.20, "curt": 0.13, "generic": 0.13, "wrong_fact": 0.12},
    "curt": {"curt": 0.40, "best": 0.20, "polite": 0.15, "generic": 0.13, "wrong_fact": 0.12},
    "generic": {"generic": 0.40, "best": 0.22, "polite": 0.14, "curt": 0.12, "wrong_fact": 0.12},
    "harm": {"refusal": 0.50, "curt_refusal": 0.20, "harmful_compliance": 0.30},
    # harmful intents whose old logs mostly complied: the SFT policy's greedy answer is the harm
    "comply": {"harmful_compliance": 0.50, "refusal": 0.35, "curt_refusal": 0.15},
}
# 6% left the 10 harmful intents 14 rows each: the SFT policy neither refused nor complied on
# the red-team prompts, it answered with product facts (greedy refusal rate 0.15; 0.81 at 15%)
SFT_HARM_SHARE = 0.15
# Harmful requests among the held-out prompts. The preference round gets its own safety share,
# as Llama 2 collected safety preferences apart from helpfulness ones: at 8% the reward model
# scored an off-topic answer to a red-team prompt above a refusal (+0.02 vs -0.68), and PPO
# learned to stop refusing (red-team refusal rate 0.48 -> 0) and complied more (0.21 -> 0.31).
HARM_SHARE = {"eval": 0.08, "pref": 0.25}


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split `total` into integers proportional to `weights` (largest remainder, ties to the first)."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def quality_plan(intent: Intent, n: int, rng: random.Random) -> list[str]:
    mix = MIX[("comply" if intent.mode == "comply" else "harm") if intent.harmful else intent.mode]
    names = list(mix)
    plan = [q for q, k in zip(names, allocate(n, [mix[q] for q in names])) for _ in range(k)]
    rng.shuffle(plan)
    return plan


def _fresh(intent: Intent, template_ids: list[int], rng: random.Random, taken, avoid_slots=(), avoid_text="",
           sft: bool = False, cores: set | None = None, template_use: Counter | None = None):
    """A prompt not in `taken` (nor inside `avoid_text`). Held-out prompts prefer questions
    (intent, template, slots) not in `cores`, so they differ from each other by more than a
    greeting, then (given `template_use`, counts per (intent, template)) the intent's least used
    wording, then slot combinations not in `avoid_slots` (never seen in SFT rows). SFT
    prompts never use combinations reserved for held-out prompts.
    Returns (prompt, template_id, slots) or None after many tries."""
    for _ in range(200):
        candidates = []
        for _ in range(1 if sft else 200):
            t = rng.choice(template_ids)
            slots = domain.sample_slots(intent, rng, intent.templates[t])
            if sft and domain.reserved_for_heldout(slots):
                continue
            core = (intent.name, t, _slot_key(slots))
            uses = template_use[intent.name, t] if template_use is not None else 0
            rank = (cores is not None and core in cores, uses, _slot_key(slots) in avoid_slots)
            candidates.append((rank, t, slots, core))
        if not candidates:
            continue
        _, t, slots, core = min(candidates, key=lambda c: c[0])  # the first of the best
        prompt = domain.render_prompt(intent, t, slots, rng)
        if prompt not in taken and prompt not in avoid_text:
            if cores is not None:
                cores.add(core)
            if template_use is not None:
                template_use[intent.name, t] += 1
            return prompt, t, slots
    return None


def _slot_key(slots: dict) -> tuple:
    return tuple(sorted(slots.items())) if slots else ("<none>",)


def build_sft_rows(rng: random.Random, n_sft: int) -> list[dict]:
    n_harm = round(n_sft * SFT_HARM_SHARE)
    intents = domain.BENIGN + domain.HARMFUL
    counts = (allocate(n_sft - n_harm, [i.weight for i in domain.BENIGN])
              + allocate(n_harm, [i.weight for i in domain.HARMFUL]))
    rows, taken = [], set()
    for intent, n in zip(intents, counts):
        for quality in quality_plan(intent, n, rng):
            found = _fresh(intent, intent.sft_template_ids(), rng, taken, sft=True)
            while found is None:  # every fresh question used up: a repeat is still a valid log row
                t = rng.choice(intent.sft_template_ids())
                slots = domain.sample_slots(intent, rng, intent.templates[t])
                if not domain.reserved_for_heldout(slots):
                    found = domain.render_prompt(intent, t, slots, rng), t, slots
            prompt, t, slots = found
            taken.add(prompt)
            rows.append({"prompt": prompt, "completion": domain.render(intent, slots, quality, rng),
                         "meta": {"intent": intent.name, "quality": quality, "defect": domain.DEFECTS[quality],
                                  "slots": slots, "template": t}})
    rng.shuffle(rows)
    return rows


def build_heldout(rng: random.Random, sft_rows: list[dict], avoid_text: str, n_pref: int, n_eval: int,
                  n_redteam: int) -> tuple[list[dict], list[dict]]:
    """prompts.jsonl rows (pref then eval) and redteam.jsonl rows."""
    used = {}
    for row in sft_rows:
        used.setdefault(row["meta"]["intent"], set()).add(_slot_key(row["meta"]["slots"]))
    taken, cores = {row["prompt"] for row in sft_rows}, set()
    wordings = Counter()  # red-team prompts per (intent, template): every held-out wording gets its turn

    def make(intent: Intent, tags: list[str], row_id: str, template_use: Counter | None = None) -> dict | None:
        found = _fresh(intent, intent.heldout_template_ids(), rng, taken, used.get(intent.name, ()), avoid_text,
                       cores=cores, template_use=template_use)
        if found is None:
            return None
        prompt, t, slots = found
        taken.add(prompt)
        # meta is ours (readers keep id, prompt and tags): it lets tests and reports check parsing
        return {"id": row_id, "prompt": prompt, "tags": tags,
                "meta": {"intent": intent.name, "slots": slots, "template": t}}

    # Red-team first, then eval, then pref: the smaller, more important sets get the most
    # distinct questions when an intent has few held-out wordings.
    plan = _intent_plan(domain.HARMFUL, n_redteam, rng)
    rng.shuffle(plan)
    redteam = [make(intent, ["redteam", f"category:{intent.category}"], f"redteam-{k:03d}", wordings)
               for k, intent in enumerate(plan)]
    splits = {}
    for split, n in (("eval", n_eval), ("pref", n_pref)):
        n_harm = round(n * HARM_SHARE[split])
        plan = _intent_plan(domain.BENIGN, n - n_harm, rng, [math.sqrt(i.weight) for i in domain.BENIGN])
        plan += _intent_plan(domain.HARMFUL, n_harm, rng)
        rng.shuffle(plan)
        splits[split] = [make(intent, [split, f"intent:{intent.name}"], f"{split}-{k:04d}")
                         for k, intent in enumerate(plan)]
    prompts = [r for r in splits["pref"] + splits["eval"] if r is not None]
    return prompts, [r for r in redteam if r is not None]


def _intent_plan(intents: tuple[Intent, ...], n: int, rng: random.Random, weights=None) -> list[Intent]:
    counts = allocate(n, list(weights or [1.0] * len(intents)))
    return [intent for intent, k in zip(intents, counts) for _ in range(k)]


def build_demo_data(out_dir, seed: int = 0, n_sft: int = 2640, n_pref: int = 300, n_eval: int = 100,
                    n_redteam: int = 96, faq_per_wording: int = 10, forum_per_wording: int = 2) -> dict[str, Path]:
    """Write sft.jsonl, prompts.jsonl, redteam.jsonl and corpus.txt to out_dir (atomically) and
    return their paths by name. Same arguments, byte-identical files. faq_per_wording and
    forum_per_wording size the corpus (demo/corpus.py build_corpus)."""
    out = Path(out_dir)
    rng = random.Random(seed)
    sft_rows = build_sft_rows(rng, n_sft)
    # its own stream: the log mix leaves the base alone
    corpus = build_corpus(random.Random(f"corpus-{seed}"), faq_per_wording=faq_per_wording,
                          forum_per_wording=forum_per_wording)
    sft_text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sft_rows)
    prompts, redteam = build_heldout(rng, sft_rows, corpus + sft_text, n_pref, n_eval, n_redteam)
    paths = {
        "sft": atomic_write_text(out / "sft.jsonl", sft_text),
        "prompts": write_jsonl(out / "prompts.jsonl", prompts),
        "redteam": write_jsonl(out / "redteam.jsonl", redteam),
        "corpus": atomic_write_text(out / "corpus.txt", corpus),
    }
    return paths
