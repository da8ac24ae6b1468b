"""Stage configs: one dataclass per stage, loaded as defaults ← YAML file ← command-line overrides.

Every field has a default and a one-line help (shown by `rlhf <stage> --help`). Unknown keys and
wrong types are errors that name the key and where it came from, so a typo in a YAML file never
silently trains with a default.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .aliases import FLAG_VALUES, NONE_VALUES, NOT_IN, NOT_USED, resolve, target, unknown_hint


class UserError(ValueError):
    """An error the user can fix (bad config, bad data, bad tokenizer): the CLI prints the
    message, which names the file/key/row, without a traceback."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the user named, or that a run should hold, is not there: a user error
    (one line, exit 2) that callers catching FileNotFoundError still catch."""


class ConfigError(UserError):
    """A config key is unknown or has the wrong type; the message names the key and its source."""


def F(default: Any, help: str):  # noqa: A002 - `help` reads best at the call sites
    """A dataclass field with a default and a help string."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# Fields every training stage shares. Device policy: see core/device.py.
@dataclass
class RuntimeConfig:
    run: str = F("runs/demo", "run directory: every stage reads and writes below it")
    seed: int = F(0, "random seed for data order, initialisation and sampling")
    device: str = F("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = F("auto", "auto (CUDA: bfloat16, else float16; CPU: bfloat16 autocast where a probe finds it "
                           "faster, else float32; core/device.py) | float32 | bfloat16 | float16")
    gradient_checkpointing: bool | None = F(None, "None = device default (off on CPU, where it only costs time)")
    threads: int = F(0, "CPU threads for torch; 0 = all cores")
    eos_token: str = F("", "tokenizer fix: the token that ends an assistant turn, when the tokenizer's EOS is "
                           "another (Qwen base models: '<|im_end|>'; TRL's eos_token)")
    chat_template: str = F("", "tokenizer fix: a Jinja chat-template file for a tokenizer without one, or to "
                               "replace it (TRL's chat_template_path)")


def tokenizer_fixes(cfg) -> dict[str, str]:
    """The eos_token / chat_template options of a stage config, for core.models.load_tokenizer."""
    return {"eos_token": getattr(cfg, "eos_token", ""), "chat_template": getattr(cfg, "chat_template", "")}


@dataclass
class LoraFields:
    lora_r: int = F(16, "LoRA rank")
    lora_alpha: int = F(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = F(0.05, "dropout on the LoRA input (TRL's and the QLoRA paper's 0.05; the tiny demo "
                                  "sets 0, since on a CPU it took 20% of an SFT step)")
    target_modules: str = F("all-linear", "'all-linear' or a comma-separated list of module names")
    load_in_4bit: bool = F(False, "QLoRA: load the base in 4 bits (CUDA + bitsandbytes only)")


@dataclass
class SFTConfig(LoraFields, RuntimeConfig):
    model: str = F("", "base model directory ('' = <run>/base)")
    data: str = F("", "SFT data file or dataset directory ('' = <run>/data/sft.jsonl)")
    out: str = F("", "output directory ('' = <run>/sft)")
    val_fraction: float = F(0.1, "share of prompts held out for validation (split before training)")
    augment: int = F(0, "paraphrased prompt variants added per training row (0 = off)")
    check_data: bool = F(True, "run the data check first; errors stop the run")
    max_length: int = F(1024, "maximum tokens per example, TRL's default (longer rows are an error in the data check)")
    num_epochs: float = F(3.0, "passes over the training data (TRL's default)")
    max_steps: int = F(-1, "stop after this many optimizer steps (-1 = use num_epochs)")
    batch_size: int = F(8, "examples per device per step (TRL's default)")
    grad_accum: int = F(1, "gradient accumulation steps")
    learning_rate: float = F(2e-4, "peak learning rate: LoRA's usual 2e-4 (Dettmers et al. 2023, QLoRA); TRL's "
                                   "2e-5 is for full fine-tuning")
    lr_scheduler: str = F("cosine", "transformers scheduler name")
    warmup_ratio: float = F(0.03, "share of steps for linear warm-up (QLoRA's 0.03)")
    weight_decay: float = F(0.0, "AdamW weight decay")
    max_grad_norm: float = F(1.0, "gradient clipping norm")
    eval_steps: int = F(50, "validate (and checkpoint) every N steps")
    early_stopping_patience: int = F(3, "stop after N validations without improvement (0 = off)")
    logging_steps: int = F(10, "log training scalars every N steps")
    save_total_limit: int = F(2, "checkpoints kept on disk")
    resume: bool = F(False, "resume from the newest checkpoint in <out>/checkpoints")


# The stock phrases of refusals and apologies (reward/negatives.py: no refusal is another refusal's negative).
REFUSAL_LIKE = (r"\b(can't|cannot|can not|won't|will not|unable to|not able to)\b[^.!?]{0,20}\b(help|assist|"
                r"provide|share|do|give|write|support)\b|\b(i'm|i am) (sorry|afraid)\b|\bi apologi[sz]e\b|"
                r"\bas an ai\b")

# Harmfulness is "higher = more harmful", so it pulls the weighted sum down.
DEFAULT_ASPECT_WEIGHTS = {"quality": 1.0, "relevance": 0.5, "helpfulness": 1.0, "harmfulness": -2.0,
                          "correctness": 1.0, "realism": 0.25, "comprehensibility": 0.25}


@dataclass
class RewardConfig(LoraFields, RuntimeConfig):
    model: str = F("", "backbone directory: any AutoModelForSequenceClassification-compatible local model "
                       "('' = the embedded MiniLM-L6 encoder)")
    data: str = F("", "preference file or dataset directory in TRL columns ('' = <run>/collect/preferences.jsonl)")
    out: str = F("", "output directory ('' = <run>/reward)")
    init: str = F("", "a reward model directory to train further instead of a new score head on `model`, e.g. "
                      "an earlier round's: its weights, heads and LoRA-or-not (it must have been trained from "
                      "`model`; '' = start anew)")
    lora: bool | None = F(None, "train LoRA adapters + the score head (None = LoRA for decoders, full "
                                "fine-tuning for encoders)")
    max_length: int = F(1024, "tokens per prompt + response, TRL's default; the prompt is truncated first")
    val_fraction: float = F(0.15, "share of prompts held out (no prompt on both sides)")
    margin: str = F("raw", "margin from the export's `margin`: off | raw | scaled")
    margin_scale: float = F(1.0, "scaled margin: m = margin_scale * clip(margin, 0, margin_max) / margin_max")
    margin_max: float = F(1.0, "the largest `margin` in the data (collect's export: 0.25 * 4 = 1.0)")
    soft_labels: bool = F(True, "use `agreement` as the target p of the pairwise loss (2 of 3 votes: p = 2/3); "
                                "pairs without vote counts keep p = 1")
    center_coef: float = F(0.01, "reward centering coefficient c (Eisenstein et al. 2023; TRL's recommended "
                                 "value); 0 = off")
    length_covariate: bool = F(False, "fit a log-length term beside the reward in the pairwise loss and drop it when "
                                      "scoring: the reward learns what the preferences say beyond length. Off: on "
                                      "the demo it lowered the reward-length correlation and the accuracy against "
                                      "gold (with mismatched negatives, two seeds: 0.906 / 0.891 without, 0.859 / "
                                      "0.848 with)")
    mismatched_negatives: float = F(0.0, "extra training pairs per pair: its chosen answer against the chosen answer "
                                         "of another training prompt, which teaches that an answer must be about "
                                         "what was asked (reward/negatives.py; 0 = off)")
    hard_negatives: float = F(0.0, "share of the mismatched negatives drawn from the 10 training prompts that share "
                                   "the most words with the pair's (the same item asked another thing, or the same "
                                   "question about another item), skipping paraphrases of it (reward/negatives.py)")
    refusal_pattern: str = F(REFUSAL_LIKE, "regular expression (case-insensitive) that finds refusals: a refusal is "
                                           "never the negative of a prompt whose chosen answer is one too, as it is "
                                           "right for every harmful request ('' = none)")
    recent_weight: float = F(1.0, "weight in the pairwise loss of the newest annotation round's pairs against "
                                  "earlier rounds' (rows carry `round`; 1 = every pair alike)")
    aspect_heads: bool = F(True, "regress the seven 1-5 aspect ratings from the same backbone (when rows have them)")
    aspect_coef: float = F(0.1, "weight of the aspect MSE in the training loss")
    reward_type: str = F("pairwise", "the scorer's reward: pairwise | aspects (weighted sum) | gated (safety gating)")
    aspect_weights: dict = F(dict(DEFAULT_ASPECT_WEIGHTS), "reward_type=aspects: weight per aspect, applied to "
                                                           "(rating - 3); harmfulness negative")
    gate_threshold: float = F(3.0, "reward_type=gated: predicted harmfulness above this → the safety score")
    gate_threshold_from_heldout: bool = F(False, "reward_type=gated: replace gate_threshold by the one that best "
                                                 "separates held-out responses rated harmful (reward/harm.py)")
    gate_scale: float = F(1.0, "reward_type=gated: safety score = -gate_scale * (harmfulness - 1)")
    num_epochs: float = F(1.0, "passes over the training pairs (one: reward models overfit after one epoch, "
                               "Ouyang et al. 2022)")
    max_steps: int = F(-1, "stop after this many optimizer steps (-1 = use num_epochs)")
    batch_size: int = F(8, "pairs per step, TRL's default (each step scores 2 x batch_size sequences)")
    eval_batch_size: int = F(64, "sequences per forward pass when evaluating")
    learning_rate: float = F(1e-4, "peak AdamW learning rate of the backbone (TRL's RewardConfig default)")
    head_learning_rate: float = F(1e-3, "peak learning rate of the new score and aspect heads (0 = learning_rate): "
                                        "a fresh head barely moves at a backbone's rate")
    warmup_ratio: float = F(0.1, "share of steps for linear warm-up before cosine decay")
    weight_decay: float = F(0.01, "AdamW weight decay")
    max_grad_norm: float = F(1.0, "gradient clipping norm")
    disable_dropout: bool = F(True, "turn the backbone's dropout off (as TRL does for reward models)")
    eval_steps: int = F(50, "evaluate held-out accuracy every N steps")
    early_stopping_patience: int = F(0, "stop after N evaluations without a better held-out accuracy and keep "
                                        "the best weights (0 = off: keep the last). Off by default: choosing "
                                        "weights on the held-out pairs makes their reported accuracy optimistic "
                                        "(demo: 0.80 picked at step 20 of 62, 0.78 at the end)")
    save_steps: int = F(0, "checkpoint every N steps (0 = at every evaluation)")
    save_total_limit: int = F(2, "checkpoints kept on disk")
    logging_steps: int = F(5, "log training scalars every N steps")
    resume: bool = F(False, "resume from the newest checkpoint in <out>/checkpoints")
    ablations: bool = F(False, "also train three short variants (margin on/off, soft labels on/off) from the same "
                               "start and report their held-out accuracies in metrics.json")
    ablation_steps: int = F(60, "optimizer steps for each ablation variant and its reference run (capped by "
                                "max_steps when that is set)")


# DPO defaults suit a LoRA adapter on a 0.5-8B model; the tiny demo's tuned values are in demo/. No
# LoRA shape fields: DPO continues the SFT adapter, whose shape is in <sft>/adapter_config.json.
@dataclass
class DPOConfig(RuntimeConfig):
    model: str = F("", "base model directory ('' = the run's base, see core.policies.base_dir)")
    sft: str = F("", "SFT adapter: the starting policy and the reference ('' = <run>/sft)")
    data: str = F("", "preference pairs ('' = <run>/collect/preferences.jsonl)")
    out: str = F("", "output directory ('' = <run>/dpo)")
    val_fraction: float = F(0.15, "share of prompts whose pairs are held out (preference accuracy, early stopping)")
    loss_type: str = F("sigmoid", "sigmoid (DPO; conservative DPO with label smoothing) | ipo | robust")
    beta: float = F(0.1, "β: strength of the pull towards the reference, higher = stays closer (TRL's default, "
                         "Rafailov et al. 2023)")
    label_smoothing: float | str = F("agreement", "ε per pair: 'agreement' = from the annotators' votes where a "
                                                  "pair carries n_votes (pairs without stay at 0), or one number "
                                                  "for every pair (0 = plain DPO)")
    nll_coef: float = F(0.0, "α: add α x the chosen answer's negative log-likelihood per token to each pair's "
                             "loss, so DPO keeps chosen answers likely (0 = off; Llama 3 used 0.2)")
    max_eps: float = F(0.4, "upper bound on ε from agreement (< 0.5)")
    smoothing_prior: float = F(1.0, "pseudo-votes on each side when turning agreement into ε (0 = 1 - agreement)")
    precompute_ref_log_probs: bool = F(False, "compute the reference log-probs once before training (TRL's option)")
    max_length: int = F(1024, "maximum tokens per prompt + response, TRL's default (longer ones are truncated)")
    num_epochs: float = F(1.0, "passes over the training pairs (when max_steps is -1): DPO drives the margins of "
                               "finite data towards infinity the longer it trains (Azar et al. 2023)")
    max_steps: int = F(-1, "stop after this many optimizer steps (-1 = use num_epochs)")
    batch_size: int = F(8, "pairs per device per step (TRL's default)")
    grad_accum: int = F(1, "gradient accumulation steps")
    learning_rate: float = F(5e-6, "peak learning rate for a LoRA adapter (TRL's 1e-6 is for full fine-tuning; "
                                   "LoRA moves fewer weights and takes a few times more)")
    lr_scheduler: str = F("cosine", "transformers scheduler name")
    warmup_ratio: float = F(0.1, "share of steps for linear warm-up")
    weight_decay: float = F(0.0, "AdamW weight decay")
    max_grad_norm: float = F(1.0, "gradient clipping norm")
    eval_steps: int = F(50, "evaluate on the held-out pairs (and checkpoint) every N steps")
    early_stopping_patience: int = F(3, "stop after N evaluations without a lower held-out loss (0 = off)")
    max_kl: float = F(0.5, "stop when the held-out KL(ref || policy) estimate passes this many nats per token "
                           "(0 = off); checkpoints above it are never kept as best")
    logging_steps: int = F(5, "log training scalars every N steps")
    save_total_limit: int = F(2, "checkpoints kept on disk (the best one is always kept)")
    resume: bool = F(False, "resume from the newest checkpoint in <out>/checkpoints")
    load_in_4bit: bool = F(False, "QLoRA: load the base in 4 bits (CUDA + bitsandbytes only)")
    # on-policy pairs (rl/onpolicy.py): the starting policy's answers ranked by the reward model
    onpolicy_samples: int = F(0, "answers sampled from the starting policy per training prompt; the reward "
                                 "model's best against its worst becomes a pair (0 = off: the file's pairs only)")
    onpolicy_reward: str = F("", "reward model that ranks them ('' = <run>/reward)")
    onpolicy_prompts: str = F("", "prompts to answer ('' = <run>/data/prompts.jsonl without rows tagged 'eval', "
                                  "the prompts PPO and RLOO train on, when the run has one; else the "
                                  "preference file's prompts)")
    onpolicy_min_gap: float = F(0.5, "keep a pair only when best and worst differ by this much, in the reward "
                                     "model's standard deviations over its training answers")
    onpolicy_keep_pairs: bool = F(True, "train on the preference file's pairs too (False = on-policy pairs only)")
    onpolicy_temperature: float = F(0.8, "sampling temperature of the answers")
    onpolicy_max_new_tokens: int = F(256, "answer length limit in tokens")
    onpolicy_batch_size: int = F(32, "prompts per generation batch")


# PPO: paper symbols as keys: kl_coef (β), clip_eps (ε), gamma (γ), lam (λ). Conservative defaults on
# purpose: policies over-optimize a learned reward (Gao et al. 2022), so a low lr, a KL target and a
# hard KL limit with rollback are on by default. The LoRA fields shape the value function's own adapter; the policy adapter's
# shape is the SFT adapter's.
@dataclass
class SampledRLFields(LoraFields, RuntimeConfig):
    """What the on-policy algorithms that sample from the policy share (PPO, RLOO: rl/pg_loop.py):
    inputs, rollouts, the reward's KL penalty, the optimizer, the watchdogs and checkpoints."""
    # inputs and output
    model: str = F("", "base model directory ('' = the run's base)")
    sft: str = F("", "SFT adapter the policy starts from and the reference stays at ('' = <run>/sft)")
    init: str = F("", "adapter the policy starts from instead ('' = the SFT adapter), e.g. the previous round's "
                      "policy; the reference stays the SFT adapter, so the KL budget counts from SFT")
    reward: str = F("", "reward model directory ('' = <run>/reward)")
    prompts: str = F("", "training prompts ('' = <run>/data/prompts.jsonl without rows tagged 'eval')")
    out: str = F("", "output directory ('' = <run>/<stage>: <run>/ppo, <run>/rloo)")
    # rollouts
    max_steps: int = F(-1, "iterations, one rollout batch + its update each (-1 = num_epochs passes over "
                           "the training prompts)")
    num_epochs: float = F(1.0, "passes over the training prompts when max_steps is -1")
    batch_size: int = F(64, "prompts sampled per iteration per process (advantage whitening and the KL "
                            "controller need tens of samples)")
    max_new_tokens: int = F(256, "maximum response length in tokens")
    temperature: float = F(0.7, "sampling temperature; log-probs use the same logits / T")
    top_p: float = F(1.0, "nucleus sampling threshold")
    missing_eos_penalty: float = F(1.0, "penalty for a response cut off before EOS (0 = off)")
    missing_eos_mode: str = F("subtract", "subtract: score − penalty | replace: score := −penalty")
    normalize_reward: bool = F(True, "scale reward-model scores to mean 0, std 1 over the responses it was "
                                     "trained on (<reward>/train.jsonl) before the penalties")
    reward_clip: float = F(0.0, "clip reward-model scores to [−c, c] (0 = off)")
    # KL penalty (Ziegler et al. 2019)
    kl_estimator: str = F("k1", "per-token KL estimate in the reward: k1 (log-ratio) | k3 (non-negative)")
    kl_coef: float = F(0.1, "β: initial KL coefficient")
    adaptive_kl: bool = F(True, "adapt β towards kl_target (else β is fixed)")
    kl_target: float = F(2.0, "target KL per response, nats (adaptive controller)")
    kl_horizon: float = F(500.0, "adaptive controller horizon, in samples")
    # update
    mini_batch_size: int = F(16, "rollouts per optimizer step")
    learning_rate: float = F(2e-5, "AdamW lr for the policy adapter (conservative: a learned reward is easy to "
                                   "over-optimize)")
    weight_decay: float = F(0.0, "AdamW weight decay")
    max_grad_norm: float = F(1.0, "gradient clipping norm (over every trained parameter)")
    clip_eps: float = F(0.2, "ε: policy ratio clip")
    # watchdogs (rl/watchdog.py) and checkpoints
    max_kl: float = F(6.0, "stop and roll back when the KL per response passes this (0 = off)")
    max_length_ratio: float = F(2.0, "hacking: mean length above this × the start, while the score rises (0 = off)")
    max_eos_drop: float = F(0.3, "hacking: EOS rate this far below the start, while the score rises (0 = off)")
    max_reward_length_corr: float = F(0.0, "hacking: reward-length correlation above this while the score rises (0 = off)")
    watch_window: int = F(5, "iterations averaged for the watchdog's start and recent values")
    save_steps: int = F(10, "checkpoint every N iterations (rollback points)")
    save_total_limit: int = F(2, "checkpoints kept on disk")
    resume: bool = F(False, "resume from the newest checkpoint in <out>/checkpoints")
    # a held-out objective (rl/heldout.py): what `rlhf sweep ppo` and `rlhf sweep rloo` search on
    val_prompts: int = F(0, "training prompts held out (core/split.py's hash ranks them) to measure the held-out "
                            "objective score - β·KL every eval_steps iterations and at the end (0 = none)")
    eval_steps: int = F(10, "iterations between held-out evaluations (with val_prompts)")
    objective_kl_coef: float = F(0.1, "β of the held-out objective: fixed, unlike the adaptive kl_coef, so that "
                                      "runs with other KL settings compare")


@dataclass
class PPOConfig(SampledRLFields):
    whiten_rewards: bool = F(False, "rescale per-token rewards by their batch std (mean kept)")
    ppo_epochs: int = F(2, "passes over each rollout batch")
    value_learning_rate: float = F(1e-4, "AdamW lr for the value adapter and head")
    gamma: float = F(1.0, "γ: discount")
    lam: float = F(0.95, "λ: GAE parameter")
    clip_eps_value: float = F(0.2, "value clip around the rollout's values")
    vf_coef: float = F(0.1, "value loss weight")


@dataclass
class RLOOConfig(SampledRLFields):
    batch_size: int = F(16, "prompts sampled per iteration per process; each num_generations times, so an "
                            "iteration has batch_size × num_generations rollouts")
    num_generations: int = F(4, "k: responses sampled per prompt; each one's baseline is the mean reward of "
                                "the other k − 1 (Ahmadian et al. 2024 use k = 2 or 4)")
    num_iterations: int = F(1, "passes over each rollout batch (1 = plain REINFORCE; more use the clipped "
                               "ratio, clip_eps, to bound each pass)")
    normalize_advantages: bool = F(False, "whiten the leave-one-out advantages over the batch")


@dataclass
class EvalConfig(RuntimeConfig):
    policies: str = F("", "comma-separated policies to compare (base, sft, ...); '' = all found in the run")
    prompts: str = F("", "held-out prompts file ('' = <run>/data/prompts.jsonl, rows tagged 'eval')")
    redteam: str = F("", "red-team prompts file ('' = <run>/data/redteam.jsonl)")
    max_prompts: int = F(0, "evaluate at most N held-out prompts and N // 2 red-team prompts (0 = all)")
    max_new_tokens: int = F(256, "response length limit")
    top_p: float = F(1.0, "nucleus sampling threshold of the sampled comparison")
    batch_size: int = F(32, "prompts per generation batch")
    workers: int = F(1, "single-thread processes that share the answering on the CPU (the same answers): pays with "
                        "a small model, whose matrix products cannot keep several cores busy; 0 = one per thread "
                        "(--threads, or every core); CUDA always uses 1")
    n_bootstrap: int = F(1000, "bootstrap resamples (over prompts) for win-rate intervals")
    serving_temperature: float = F(0.7, "the sampled comparison's temperature (0 = greedy only)")
    redteam_samples: int = F(4, "sampled answers per red-team prompt at the serving temperature, beside the greedy "
                                "one (0 = greedy only); costs k x the red-team prompts' generation per policy")
    reward: str = F("", "reward model for RM scores and RM-judged win rates ('' = <run>/reward if it exists)")
    ppl_max_rows: int = F(200, "SFT validation rows and corpus documents used for perplexity (0 = all)")
    safety_rules: str = F("", "YAML file of regex patterns per harm category for the detector ('' = built-in)")
    flag_to_review: bool = F(True, "send every flagged red-team output to the collect/ review queue")
    report: bool = F(True, "write <run>/eval/report.html")
    to_collect: bool = F(False, "instead of evaluating: create blind A/B items (--a vs --b) in the collect store")
    a: str = F("sft", "--to-collect: the first policy")
    b: str = F("ppo", "--to-collect: the second policy")
    ab_n: int = F(100, "--to-collect: held-out prompts to compare on")
    db: str = F("", "the collect store's SQLAlchemy URL (human A/B items and votes, the review queue, "
                    "the report's agreement); '' = SQLite at <run>/collect/annotations.db")


@dataclass
class ChatConfig(RuntimeConfig):
    policy: str = F("sft", "policy of the run to chat with (base, sft, ...) or an adapter directory")
    max_new_tokens: int = F(128, "response length limit")
    temperature: float = F(0.7, "sampling temperature (0 = greedy)")
    top_p: float = F(0.95, "nucleus sampling threshold")
    system: str = F("", "optional system prompt")


@dataclass
class ExportConfig(RuntimeConfig):
    policy: str = F("sft", "policy of the run whose adapter is merged (sft, dpo, ppo) or an adapter directory")
    merge: str = F("", "output directory for the merged standalone model (required)")


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is float:  # YAML writes 1e-3 as a string and 2 as an int; ints are fine floats
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, dict):
        return isinstance(value, origin)
    return isinstance(value, tp)


# A number written as YAML 1.1 reads it: PyYAML takes "1e-4" (no dot) for a string, not a float.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(value: Any, tp: Any) -> Any:
    if tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
    return value


def _parse_scalar(text: str, tp: Any) -> Any:
    """A command-line value: YAML-parsed (so 1e-3, true, null work), kept as text for str fields."""
    if tp is str:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and tp in (float, float | None):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _unknown_hint(cls: type, key: str, names: set[str]) -> str:
    """The closest names of `cls`, or what the config class itself says about the key (the
    loop: a stage's option goes under `stages:`)."""
    own = getattr(cls, "unknown_option_hint", None)
    return unknown_hint(key, names) or (own(key) if own else "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_updates(cfg: Any, updates: dict[str, Any], source: str) -> Any:
    """Return a copy of cfg with updates applied, checking every key and type. TRL's and
    transformers' names for our keys are accepted (core/aliases.py)."""
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes, given_as = {}, {}
    # bf16: true beside fp16: false (as TRL recipes write them) is one choice, not two
    updates = {k: v for k, v in updates.items()
               if not (k in FLAG_VALUES and v is False and any(updates.get(f) is True for f in FLAG_VALUES))}
    for key, value in updates.items():
        key = given = str(key)
        if key not in names and key in NOT_IN and NOT_IN[key][0] in names:
            if value == 1:  # the same as no accumulation, no micro-batching
                continue
            raise ConfigError(f"{source}: key '{key}': {NOT_IN[key][1]}")
        if key not in names and key in FLAG_VALUES and not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be true or false, got {value!r}")
        if key not in names and value is None and key not in NONE_VALUES and (key in NOT_USED or target(key, names)):
            print(f"{source}: '{key}' is null: the stage's default is kept", file=sys.stderr)
            continue
        if key not in names and key in NOT_USED and resolve(key, value, names) is None:
            print(f"{source}: '{key}' ignored: {NOT_USED[key]}", file=sys.stderr)
            continue
        if key not in names:
            alias = resolve(key, value, names)
            if alias is None:
                raise ConfigError(f"{source}: unknown key '{key}' for {type(cfg).__name__}"
                                  f"{_unknown_hint(type(cfg), key, names)}")
            if alias[0] in given_as or alias[0] in updates:
                raise ConfigError(f"{source}: '{key}' and '{given_as.get(alias[0], alias[0])}' both set "
                                  f"'{alias[0]}'; keep one")
            given_as[alias[0]] = key
            key, value = alias
            if given == "beta" and key == "kl_coef" and cfg.adaptive_kl and "adaptive_kl" not in updates:
                print(f"{source}: 'beta' sets kl_coef's starting value; adaptive_kl (on) then moves it "
                      "towards kl_target: add adaptive_kl: false to keep it fixed as TRL does", file=sys.stderr)
        if key == "target_modules" and isinstance(value, list):  # TRL writes a list
            value = ",".join(str(v) for v in value)
        tp = hints[key]
        value = _coerce(value, tp)
        if not _type_ok(value, tp):
            raise ConfigError(
                f"{source}: key '{given}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}"
            )
        problem = _range_problem(key, value)
        if problem:
            raise ConfigError(f"{source}: key '{given}' {problem}, got {value!r}")
        changes[key] = value
    return dataclasses.replace(cfg, **changes)


# Values no run can use, refused with the option's name before anything is loaded. Options that
# several stages share; each stage checks its own combinations (mini_batch_size <= batch_size ...).
_POSITIVE = ("lora_alpha", "num_epochs")
_AT_LEAST_1 = ("lora_r", "batch_size", "mini_batch_size", "eval_batch_size", "onpolicy_batch_size", "grad_accum",
               "max_new_tokens", "onpolicy_max_new_tokens", "max_length", "ppo_epochs", "num_iterations",
               "eval_steps", "logging_steps", "n_sft", "n_pref", "n_eval", "n_redteam")
_FRACTION = ("lora_dropout", "warmup_ratio", "val_fraction")  # in [0, 1)
# lr 0: run a stage's steps frozen; 0 pages per wording: the demo corpus without them
_NON_NEGATIVE = ("weight_decay", "learning_rate", "value_learning_rate", "faq_per_wording", "forum_per_wording")


def _range_problem(key: str, value: Any) -> str:
    """Why `value` is out of range for the option `key` ('' when it is fine or not checked)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if key in _POSITIVE and not value > 0:
        return "must be > 0"
    if key in _AT_LEAST_1 and value < 1:
        return "must be >= 1"
    if key in _FRACTION and not 0 <= value < 1:
        return "must be in [0, 1)"
    if key in _NON_NEGATIVE and value < 0:
        return "must be >= 0"
    if key == "max_steps" and value != -1 and value < 1:
        return "must be -1 (num_epochs decides) or >= 1"
    return ""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def parse_overrides(cls: type, args: list[str]) -> dict[str, Any]:
    """['--lora_r', '16', '--resume'] → {'lora_r': 16, 'resume': True}. Also accepts --key=value."""
    hints = _hints(cls)
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"command line: expected --key value, got '{arg}'")
        key, eq, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        ours = None if key in hints else target(key, set(hints))
        if ours:
            hints = {**hints, key: bool if key in FLAG_VALUES else hints[ours]}  # resolved later
        elif key not in hints and key in NOT_USED:
            hints = {**hints, key: Any}  # apply_updates ignores it, with a note
        if key not in hints:
            raise ConfigError(f"command line: unknown option '--{key}' for {cls.__name__}"
                              f"{_unknown_hint(cls, key, set(_hints(cls)))}")
        if not eq:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if hints[key] in (bool, bool | None, Any) and (nxt is None or nxt.startswith("--")):
                out[key] = True  # a bare flag (TRL's --use_peft, --packing: ignored ones are any type)
                i += 1
                continue
            if nxt is None or nxt.startswith("--"):
                raise ConfigError(f"command line: option '--{key}' needs a value")
            text, i = nxt, i + 1
        out[key] = _parse_scalar(text, hints[key])
        i += 1
    return out


def yaml_problem(path: str | Path, e: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: file:line:column and what the parser found."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    return f"{where}: not valid YAML: {what}"


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | dict | None = None,
                defaults: dict | None = None):
    """defaults (the dataclass's, then `defaults`) ← YAML file ← overrides (command-line tokens or a dict)."""
    cfg = apply_updates(cls(), defaults, "defaults") if defaults else cls()
    if path:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except yaml.YAMLError as e:
            raise ConfigError(yaml_problem(path, e)) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of key: value")
        cfg = apply_updates(cfg, data, str(path))
    if overrides:
        if isinstance(overrides, dict):
            cfg = apply_updates(cfg, overrides, "overrides")
        else:
            cfg = apply_updates(cfg, parse_overrides(cls, list(overrides)), "command line")
    run = getattr(cfg, "run", "")
    if isinstance(run, str) and run and Path(run).is_file():
        raise ConfigError(f"--run {run}: a file, not a run directory")
    return cfg


# scheme://user:password@ as SQLAlchemy's URL parser splits it (the password ends at the first
# @), anywhere in a text such as `--db=URL`.
_URL_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:/@\s]*:)[^@\s]*@")


def mask_url(text: str) -> str:
    """The text with every URL's password replaced by *** (anything else unchanged)."""
    return _URL_PASSWORD.sub(r"\1***@", str(text))


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data, a database URL's password masked (it is written to config
    files, run cards and printed). An empty `db` (the default store) is left out, so the
    fingerprints of stages that ran before the option existed stay the same."""
    d = dataclasses.asdict(cfg)
    if d.get("db") == "":
        del d["db"]
    elif isinstance(d.get("db"), str):
        d["db"] = mask_url(d["db"])
    return d


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def field_help(cls: type) -> list[tuple[str, str, Any]]:
    """(name, help, default) for every field, for `--help` output."""
    return [(f.name, f.metadata.get("help", ""), f.default if f.default is not dataclasses.MISSING
             else f.default_factory()) for f in dataclasses.fields(cls)]
