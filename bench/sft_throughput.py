"""SFT training throughput on the tiny model: our SFT stage vs a plain PyTorch loop vs TRL defaults.

All three train the same LoRA configuration on identical batches (taken from our stage's own
dataloader), in one process, and report non-pad tokens/s over the timed steps (after warm-up); ours
and the plain loop run --repeats times each, alternating, and the best run of each counts:
  ours   sft/train.py's trainer (TRL SFTTrainer with Trainer's loss) and its device-aware arguments
  plain  forward, backward, clip, AdamW step: the floor any trainer pays
  trl    TRL SFTTrainer with its default SFTConfig (bf16 autocast, gradient checkpointing), use_cpu=True
Goal on CPU: ours >= 0.85x plain and >= 10x TRL's defaults.

    python bench/sft_throughput.py [--model runs/demo/base] [--data runs/demo/data/sft.jsonl] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


class StepTimer:
    """Wall time from the start of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == warmup:
                    timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.t1 = time.perf_counter()

        self.callback, self.t0, self.t1 = _CB(), None, None

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


def build_trainer(model_path, rows, steps, out, ours: bool, callbacks):
    from peft import get_peft_model
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from core.config import SFTConfig
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer, lora_config
    from sft.train import to_dataset, trainer_class, trl_args

    cfg = SFTConfig(max_steps=steps, batch_size=16, eval_steps=10_000, early_stopping_patience=0,
                    logging_steps=10_000)
    policy = resolve_device("cpu")
    tok = load_tokenizer(model_path)
    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(model_path, policy, tok), lora_config(cfg))
    if ours:
        args = trl_args(cfg, policy, Path(out))
        args.eval_strategy, args.save_strategy, args.load_best_model_at_end = "no", "no", False
    else:  # TRL's defaults; only what CPU training and a fair comparison require
        args = TRLSFTConfig(output_dir=str(out), use_cpu=True, max_steps=steps, per_device_train_batch_size=16,
                            learning_rate=cfg.learning_rate, report_to="none", save_strategy="no",
                            logging_steps=10_000, seed=0, data_seed=0)
    cls = trainer_class() if ours else SFTTrainer  # ours: the trainer sft/train.py runs
    return cls(model=model, args=args, train_dataset=to_dataset(rows), processing_class=tok,
               callbacks=callbacks), cfg


def run_trainer(model_path, rows, steps, warmup, ours: bool):
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = build_trainer(model_path, rows, steps, out, ours, [timer.callback])
        batches = [b for _, b in zip(range(steps), trainer.get_train_dataloader())]
        trainer.train()
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[warmup:])
    return tokens / timer.seconds, batches, trainer.args


def run_plain(model_path, rows, batches, warmup):
    """The same LoRA model and batches through a bare loop."""
    with tempfile.TemporaryDirectory() as out:
        trainer, cfg = build_trainer(model_path, rows, len(batches), out, True, [])
    model = trainer.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    tokens = 0
    for i, batch in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/demo/base")
    ap.add_argument("--data", default="runs/demo/data/sft.jsonl")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="runs of ours and of the plain loop, alternating")
    ap.add_argument("--trl_steps", type=int, default=6, help="TRL defaults are slow: fewer steps")
    args = ap.parse_args()
    if not Path(args.model, "config.json").exists():
        raise SystemExit(f"{args.model}: no model; run `make demo` (or `rlhf base`) first")
    from core.records import read_sft

    rows = read_sft(args.data)
    # alternating order, best of --repeats each: drift in the shared machine's load hits both
    ours_runs, plain_runs = [], []
    for _ in range(args.repeats):
        tok_s, batches, _ = run_trainer(args.model, rows, args.steps, args.warmup, ours=True)
        ours_runs.append(tok_s)
        plain_runs.append(run_plain(args.model, rows, batches, args.warmup))
    ours, plain = max(ours_runs), max(plain_runs)
    trl, _, trl_args_used = run_trainer(args.model, rows, args.trl_steps, 2, ours=False)
    result = {"ours_tok_s": round(ours, 1), "plain_tok_s": round(plain, 1), "trl_default_tok_s": round(trl, 1),
              "ours_vs_plain": round(ours / plain, 3), "ours_vs_trl_default": round(ours / trl, 2),
              "trl_default_bf16": trl_args_used.bf16,
              "trl_default_gradient_checkpointing": trl_args_used.gradient_checkpointing,
              "threads": torch.get_num_threads(), "steps": args.steps, "batch_size": 16,
              "ours_runs_tok_s": [round(x, 1) for x in ours_runs], "plain_runs_tok_s": [round(x, 1) for x in plain_runs]}
    print(f"ours {ours:,.0f} tok/s | plain loop {plain:,.0f} tok/s | TRL defaults {trl:,.0f} tok/s")
    print(f"ours / plain = {ours / plain:.3f} (goal >= 0.85); ours / TRL defaults = {ours / trl:.1f}x (goal >= 10)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
