"""What the PPO/RLOO loop (rl/pg_loop.py) reads: the training prompts, the reward model as a
function, and each iteration's prompts and seed, pure functions of (seed, step, rank) so that a
resumed run sees what the uninterrupted one saw."""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from core.config import UserError
from core.io import read_jsonl
from core.records import as_messages, read_prompts


def load_train_prompts(path: Path) -> list[list[dict]]:
    """Prompts for training, each the conversation's messages (system prompt and earlier turns
    included; rollouts render them with the chat template): every row not tagged 'eval' (those
    are held out for evaluation)."""
    rows = [r["prompt"] for r in read_prompts(path) if "eval" not in r["tags"]]
    if not rows:
        raise UserError(f"{path}: no training prompts (every row is tagged 'eval')")
    return rows


def load_reward_fn(path: Path, run: str, device, normalize: bool = True, max_rows: int = 512):
    """The reward model's scorer as a plain (prompts, responses) -> scores function.

    normalize: scores are shifted and scaled to mean 0, std 1 over the responses the reward model
    was trained on (<reward>/train.jsonl: the SFT policy's samples), as Ziegler et al. (2019)
    normalize theirs before PPO, so that β·KL, the missing-EOS penalty and kl_target mean the
    same whatever the reward model's scale. Computed from files, not from rollouts, so a
    resumed run gets the same constants.
    Returns (fn, {"mean", "std"} or None)."""
    if not path.exists():
        raise UserError(f"{path}: no reward model; PPO and RLOO optimize a reward model's score, so train one "
                        f"first with `rlhf reward --run {run}` (or pass --reward DIR)")
    from reward import load_scorer

    score = load_scorer(path, device=device).score
    rows = read_jsonl(path / "train.jsonl")[: max_rows // 2] if (path / "train.jsonl").exists() else []
    if not normalize or not rows:
        return score, None
    prompts = [as_messages(r["prompt"]) for r in rows for _ in (0, 1)]
    # a response is a string, or TRL's conversational form: a list holding one assistant message
    responses = [r[k] if isinstance(r[k], str) else r[k][-1]["content"] for r in rows for k in ("chosen", "rejected")]
    ref = torch.tensor(score(prompts, responses))
    mean, std = float(ref.mean()), float(ref.std().clamp_min(1e-6))
    return (lambda p, r: [(s - mean) / std for s in score(p, r)]), {"mean": mean, "std": std}


def prompt_batch(prompts: list, step: int, batch_size: int, rank: int, world: int, seed: int) -> list:
    """This process's prompts for an iteration: consecutive slices of per-epoch shuffles, a pure
    function of (step, rank) so resumed runs see the same prompts."""
    start = (step * world + rank) * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, len(prompts))
        order = list(range(len(prompts)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        out.append(prompts[order[i]])
    return out


def total_iterations(max_steps: int, num_epochs: float, n_prompts: int, batch_size: int, world: int) -> int:
    """max_steps when set, else enough iterations for num_epochs passes over the training prompts
    (each iteration samples batch_size prompts on each of `world` processes)."""
    if max_steps >= 0:
        return max_steps
    return max(1, math.ceil(num_epochs * n_prompts / (batch_size * world)))


def step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 1024 + rank) % (2**63)
