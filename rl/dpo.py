"""`rlhf dpo`: Direct Preference Optimization of the SFT LoRA policy with TRL's DPOTrainer.

main(cfg) reads top to bottom: seed → device → tokenizer (preflight) → pairs (the file's, and
on-policy ones when asked; split by prompt, ε from the votes) → model (base + SFT adapter,
trainable) → trainer → train (resumable) → held-out evaluation → save the adapter + run card.

The reference is the SFT policy, without a second copy of the model. TRL 1.16, given a PeftModel
with a pretrained adapter and ref_model=None, adds a frozen adapter "ref" with the SFT weights
next to the trainable "default" one and switches to it for the reference forward. We use that
rather than the other design (merge the SFT adapter into the base, train a fresh adapter on it,
reference = adapters disabled) because:
- the DPO adapter stays an adapter of the run's base: `PeftModel.from_pretrained(base, run/dpo)`
  loads it, and eval/ compares base, sft, dpo and ppo as adapters on one copy of the base
  weights. A merged base would be a second full model on disk and in every later stage;
- merging is lossy on a 4-bit QLoRA base (it must be dequantized), the ref adapter is not;
- DPO starts from the SFT adapter's own weights, so the trained adapter has the SFT rank and
  targets, and step 0 is exactly the SFT policy.
The cost is one more LoRA adapter in memory: `ref_adapter_bytes` / `base_param_bytes` in
metrics.json: for the demo-sized model (5.2M parameters, r = 16 on all linear layers) 1.79 MB
against 20.9 MB of base weights (8.6%); for Qwen2.5-0.5B with the same LoRA about 1.8%. The
merged design would instead hold a second full copy of the weights wherever the base is needed.
With `precompute_ref_log_probs` the reference forward runs once per pair before training
instead of once per step (bench/dpo_precompute.py).

On-policy pairs (`onpolicy_samples` k > 0, rl/onpolicy.py): before training, the starting policy
answers every training prompt k times (the run's prompts, else the preference file's), and the
reward model's best answer against its worst becomes one more pair (ε 0: no votes). They are
split by the same prompt rule as the file's pairs, so a held-out prompt's on-policy pair is held
out too.

Our extension (rl/dpo_trainer.py): ε per pair from the annotators' agreement
(`rl.dpo_loss.smoothing_from_agreement`), conservative DPO for "sigmoid", robust DPO for "robust".

Early stopping: held-out pairs are evaluated every `eval_steps`; the best checkpoint is the one
with the lowest held-out DPO loss, among those whose held-out KL estimate stays under `max_kl`.
Held-out loss rather than held-out preference accuracy because accuracy is coarse on a few dozen
pairs and saturates at 1.0 early, while the policy keeps drifting (a tiny-model run that collapsed
into repetition had a training loss of 0.02, i.e. every pair "right"). With ε > 0 (the default: every pair gets some
smoothing) the loss has its minimum at a finite margin h = log((1 − ε)/ε) and rises again when
the margins overshoot; the KL limit catches the drift that the loss cannot see.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from core.config import ConfigError, UserError
from core.device import DevicePolicy, policy_from_config
from core.io import read_jsonl, write_jsonl
from core.models import count_parameters, load_policy, load_tokenizer, preflight
from core.policies import base_dir
from core.records import file_row, read_preferences, validate_preference
from core.runcard import data_info, write_run_card
from core.split import split_by_prompt
from core.config import DPOConfig, tokenizer_fixes
from core.training import JsonlLogger, check_launch, prepare_resume, trainer_kwargs, weights_sha256
from rl.dpo_loss import LOSS_TYPES, smoothing_from_agreement


def check_config(cfg: DPOConfig) -> None:
    """Option checks that need no file, before anything is loaded."""
    if cfg.loss_type not in LOSS_TYPES:
        raise UserError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {cfg.loss_type!r}")
    if cfg.nll_coef < 0:
        raise ConfigError(f"key 'nll_coef' must be >= 0, got {cfg.nll_coef}")
    if cfg.onpolicy_samples < 0 or cfg.onpolicy_samples == 1:
        raise ConfigError(f"key 'onpolicy_samples' must be 0 (off) or at least 2 (a best and a worst answer), "
                          f"got {cfg.onpolicy_samples}")
    if cfg.onpolicy_samples:
        if cfg.onpolicy_min_gap < 0:
            raise ConfigError(f"key 'onpolicy_min_gap' must be >= 0, got {cfg.onpolicy_min_gap}")
        if cfg.onpolicy_temperature <= 0:
            raise ConfigError(f"key 'onpolicy_temperature' must be > 0 (greedy answers are all the same), "
                              f"got {cfg.onpolicy_temperature}")
        if cfg.onpolicy_max_new_tokens < 1 or cfg.onpolicy_batch_size < 1:
            raise ConfigError("keys 'onpolicy_max_new_tokens' and 'onpolicy_batch_size' must be >= 1")


def reward_path(cfg: DPOConfig) -> Path:
    """The reward model that ranks on-policy answers: onpolicy_reward, or <run>/reward."""
    return Path(cfg.onpolicy_reward) if cfg.onpolicy_reward else Path(cfg.run) / "reward"


def resolve_paths(cfg: DPOConfig) -> tuple[Path, Path, Path, Path]:
    run = Path(cfg.run)
    model = Path(cfg.model) if cfg.model else base_dir(run)
    sft = Path(cfg.sft) if cfg.sft else run / "sft"
    data = Path(cfg.data) if cfg.data else run / "collect" / "preferences.jsonl"
    out = Path(cfg.out) if cfg.out else run / "dpo"
    return model, sft, data, out


def load_split(data_path: Path, cfg: DPOConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(all, train, held-out) preference pairs: every row validated, whole prompts held out by
    core.split's rule (the reward stage holds out the same ones)."""
    rows = read_preferences(data_path)
    return (rows, *split_by_prompt(rows, cfg.val_fraction, cfg.seed))


def with_onpolicy_pairs(cfg: DPOConfig, rows: list[dict], model_path: Path, sft_path: Path, out: Path, policy,
                        tok, reward_fn=None) -> tuple[list[dict], dict]:
    """The file's pairs (unless onpolicy_keep_pairs is off) plus the on-policy pairs of rl/onpolicy.py,
    each row marked with its source. Under a multi-process launch the main process samples and writes
    the pairs; the others read its file."""
    from accelerate import PartialState

    from rl.onpolicy import PAIRS_FILE, build_pairs

    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            pairs, stats = build_pairs(cfg, rows, model_path, sft_path, reward_path(cfg), out, policy, tok,
                                       reward_fn)
        else:
            pairs = read_jsonl(out / PAIRS_FILE)
            stats = {"onpolicy_pairs": len(pairs)}
    made = [{**validate_preference(p), "source": "onpolicy"} for p in pairs]
    kept = [{**r, "source": "file"} for r in rows] if cfg.onpolicy_keep_pairs else []
    return kept + made, stats


def pair_smoothing(rows: list[dict], cfg: DPOConfig) -> list[float]:
    """ε for each pair: from its votes ('agreement') or one number; checked against the loss type.
    With 'agreement', a pair without vote counts (n_votes missing: not from an annotation round)
    gets ε = 0, plain DPO: there is no evidence that its label is uncertain."""
    import torch

    if cfg.label_smoothing == "agreement":
        voted = [r for r in rows if r.get("n_votes") is not None]
        smoothed = iter(smoothing_from_agreement(torch.tensor([r["agreement"] for r in voted]),
                                                 torch.tensor([r["n_votes"] for r in voted]),
                                                 max_eps=cfg.max_eps, prior=cfg.smoothing_prior).tolist()
                        if voted else [])
        eps = [next(smoothed) if r.get("n_votes") is not None else 0.0 for r in rows]
    elif isinstance(cfg.label_smoothing, (int, float)):
        eps = [float(cfg.label_smoothing)] * len(rows)
    else:
        raise UserError(f"label_smoothing must be 'agreement' or a number, got {cfg.label_smoothing!r}")
    low, top = min(eps, default=0.0), max(eps, default=0.0)
    if cfg.loss_type == "ipo" and (low, top) != (0.0, 0.0):
        raise UserError("loss_type 'ipo' takes no label smoothing: pass --label_smoothing 0")
    if cfg.loss_type == "robust" and not (0 <= low and top < 0.5):
        raise UserError(f"loss_type 'robust' needs 0 <= label_smoothing < 0.5, got {low}..{top}")
    if cfg.loss_type == "sigmoid" and not (0 <= low and top <= 0.5):
        raise UserError(f"label_smoothing must lie in [0, 0.5] for 'sigmoid', got {low}..{top}")
    return eps


def to_dataset(rows: list[dict], eps: list[float]):
    """TRL's conversational preference format, so the SFT chat template is applied the same way;
    the prompt is the whole conversation (system prompt and earlier turns included)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"],
                               "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}],
                               "label_smoothing": e} for r, e in zip(rows, eps)])


def trl_kwargs(cfg: DPOConfig, policy: DevicePolicy, out: Path, evaluate: bool = True) -> dict:
    """The arguments of TRL's DPOConfig for our config and device policy (checkable on any
    machine: TrainingArguments refuses bf16 where there is no GPU when it is built)."""
    keep_best = evaluate and (cfg.early_stopping_patience > 0 or cfg.max_kl > 0)
    return dict(
        **trainer_kwargs(cfg, policy, out),
        eval_strategy="steps" if evaluate else "no",
        load_best_model_at_end=keep_best,
        metric_for_best_model="eval_objective" if keep_best else None,  # set by KLGuard, see below
        # DPO
        beta=cfg.beta,
        loss_type=[cfg.loss_type],  # one loss: SmoothedDPOTrainer computes it with rl.dpo_loss
        label_smoothing=0.0,  # ours is per pair, in the dataset's label_smoothing column
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        max_length=cfg.max_length,
        disable_dropout=True,  # policy and reference must agree exactly at step 0
    )


def trl_args(cfg: DPOConfig, policy: DevicePolicy, out: Path, evaluate: bool = True):
    """Our DPOConfig → TRL's DPOConfig. The single place TRL version changes touch."""
    from trl import DPOConfig as TRLDPOConfig

    return TRLDPOConfig(**trl_kwargs(cfg, policy, out, evaluate))


class KLGuard:
    """Trainer callback factory: after each evaluation, `eval_objective` = held-out loss, or +inf
    when the held-out KL estimate passed max_kl (that checkpoint can never be the best), and
    training stops there. Runs before EarlyStoppingCallback, which reads eval_objective."""

    def __init__(self, max_kl: float):
        self.max_kl = max_kl
        self.tripped_at: int | None = None

    def __call__(self):
        from transformers import TrainerCallback

        guard = self

        class _CB(TrainerCallback):
            def on_evaluate(self, args, state, control, metrics=None, **kw):
                kl = metrics.get("eval_kl", 0.0)
                over = guard.max_kl > 0 and kl > guard.max_kl
                metrics["eval_objective"] = math.inf if over else metrics["eval_loss"]
                if over and state.is_world_process_zero and guard.tripped_at is None:
                    guard.tripped_at = state.global_step
                    print(f"[dpo] held-out KL {kl:.3f} > max_kl {guard.max_kl} at step {state.global_step}: "
                          "stopping; the best checkpoint under the limit is kept")
                control.should_training_stop |= over

        return _CB()


def parameter_bytes(model) -> dict[str, int]:
    """Bytes of the frozen base, the trained adapter and TRL's reference adapter."""
    sizes = {"base_param_bytes": 0, "policy_adapter_bytes": 0, "ref_adapter_bytes": 0}
    for name, p in model.named_parameters():
        key = ("ref_adapter_bytes" if ".ref." in name else "policy_adapter_bytes") if "lora_" in name \
            else "base_param_bytes"
        sizes[key] += p.numel() * p.element_size()
    return sizes


def build_trainer(cfg: DPOConfig, callbacks: list | None = None, reward_fn=None):
    """Tokenizer, pairs, policy and trainer: everything main() needs before `train()`.

    Returns (trainer, info) where info holds the paths, splits, ε and the KL guard."""
    from transformers import EarlyStoppingCallback

    from rl.dpo_trainer import PreferenceCollator, SmoothedDPOTrainer

    check_config(cfg)
    check_launch("dpo")
    policy = policy_from_config(cfg)
    model_path, sft_path, data_path, out = resolve_paths(cfg)
    if not (sft_path / "adapter_config.json").exists():
        raise UserError(f"{sft_path}: no SFT adapter; DPO starts from it (run `rlhf sft --run {cfg.run}`)")
    if cfg.onpolicy_samples and reward_fn is None and not (reward_path(cfg) / "reward_model.json").exists():
        raise UserError(f"{reward_path(cfg)}: no reward model to rank the on-policy answers (train one with "
                        f"`rlhf reward --run {cfg.run}`, or pass --onpolicy_reward DIR)")
    if cfg.onpolicy_samples and cfg.onpolicy_prompts and not Path(cfg.onpolicy_prompts).is_file():
        raise UserError(f"{cfg.onpolicy_prompts}: no such prompts file (key 'onpolicy_prompts')")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[dpo] {model_path} + {sft_path} + {data_path} → {out}  ({policy.describe()})")

    tok = load_tokenizer(model_path, **tokenizer_fixes(cfg))
    preflight(tok)

    rows, train_rows, val_rows = load_split(data_path, cfg)
    file_rows, onpolicy = len(rows), {}
    if cfg.onpolicy_samples:
        rows, onpolicy = with_onpolicy_pairs(cfg, rows, model_path, sft_path, out, policy, tok, reward_fn)
        train_rows, val_rows = split_by_prompt(rows, cfg.val_fraction, cfg.seed)
    train_eps, val_eps = pair_smoothing(train_rows, cfg), pair_smoothing(val_rows, cfg)
    write_jsonl(out / "train.jsonl", [{**file_row(r), "label_smoothing": e} for r, e in zip(train_rows, train_eps)])
    write_jsonl(out / "val.jsonl", [{**file_row(r), "label_smoothing": e} for r, e in zip(val_rows, val_eps)])
    print(f"[dpo] {len(train_rows)} training pairs, {len(val_rows)} held out; "
          f"mean ε {sum(train_eps) / max(len(train_eps), 1):.3f} ({cfg.label_smoothing})")

    # The SFT adapter, trainable: TRL copies it into a frozen "ref" adapter (ref_model=None).
    model = load_policy(model_path, policy, tok, adapter=sft_path, trainable=True, load_in_4bit=cfg.load_in_4bit)

    evaluate = bool(val_rows)
    guard = KLGuard(cfg.max_kl)
    cbs = [JsonlLogger(out / "log.jsonl")()]
    if evaluate:
        cbs.append(guard())
        if cfg.early_stopping_patience > 0:
            cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = SmoothedDPOTrainer(
        model=model, ref_model=None, args=trl_args(cfg, policy, out, evaluate),
        data_collator=PreferenceCollator(pad_token_id=tok.pad_token_id, max_length=cfg.max_length),
        train_dataset=to_dataset(train_rows, train_eps),
        eval_dataset=to_dataset(val_rows, val_eps) if evaluate else None,
        processing_class=tok, callbacks=cbs + list(callbacks or []), nll_coef=cfg.nll_coef)
    info = {"onpolicy": onpolicy, "file_rows": file_rows,
            "policy": policy, "model_path": model_path, "sft_path": sft_path, "data_path": data_path, "out": out,
            "tokenizer": tok, "train_rows": train_rows, "val_rows": val_rows, "train_eps": train_eps,
            "guard": guard}
    return trainer, info


def main(cfg: DPOConfig, callbacks: list | None = None, reward_fn=None) -> dict:
    """Train the DPO adapter; returns metrics. `callbacks` are extra TrainerCallbacks and
    `reward_fn(prompts, responses) -> scores` replaces the reward model of on-policy pairs (tests)."""
    from transformers import set_seed

    import datasets

    datasets.disable_progress_bars()
    set_seed(cfg.seed)
    trainer, info = build_trainer(cfg, callbacks, reward_fn)
    out = info["out"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    memory = parameter_bytes(model)
    n_trainable, n_total = count_parameters(model)
    print(f"[dpo] {n_trainable:,} trainable of {n_total:,} parameters; reference adapter "
          f"{memory['ref_adapter_bytes'] / 2**20:.2f} MiB vs base {memory['base_param_bytes'] / 2**20:.2f} MiB")

    resume_from = prepare_resume(out, cfg.resume, "dpo")

    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.time() - t0
    steps = trainer.state.global_step

    held_out = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()} if info["val_rows"] else {}
    if trainer.is_world_process_zero():
        # Only the trained "default" adapter: "ref" is a copy of run/sft.
        model.save_pretrained(str(out), selected_adapters=["default"])
        info["tokenizer"].save_pretrained(str(out))
    metrics = {
        "train_loss": result.training_loss,
        "val_loss": held_out.get("loss"),
        "val_accuracy": held_out.get("rewards/accuracies"),
        "val_margin": held_out.get("rewards/margins"),
        "val_kl_per_token": held_out.get("kl"),
        "val": {k: v for k, v in held_out.items()
                if k not in ("objective", "epoch", "runtime") and "per_second" not in k},
        "steps": steps,
        "steps_per_second": round(steps / train_seconds, 3) if train_seconds > 0 else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "kl_guard_tripped_at_step": info["guard"].tripped_at,
        "train_seconds": round(train_seconds, 1),
        "train_pairs": len(info["train_rows"]),
        **info["onpolicy"],
        "val_pairs": len(info["val_rows"]),
        "mean_label_smoothing": sum(info["train_eps"]) / max(len(info["train_eps"]), 1),
        "trainable_params": n_trainable,
        "total_params": n_total,
        **memory,
        "ref_adapter_vs_base": memory["ref_adapter_bytes"] / max(memory["base_param_bytes"], 1),
        "device": info["policy"].describe(),
        "processes": trainer.accelerator.num_processes,
        # the trained adapter's fingerprint: equal on every process after a DDP run
        "weights_sha256": weights_sha256({n: p for n, p in model.named_parameters() if p.requires_grad}),
    }
    write_run_card(
        out, stage="dpo", cfg=cfg, metrics=metrics, base_model=str(info["model_path"]),
        data={"preferences": data_info(info["data_path"], info["file_rows"]),
              **({"on-policy pairs": data_info(out / "onpolicy_pairs.jsonl", info["onpolicy"]["onpolicy_pairs"]),
                  "reward model (ranks them)": data_info(reward_path(cfg), kind="model")}
                 if cfg.onpolicy_samples else {}),
              "train split": data_info(out / "train.jsonl", len(info["train_rows"]), kind="split"),
              "held-out split": data_info(out / "val.jsonl", len(info["val_rows"]), kind="split"),
              "reference (SFT adapter)": data_info(info["sft_path"], kind="model")},
        summary=(f"LoRA adapter trained from the SFT adapter with TRL's DPOTrainer, loss '{cfg.loss_type}', "
                 f"β = {cfg.beta}, label smoothing {cfg.label_smoothing!r} (ε per pair from the annotators' "
                 f"votes when 'agreement')"
                 + (f", plus {cfg.nll_coef} x the chosen answers' NLL per token" if cfg.nll_coef else "")
                 + ". The reference is the SFT adapter, frozen, on the same base weights. "
                 + (f"Trained on {metrics['onpolicy_pairs']} on-policy pairs (the best against the worst of "
                    f"{cfg.onpolicy_samples} answers per prompt, ranked by the reward model)"
                    + (" beside the file's pairs. " if cfg.onpolicy_keep_pairs else ". ")
                    if cfg.onpolicy_samples else "")
                 + f"Held-out preference accuracy {_fmt(metrics['val_accuracy'])} after {steps} steps."))
    print(f"[dpo] done: held-out loss {_fmt(metrics['val_loss'])}, accuracy {_fmt(metrics['val_accuracy'])}, "
          f"KL/token {_fmt(metrics['val_kl_per_token'])}")
    return metrics


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)
