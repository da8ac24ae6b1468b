"""Pieces every Trainer-based stage shares: a JSONL log of scalars, resumable checkpoints, and
which of `accelerate launch`'s modes each stage runs under."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from core import checkpoints, registry
from core.config import UserError
from core.io import append_jsonl

# How a process was started (launch_mode), and what each stage supports. configs/accelerate/*.yaml
# say the same in their "Stages:" line and the README's table (tests/test_gpu_recipes.py checks both).
LAUNCH_MODES = {"single": "one process", "ddp": "DDP (configs/accelerate/multi_gpu.yaml or cpu.yaml)",
                "zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3", "fsdp": "FSDP"}
STAGE_LAUNCH_MODES = {
    # Trainer-based; ZeRO-3 and FSDP gather the sharded adapter when the Trainer saves it
    "sft": ("single", "ddp", "zero2", "zero3", "fsdp"),
    # each RL algorithm's are in its core/registry.py entry, with the reason
    **{a.name: a.launch_modes for a in registry.ALGORITHMS},
    # our own loops, one process
    "reward": ("single",),
    "eval": ("single",),
}


def launch_mode(env: Mapping[str, str] | None = None) -> str:
    """How this process was started, from the environment `accelerate launch` and torchrun set:
    'fsdp', 'zero<stage>' (DeepSpeed), 'ddp' (several processes) or 'single'."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return f"zero{env.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '')}"
    return "ddp" if int(env.get("WORLD_SIZE", "1")) > 1 else "single"


def check_launch(stage: str, env: Mapping[str, str] | None = None) -> None:
    """Stop before any model is loaded when the stage cannot run the way it was launched."""
    alg = registry.get(stage)
    mode, allowed = launch_mode(env), alg.launch_modes if alg else STAGE_LAUNCH_MODES[stage]
    if mode not in allowed:
        how = " or ".join(LAUNCH_MODES[m] for m in allowed)
        hint = "run it without `accelerate launch` / torchrun" if allowed == ("single",) else \
            "launch it with configs/accelerate/multi_gpu.yaml"
        raise UserError(f"{stage} runs in {how}, not {LAUNCH_MODES.get(mode, mode)}: {hint}")


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


def prepare_resume(out: Path, resume: bool, stage: str) -> Path | None:
    """The Trainer checkpoint to resume from (None: a fresh start), through core.checkpoints: a
    resume cuts <out>/log.jsonl back to its step, a fresh start removes the old log. The Trainer
    writes and prunes its own checkpoints (save_total_limit)."""
    return checkpoints.start_or_resume(out, resume, stage, pattern=checkpoints.TRAINER, clear=False)


def trainer_kwargs(cfg, policy, out: Path) -> dict:
    """The TrainingArguments every Trainer-based stage shares, from its config and the device
    policy (core/device.py): never TRL's GPU-shaped defaults (bf16, checkpointing) on a CPU."""
    return dict(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.eval_steps,
        save_total_limit=cfg.save_total_limit,
        greater_is_better=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=policy.use_cpu,
        bf16=policy.bf16,
        fp16=policy.fp16,
        activation_checkpointing=policy.gradient_checkpointing,  # transformers 5: gradient_checkpointing is its old name
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=not policy.use_cpu,
    )


def weights_sha256(tensors: dict) -> str:
    """Fingerprint of named tensors (the trainable weights): equal on every process after a
    DDP run, and between a resumed and an uninterrupted run."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()
