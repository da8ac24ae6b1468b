"""Supervised fine-tuning of a LoRA chatbot with TRL's SFTTrainer.

main(cfg) reads top to bottom: seed → device → tokenizer (preflight) → data (check, split,
augment) → model + LoRA → TRL trainer → train (resumable) → validate → save + run card.

Loss is on completions only: every row is turned into TRL's conversational prompt/completion
form, so the chat template is applied the same way as at generation time and TRL masks the prompt.
TRL's own defaults (bf16 autocast, gradient checkpointing) are GPU-shaped: 16.6x slower on the CPUs
first measured, 1.7x on one with avx512_bf16 (core/device.py); `trl_args` is the one place where
our config becomes TRL's, device-aware.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from core.config import SFTConfig, UserError, tokenizer_fixes
from core.device import DevicePolicy, policy_from_config
from core.io import write_jsonl
from core.likelihood import completion_position_nll
from core.models import count_parameters, load_causal_lm, load_tokenizer, lora_config, pin_base_path, preflight
from core.records import read_sft
from core.runcard import data_info, write_run_card
from core.training import JsonlLogger, prepare_resume, trainer_kwargs
from sft.data import augment_paraphrases, check_rows, simple_paraphrase, split_train_val


def resolve_paths(cfg: SFTConfig) -> tuple[Path, Path, Path]:
    run = Path(cfg.run)
    model = Path(cfg.model) if cfg.model else run / "base"
    data = Path(cfg.data) if cfg.data else run / "data" / "sft.jsonl"
    out = Path(cfg.out) if cfg.out else run / "sft"
    return model, data, out


def token_counter(tok):
    """count(text) for the data check: the text's tokens plus the chat template's own tokens."""
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    overhead = len(tok.apply_chat_template(chat, tokenize=True, return_dict=False)) - len(
        tok("a", add_special_tokens=False)["input_ids"]) - len(tok("b", add_special_tokens=False)["input_ids"])

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"]) + overhead
    return count


def prepare_data(cfg: SFTConfig, data_path: Path, tok) -> tuple[list[dict], list[dict], dict]:
    """Read + validate, split before anything else, check, then augment the training side only."""
    rows = read_sft(data_path)
    train, val = split_train_val(rows, val_fraction=cfg.val_fraction, seed=cfg.seed)
    report = check_rows(train, val_rows=val, count_tokens=token_counter(tok), max_tokens=cfg.max_length)
    print(f"[sft] {data_path}: {len(rows)} rows, {len(val)} held out for validation; the training rows checked:")
    print(report.format())
    if cfg.check_data and not report.ok:
        raise UserError(f"{data_path}: the data check above found errors; nothing was trained. Fix the rows, or "
                        "pass --check_data false to train anyway")
    if cfg.augment:
        train = augment_paraphrases(train, simple_paraphrase, n_variants=cfg.augment, seed=cfg.seed, val_rows=val)
    return train, val, report.to_dict()


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


def trl_kwargs(cfg: SFTConfig, policy: DevicePolicy, out: Path) -> dict:
    """The arguments of TRL's SFTConfig for our config and device policy. Kept apart from
    `trl_args` because TrainingArguments checks the machine when built (bf16 on a machine without
    a GPU is refused): a GPU recipe's arguments can be checked anywhere."""
    return dict(
        **trainer_kwargs(cfg, policy, out),
        eval_strategy="steps",
        load_best_model_at_end=cfg.early_stopping_patience > 0,
        metric_for_best_model="eval_loss",
        max_length=cfg.max_length,
        packing=False,
        completion_only_loss=True,
        save_only_model=False,
    )


def trl_args(cfg: SFTConfig, policy: DevicePolicy, out: Path):
    """Our SFTConfig → TRL's SFTConfig. The single place TRL version changes touch."""
    from trl import SFTConfig as TRLSFTConfig

    return TRLSFTConfig(**trl_kwargs(cfg, policy, out))


MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "labels")
VAL_POSITION_ROWS = 256  # validation rows for the NLL by position (a forward pass each, batched)
# EOS NLL above this (p < 0.37) after SFT: the end of turn is not learned. The demo measured 3.1
# with a base that never saw its template, 0.2-0.25 with one that had.
EOS_NLL_WARN = 1.0


def trainer_class():
    """TRL's SFTTrainer with the loss of transformers' Trainer (`model(**inputs).loss`).

    TRL computes its loss through a fused, tiled LM head that also yields per-token entropy
    and top-1 accuracy for its logs; on the CPU that head cost more than the metrics are worth
    (bench/sft_throughput.py). Everything else (data collation with the completion-only label
    mask, scheduling, evaluation, checkpoints) stays TRL's.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {k: v for k, v in inputs.items() if k in MODEL_INPUTS}
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return LeanSFTTrainer


def main(cfg: SFTConfig, callbacks: list | None = None) -> dict:
    """Train the SFT adapter; returns metrics. `callbacks` are extra TrainerCallbacks (tests)."""
    from peft import get_peft_model
    from transformers import EarlyStoppingCallback, set_seed

    import datasets

    datasets.disable_progress_bars()  # one progress bar (training) is enough
    set_seed(cfg.seed)
    policy = policy_from_config(cfg)
    model_path, data_path, out = resolve_paths(cfg)
    print(f"[sft] {model_path} + {data_path} → {out}  ({policy.describe()})")

    # Tokenizer and data are checked before the output directory exists: a failed check leaves
    # nothing behind.
    tok = load_tokenizer(model_path, **tokenizer_fixes(cfg))
    preflight(tok)
    train_rows, val_rows, check = prepare_data(cfg, data_path, tok)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", train_rows)
    write_jsonl(out / "val.jsonl", val_rows)

    model = load_causal_lm(model_path, policy, tok, load_in_4bit=cfg.load_in_4bit)
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=policy.gradient_checkpointing)
    model = get_peft_model(model, lora_config(cfg))
    pin_base_path(model, model_path)
    n_trainable, n_total = count_parameters(model)
    print(f"[sft] LoRA r={cfg.lora_r}: {n_trainable:,} trainable of {n_total:,} parameters")

    log_path = out / "log.jsonl"
    resume_from = prepare_resume(out, cfg.resume, "sft")

    cbs = [JsonlLogger(log_path)()] + list(callbacks or [])
    if cfg.early_stopping_patience > 0:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = trainer_class()(model=model, args=trl_args(cfg, policy, out), train_dataset=to_dataset(train_rows),
                         eval_dataset=to_dataset(val_rows), processing_class=tok, callbacks=cbs)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.time() - t0

    val = trainer.evaluate()
    trainer.save_model(str(out))  # the adapter (best checkpoint when early stopping is on)
    tok.save_pretrained(str(out))
    by_position = completion_position_nll(trainer.model, tok, val_rows[:VAL_POSITION_ROWS], max_length=cfg.max_length)
    metrics = {
        "train_loss": result.training_loss,
        "val_loss": val["eval_loss"],
        "val_perplexity": math.exp(min(val["eval_loss"], 50.0)),
        "val_nll_by_position": by_position,
        "steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_seconds": round(train_seconds, 1),
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "trainable_params": n_trainable,
        "total_params": n_total,
        "device": policy.describe(),
        "data_check": {k: len(v) for k, v in check.items() if isinstance(v, list)},
    }
    write_run_card(
        out, stage="sft", cfg=cfg, metrics=metrics, base_model=str(model_path),
        data={"sft": data_info(data_path, len(train_rows) + len(val_rows)),
              "train split": data_info(out / "train.jsonl", len(train_rows), kind="split"),
              "validation split": data_info(out / "val.jsonl", len(val_rows), kind="split")},
        summary=(f"LoRA adapter (r={cfg.lora_r}, alpha={cfg.lora_alpha}, targets {cfg.target_modules}) "
                 f"trained with TRL's SFTTrainer on completions only. Validation perplexity "
                 f"{metrics['val_perplexity']:.3f} after {metrics['steps']} steps."))
    print(f"[sft] done: val loss {metrics['val_loss']:.4f}, perplexity {metrics['val_perplexity']:.3f}")
    warn_format(by_position)
    return metrics


def warn_format(nll: dict[str, float], eos_limit: float = EOS_NLL_WARN) -> bool:
    """Say so when the validation rows' end-of-turn token is not learned (see
    core.likelihood.position_nll); returns whether it warned."""
    if not nll["eos"] > eos_limit:
        return False
    print(f"[sft] warning: the end-of-turn token costs {nll['eos']:.2f} nats on validation rows (other tokens "
          f"{nll['other']:.2f}, the first token {nll['first']:.2f}): the policy will not reliably end its "
          f"answers. A base model that never saw its chat template's special tokens cannot learn them "
          f"through LoRA alone: use a base that knows its template, or pretrain with it (demo/corpus.py).")
    return True

