"""Where each round of the loop lives in a run directory.

Round 1 is the run directory itself (`<run>/collect`, `<run>/reward`, `<run>/dpo`, ...), so a
one-round run looks as it always has. Round k >= 2 is `<run>/rounds/<k>/`, a run directory of its
own: its `base`, `data` and `sft` are relative symbolic links to the run's, and its collect,
reward, RL and eval directories are its own. Every stage and command therefore works on a round as
on any run (`rlhf chat --run runs/demo/rounds/2 --policy ppo`), and the rounds' artifacts sit side
by side. The annotation store stays the run's (`<run>/collect/annotations.db`, or `--db`): one
app for every round, each item tagged with its round.
"""
from __future__ import annotations

import os
from pathlib import Path

SHARED = ("base", "data", "sft")  # what every round of a run shares, linked from the run's top


def round_dir(root: str | Path, k: int) -> Path:
    """The directory of round k of the run at `root`."""
    if k < 1:
        raise ValueError(f"rounds count from 1, got {k}")
    return Path(root) if k == 1 else Path(root) / "rounds" / str(k)


def make_round_dir(root: str | Path, k: int) -> Path:
    """Create round k's directory with its links to the shared parts (links may point at parts an
    earlier stage has not written yet); returns it."""
    out = round_dir(root, k)
    if k == 1:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        link = out / name
        target = Path(os.path.relpath(Path(root) / name, out))
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            continue  # a copy made without links (shutil.copytree): the same contents, kept as they are
        link.symlink_to(target, target_is_directory=True)
    return out


def locate(run: str | Path) -> tuple[Path, int]:
    """(the run's top directory, the round number) of a directory made by `round_dir`."""
    run = Path(run)
    if run.parent.name == "rounds" and run.name.isdigit() and int(run.name) >= 2:
        return run.parent.parent, int(run.name)
    return run, 1


def rounds_up_to(run: str | Path) -> list[tuple[int, Path]]:
    """[(1, top), (2, top/rounds/2), ..., (k, run)]: the rounds up to and including `run`'s."""
    root, k = locate(run)
    return [(j, round_dir(root, j)) for j in range(1, k + 1)]


# <round>/collect/store_round.json: the round number an attempt at round k gave its items in the
# store (loop/rounds.py store_round); eval reads it to find the round's own pairs.
STORE_ROUND = "store_round.json"


def store_round_of(run: str | Path) -> int:
    """The store's round number of round `run`'s items (the round itself when none was recorded)."""
    import json

    marker = Path(run) / "collect" / STORE_ROUND
    return json.loads(marker.read_text())["round"] if marker.exists() else locate(run)[1]
