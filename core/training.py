"""Pieces every Trainer-based stage shares: a JSONL log of scalars and resumable checkpoints."""
from __future__ import annotations

from pathlib import Path

from core.io import append_jsonl, read_jsonl, write_jsonl


class JsonlLogger:
    """Trainer callback: every logged scalar goes to log.jsonl (flushed, so a crash keeps it)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self):  # transformers wants an instance of TrainerCallback; built lazily
        from transformers import TrainerCallback

        path = self.path

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs and state.is_world_process_zero:
                    append_jsonl(path, {"step": state.global_step, "epoch": state.epoch, **logs})

        return _CB()


def truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we restart from (they'd repeat)."""
    if path.exists():
        write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) <= step])


def last_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None
