"""The loop's annotation step with people: sample comparison items from the SFT policy, then
wait until the annotators' votes give enough preference pairs, then export them.

Waiting is a stop, not a failure: `rlhf loop` prints how to open the annotation app on this run
and how many pairs are in, and the same command continues from the votes once enough are in.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from core.config import mask_url
from core.io import write_json


def mask_argv(argv: list[str]) -> list[str]:
    """A command line with every database URL's password masked."""
    return [mask_url(a) for a in argv]


_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}


def rerun_argv(argv: list[str]) -> list[str]:
    """The command line to run again once the votes are in: without --fresh, which would move
    the votes just given aside and sample new items."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--fresh":
            skip = i + 1 < len(argv) and argv[i + 1].lower() in _BOOL_WORDS
            continue
        if a.startswith("--fresh="):
            continue
        out.append(a)
    return out


class AwaitingVotes(Exception):
    """The loop stops here until the annotators have voted on enough items."""


# `rlhf loop`'s exit status when it stopped to wait for votes: not an error (2), not done (0), so
# a script that runs the loop can tell the three apart
AWAITING_VOTES_EXIT = 3


@dataclass
class CollectConfig:
    """What the people-annotation step needs; built by loop.run from LoopConfig."""
    run: str
    n_pairs: int
    min_pairs: int
    min_votes: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256
    batch_size: int = 32
    workers: int = 1  # single-thread processes that share the sampling on the CPU (collect/generate.py)
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    eos_token: str = ""
    chat_template: str = ""
    db: str = ""  # the store's URL; '' = <run>/collect/annotations.db


def count_pairs(run: Path, min_votes: int, db: str = "", round_no: int = 0) -> tuple[int, dict]:
    """Pairs an export would write now, and the store's counts (round_no: that round's items only)."""
    from collect.commands import store_for
    from collect.export import build_pairs

    store = store_for(run, db or None)
    try:
        rows, stats = build_pairs(store, min_votes=min_votes, round_no=round_no)
    finally:
        store.close()
    return len(rows), stats


def waiting_message(run: Path, n_pairs: int, stats: dict, min_pairs: int, argv: list[str] | None,
                    db: str = "", round_no: int = 1) -> str:
    """argv: the `rlhf` command line after `rlhf` (None: name it in words). db: the store's URL,
    shown with its password masked. round_no: the annotation round waiting for votes."""
    again = "rlhf " + shlex.join(mask_argv(rerun_argv(argv))) if argv else "the same `rlhf loop` command"
    run_q = shlex.quote(str(run)) + (f" --db {shlex.quote(mask_url(db))}" if db else "")
    which = f"round {round_no}'s " if round_no > 1 else ""
    return "\n".join([
        f"[loop] collect: waiting for votes. The annotators' votes on {which}items give {n_pairs} preference "
        f"pair(s) so far (from {stats.get('n_items', 0)} items); the loop needs {min_pairs} to go on.",
        "  Add accounts (each asks for a password):",
        f"    rlhf collect users add --run {run_q} NAME --role annotator",
        "  Open the annotation app on this run:",
        f"    rlhf collect serve --run {run_q}",
        f"  Progress and agreement: rlhf collect report --run {run_q}",
        f"  Once {min_pairs} pairs are in, run the same command again; it continues from the votes:",
        f"    {again}",
    ])


def collect_from_people(cfg: CollectConfig, argv: list[str] | None = None) -> dict:
    from collect.commands import export
    from collect.generate import generate_pairs

    run = Path(cfg.run)
    generate_pairs(run, policy="sft", n=cfg.n_pairs, temperature=cfg.temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed,
                   device=cfg.device, threads=cfg.threads,
                   tokenizer_fixes={"eos_token": cfg.eos_token, "chat_template": cfg.chat_template},
                   db=cfg.db or None, workers=cfg.workers)
    n_pairs, stats = count_pairs(run, cfg.min_votes, cfg.db)
    if n_pairs < cfg.min_pairs:
        raise AwaitingVotes(waiting_message(run, n_pairs, stats, cfg.min_pairs, argv, cfg.db))
    out = export(run, min_votes=cfg.min_votes, db=cfg.db or None)
    metrics = {"n_pairs": out["n_pairs"], "n_items": out["n_items"], "excluded": out["excluded"],
               "flagged_annotators": out["flagged_annotators"]}
    write_json(run / "collect" / "metrics.json", metrics)
    return metrics
