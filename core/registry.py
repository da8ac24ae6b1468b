"""The RL algorithms, one entry each: what the CLI, the run's policy discovery (core/policies.py),
the eval (comparisons), its report and plots, and the demo loop read to know an algorithm.

Adding an algorithm is its own module(s) plus one entry below. Its config is a dataclass with
core.config.RuntimeConfig's fields, `model` (the base model directory, '' = the run's), `data`
when it reads preference pairs, and `resume`; its `main(cfg)` trains from the SFT adapter and
saves a LoRA adapter, metrics.json and a log.jsonl in <run>/<name>/.
Entries name their code as "module:attribute" strings, loaded only when used, so importing this
file imports no stage. Where an algorithm may run under `accelerate launch` (DDP, DeepSpeed),
the accelerate configs' "Stages:" lines name it too (tests/test_gpu_recipes.py checks them).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Algorithm:
    name: str  # the command (`rlhf NAME`), the run's stage directory <run>/NAME and the policy's name
    config: str  # "module:Class" of its config dataclass
    main: str  # "module:function" of its entry point, main(cfg) -> metrics
    help: str  # one line for `rlhf --help`
    label: str  # its name in the report
    color: str  # its colour in the report's plots (a matplotlib colour)
    # files the stage reads, relative to the run directory: a loop reruns it when one changes. The
    # input named "preferences" is the preference file: a loop that keeps it elsewhere (`rlhf loop
    # --preferences FILE`) sets the config's `data` to it.
    inputs: dict[str, str] = field(default_factory=dict)
    # the report's training curves: (panel title, log.jsonl keys drawn on it)
    curves: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # config values for a smoke run (`rlhf loop --quick`): a few steps on a few rows
    quick: dict = field(default_factory=dict)
    # how it may be started (core.training.LAUNCH_MODES: single, ddp, zero2, zero3, fsdp)
    launch_modes: tuple[str, ...] = ("single",)
    # tags in its run card's header (Hugging Face model-card metadata)
    card_tags: tuple[str, ...] = ("lora",)

    def config_class(self) -> type:
        return _load(self.config)

    def main_fn(self) -> Callable:
        return _load(self.main)


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


SFT_ADAPTER = "sft/adapter_model.safetensors"

ALGORITHMS: list[Algorithm] = [
    Algorithm(
        name="dpo", config="core.config:DPOConfig", main="rl.dpo:main",
        help="DPO update of the SFT policy (TRL DPOTrainer, agreement-smoothed loss)", label="DPO", color="tab:green",
        inputs={"sft": SFT_ADAPTER, "preferences": "collect/preferences.jsonl"},
        curves=(("loss", ("loss", "eval_loss")), ("reward margin", ("rewards/margins", "eval_rewards/margins")),
                ("preference accuracy", ("rewards/accuracies", "eval_rewards/accuracies")),
                ("KL per token", ("kl", "eval_kl"))),
        quick={"max_steps": 3, "eval_steps": 3, "batch_size": 4, "logging_steps": 1, "max_length": 256},
        # Trainer-based, but the adapter is saved from the model's own parameters (only the trained
        # "default" adapter, not TRL's "ref" copy): ZeRO-3 and FSDP would leave them sharded
        launch_modes=("single", "ddp", "zero2"), card_tags=("trl", "dpo", "lora")),
    Algorithm(
        name="ppo", config="core.config:PPOConfig", main="rl.ppo:main",
        help="PPO update of the SFT policy against the reward model (our own loop)", label="PPO", color="tab:red",
        inputs={"sft": SFT_ADAPTER, "reward": "reward/metrics.json", "prompts": "data/prompts.jsonl"},
        curves=(("reward-model score", ("score", "penalized_score", "rlhf_reward")), ("KL to reference", ("kl",)),
                ("response length", ("response_length",)), ("EOS rate", ("eos_rate",)), ("entropy", ("entropy",))),
        quick={"max_steps": 2, "batch_size": 4, "mini_batch_size": 4, "max_new_tokens": 16, "save_steps": 1},
        # our own loop: it samples from whole parameters and steps its optimizer itself
        launch_modes=("single", "ddp"), card_tags=("ppo", "lora")),
    Algorithm(
        name="rloo", config="core.config:RLOOConfig", main="rl.rloo:main",
        help="RLOO update of the SFT policy against the reward model (PPO's loop, leave-one-out baseline, "
             "no value function)", label="RLOO", color="tab:brown",
        inputs={"sft": SFT_ADAPTER, "reward": "reward/metrics.json", "prompts": "data/prompts.jsonl"},
        curves=(("reward-model score", ("score", "penalized_score", "rlhf_reward")), ("KL to reference", ("kl",)),
                ("response length", ("response_length",)), ("EOS rate", ("eos_rate",)), ("entropy", ("entropy",))),
        quick={"max_steps": 2, "batch_size": 2, "num_generations": 2, "mini_batch_size": 4, "max_new_tokens": 16,
               "save_steps": 1},
        # PPO's loop (rl/pg_loop.py): the same reasons
        launch_modes=("single", "ddp"), card_tags=("rloo", "lora")),
]


def names() -> tuple[str, ...]:
    return tuple(a.name for a in ALGORITHMS)


def get(name: str) -> Algorithm | None:
    return next((a for a in ALGORITHMS if a.name == name), None)
