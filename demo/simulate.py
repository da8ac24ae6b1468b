"""Simulated annotators for the demo and the tests (`rlhf collect simulate`).

They vote through the same functions the app calls (collect.assign.next_item →
collect.votes.submit_vote), so a simulated run exercises assignment, side swaps, validation and
the audit log exactly as people do.

A careful annotator perceives each response's quality as the demo oracle's "overall"
plus Gaussian noise (sd `noise`, per annotator and item), picks the better one, says tie when
the two are within `tie_within`, both_bad when both are below `both_bad_below`, rates each
aspect as the oracle's rating plus noise (rounded, clipped to 1-5) and ticks a harm category
when the oracle rates a response's harmfulness >= 4.
A careless annotator answers at random and, as careless people do, mostly clicks the left
response (`left_bias`) and straight-lines the ratings (one value for every aspect, never
harmful: they do not read closely enough to notice).
"""
from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from collect.assign import ItemView, next_item
from collect.cli import add_run_db
from collect.commands import store_for
from collect.store import Store
from collect.users import add_user, get_user
from collect.votes import HARM_CATEGORIES, submit_vote
from core.records import ASPECTS
from demo import domain, oracle

HARMFUL = 4
_score = lru_cache(maxsize=65536)(oracle.score)  # each response is judged by several annotators


def _harm_category(prompt: str) -> str:
    """The demo intent's category when the prompt is a known harmful request."""
    parsed = domain.parse(prompt)
    category = domain.INTENT_BY_NAME[parsed[0]].category if parsed else ""
    return category if category in HARM_CATEGORIES else "dangerous"


@dataclass
class SimAnnotator:
    name: str
    careless: bool
    rng: random.Random
    noise: float = 0.3
    tie_within: float = 0.15
    both_bad_below: float = 2.0
    left_bias: float = 0.75

    def answer(self, view: ItemView, score: Callable[[str, str], dict]) -> dict[str, Any]:
        return self._careless() if self.careless else self._careful(view, score)

    def _careful(self, view: ItemView, score) -> dict[str, Any]:
        sl, sr = score(view.prompt, view.left), score(view.prompt, view.right)
        ql = sl["overall"] + self.rng.gauss(0.0, self.noise)
        qr = sr["overall"] + self.rng.gauss(0.0, self.noise)
        if max(ql, qr) < self.both_bad_below:
            choice = "both_bad"
        elif abs(ql - qr) < self.tie_within:
            choice = "tie"
        else:
            choice = "left" if ql > qr else "right"
        harmful = max(sl["harmfulness"], sr["harmfulness"]) >= HARMFUL
        return {"choice_shown": choice, "aspects_left": self._rate(sl),
                "aspects_right": self._rate(sr),
                "harm_flags": [_harm_category(view.prompt)] if harmful else []}

    def _rate(self, s: dict) -> dict[str, int]:
        return {a: min(5, max(1, round(s[a] + self.rng.gauss(0.0, self.noise)))) for a in ASPECTS}

    def _careless(self) -> dict[str, Any]:
        if self.rng.random() < self.left_bias:
            choice = "left"
        else:
            choice = self.rng.choice(("right", "tie", "both_bad"))
        flat = dict.fromkeys(ASPECTS, self.rng.randint(3, 5)) | {"harmfulness": 1}
        return {"choice_shown": choice, "aspects_left": flat, "aspects_right": dict(flat),
                "harm_flags": []}


def ensure_annotators(store: Store, n_annotators: int, careless: int) -> list[str]:
    """sim1..simN (created if missing, with unusable random passwords); the last `careless`
    of them answer carelessly."""
    if not 0 <= careless <= n_annotators:
        raise ValueError(f"need 0 <= careless <= n_annotators, got {careless}, {n_annotators}")
    names = [f"sim{i}" for i in range(1, n_annotators + 1)]
    for name in names:
        if get_user(store, name) is None:
            add_user(store, name, "annotator", secrets.token_urlsafe(24), actor="simulate")
    return names


def simulate(store: Store, n_annotators: int = 5, careless: int = 1, seed: int = 0,
             noise: float = 0.3, overlap: int = 3, gold_rate: float = 0.1,
             score: Callable[[str, str], dict] | None = None, **behaviour: float
             ) -> dict[str, Any]:
    """Let the annotators vote, one item each in turn, until nothing is left for any of them.
    Deterministic for a seed. behaviour: tie_within, both_bad_below, left_bias."""
    score = score or _score
    names = ensure_annotators(store, n_annotators, careless)
    sims = [SimAnnotator(name, i >= n_annotators - careless, random.Random(f"{seed}:{name}"),
                         noise=noise, **behaviour) for i, name in enumerate(names)]
    counts = dict.fromkeys(names, 0)
    waiting = list(sims)
    while waiting:
        for sim in list(waiting):
            view = next_item(store, sim.name, overlap=overlap, gold_rate=gold_rate, seed=seed)
            if view is None:
                waiting.remove(sim)
                continue
            started = time.time()
            submit_vote(store, sim.name, view.item_id, started_at=started, overlap=overlap,
                        **sim.answer(view, score))
            counts[sim.name] += 1
    return {"votes": counts, "careless": [s.name for s in sims if s.careless],
            "n_votes": sum(counts.values())}


def simulate_run(run: str | Path, n_annotators: int = 5, careless: int = 1, seed: int = 0,
                 overlap: int = 3, gold_rate: float = 0.1, db: str | None = None,
                 **behaviour: float) -> dict[str, Any]:
    """`simulate` on the run's store (db, default <run>/collect/annotations.db), with a summary
    printed. behaviour: SimAnnotator's tie_within, both_bad_below, left_bias."""
    store = store_for(run, db)
    try:
        out = simulate(store, n_annotators=n_annotators, careless=careless, seed=seed, overlap=overlap,
                       gold_rate=gold_rate, **behaviour)
    finally:
        store.close()
    per = ", ".join(f"{k} {n}" for k, n in out["votes"].items())
    print(f"{n_annotators} simulated annotators cast {out['n_votes']} votes ({per}); "
          f"careless: {', '.join(out['careless']) or 'none'}")
    return out


def cli_main(argv: list[str]) -> int:
    """`rlhf collect simulate [--run DIR] [--annotators N] ...`."""
    import argparse

    p = argparse.ArgumentParser(prog="rlhf collect simulate", description="Simulated annotators vote on the "
                                "stored items, judging by the demo's gold oracle.")
    add_run_db(p)
    p.add_argument("--annotators", type=int, default=5)
    p.add_argument("--careless", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--gold_rate", type=float, default=0.1)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already explained
        return int(e.code or 0)
    simulate_run(args.run, n_annotators=args.annotators, careless=args.careless, seed=args.seed,
                 overlap=args.overlap, gold_rate=args.gold_rate, db=args.db)
    return 0
