"""Checkpoints and resume, for every training loop: list, save (atomically), prune, load, and the
random-number generators' state.

A stage keeps its checkpoints in <out>/checkpoints, named with the optimizer step they were taken
after: our own loops write `step-000040.pt` (one torch.save'd dict), TRL's Trainer writes
`checkpoint-40/` directories; `list_checkpoints` orders either kind by that step. Resuming
restores the newest one and cuts <out>/log.jsonl back to its step, so no step is logged twice.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from core.io import read_jsonl, write_jsonl

OURS = "step-*.pt"  # the pattern of our loops' checkpoints
TRAINER = "checkpoint-*"  # transformers.Trainer's


def step_of(path: Path) -> int:
    """The step a checkpoint was taken after: the last number in its name."""
    numbers = re.findall(r"\d+", Path(path).name)
    if not numbers:
        raise ValueError(f"{path}: no step number in the checkpoint's name")
    return int(numbers[-1])


def list_checkpoints(directory: Path, pattern: str = OURS) -> list[Path]:
    """Checkpoints in `directory` matching `pattern`, oldest first (by step, not by name)."""
    return sorted(Path(directory).glob(pattern), key=step_of)


def prune(directory: Path, keep: int, pattern: str = OURS) -> None:
    """Delete all but the newest `keep` checkpoints (files or directories)."""
    for old in list_checkpoints(directory, pattern)[:-keep] if keep > 0 else []:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save through a temporary file and a rename: a crash never leaves half a checkpoint."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def save(directory: Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` as <directory>/step-<step>.pt and keep the newest `keep` checkpoints."""
    path = atomic_save({"step": step, **state}, Path(directory) / f"step-{step:06d}.pt")
    prune(directory, keep)
    return path


def load(path: Path, map_location=None) -> dict:
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)  # our own files: optimizer state, RNG


def rng_state() -> dict:
    """Python's and torch's generators (CUDA's too when present): what a resumed loop needs to
    draw the same dropout masks and samples as the uninterrupted one."""
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after `step` (a resumed run writes them again)."""
    if path.exists():
        write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) <= step])


def start_or_resume(out: Path, resume: bool, stage: str, pattern: str = OURS, clear: bool = True,
                    main_process: bool = True, say: Callable[[str], None] = print) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start.

    Resuming cuts <out>/log.jsonl back to the checkpoint's step. A fresh start removes the old
    log and, with `clear`, the whole <out>/checkpoints directory: another run's checkpoints must
    never be mixed into this one. Only the main process touches files (`main_process`)."""
    directory = Path(out) / "checkpoints"
    found = list_checkpoints(directory, pattern) if resume else []
    if found:
        if main_process:
            truncate_log(Path(out) / "log.jsonl", step_of(found[-1]))
        say(f"[{stage}] resuming from {found[-1]} (step {step_of(found[-1])})")
        return found[-1]
    if resume:
        say(f"[{stage}] --resume: no checkpoint in {directory}, starting fresh")
    if main_process:
        (Path(out) / "log.jsonl").unlink(missing_ok=True)
        if clear:
            shutil.rmtree(directory, ignore_errors=True)
    return None
