"""TRL's and transformers' option names, read as ours, so a TRL YAML works here as it is.

Each alias maps to our key and, for a few flags that TRL spells as booleans, to a value. An alias
applies only where the stage has the key it maps to (`per_device_train_batch_size` is
`batch_size` for SFT, DPO and the reward model). Options that TRL has and this project does not
use are ignored with a note that says why, so a TRL YAML needs no editing.
"""
from __future__ import annotations

import difflib
from typing import Any

# TRL / transformers name → our name. The README's table is generated from this mapping's order.
ALIASES: dict[str, str] = {
    "model_name_or_path": "model",
    "dataset_name": "data",
    "output_dir": "out",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "num_epochs",
    "lr_scheduler_type": "lr_scheduler",
    "max_seq_length": "max_length",
    "lora_target_modules": "target_modules",
    "chat_template_path": "chat_template",
    "center_rewards_coefficient": "center_coef",
    "resume_from_checkpoint": "resume",
    "response_length": "max_new_tokens",
    "num_ppo_epochs": "ppo_epochs",
    "cliprange": "clip_eps",
    "cliprange_value": "clip_eps_value",
    "torch_dtype": "dtype",
    "bf16": "dtype",
    "fp16": "dtype",
}
# Boolean flags that become a value of our key: bf16: true → dtype: bfloat16.
FLAG_VALUES = {"bf16": "bfloat16", "fp16": "float16"}
# TRL / transformers options with no counterpart here, and why: ignored, with a note.
NOT_USED = {
    "report_to": "training scalars go to <out>/log.jsonl and the run card",
    "logging_dir": "logs go to <out>/log.jsonl",
    "push_to_hub": "nothing is uploaded; `rlhf export` writes a standalone model directory",
    "hub_model_id": "nothing is uploaded",
    "use_peft": "every policy stage trains LoRA adapters",
    "eval_strategy": "stages evaluate every eval_steps",
    "save_strategy": "stages checkpoint every eval_steps (save_steps for PPO)",
    "save_steps": "this stage saves a checkpoint at every evaluation (eval_steps), where it can keep the best",
    "logging_strategy": "scalars are logged every logging_steps",
    "per_device_eval_batch_size": "this stage evaluates in batches of batch_size",
    "gradient_checkpointing_kwargs": "activation checkpointing (gradient_checkpointing) is always non-reentrant",
    "optim": "stages train with torch's AdamW",
    "dataset_num_proc": "data is tokenized in the stage's own process",
    "attn_implementation": "the model's default attention is used",
    "dataset_text_field": "SFT reads TRL's messages or prompt/completion columns",
    "packing": "SFT trains on whole examples, completion-only loss",
}


def resolve(key: str, value: Any, known: set[str]) -> tuple[str, Any] | None:
    """(our key, value) for a TRL name that this stage has; None when `key` is no alias here."""
    ours = ALIASES.get(key)
    if ours is None or ours not in known:
        return None
    if key in FLAG_VALUES:
        if not isinstance(value, bool):
            return None
        return ours, FLAG_VALUES[key] if value else "auto"
    return ours, value


def unknown_hint(key: str, known: set[str]) -> str:
    """The tail of an 'unknown key' message: why a TRL option is not used, or the closest names."""
    if key in ALIASES:
        return f" (TRL's name for '{ALIASES[key]}', which this stage does not have)"
    close = difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.6)
    close += [n for n in sorted(known) if n.replace("_", "") == key.replace("_", "").replace("-", "")
              and n not in close]
    return f" (did you mean {' or '.join(repr(c) for c in close[:2])}?)" if close else ""
