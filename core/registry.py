"""The RL algorithms, one entry each: what the CLI, the run's policy discovery (core/policies.py),
the eval (comparisons), its report and plots, and the demo loop read to know an algorithm.

Adding an algorithm is its own module(s) plus one entry below. Its config is a dataclass with
core.config.RuntimeConfig's fields, `model` (the base model directory, '' = the run's), `data`
when it reads preference pairs, and `resume`; its `main(cfg)` trains from the SFT adapter and
saves a LoRA adapter, metrics.json and a log.jsonl in <run>/<name>/.
Entries name their code as "module:attribute" strings, loaded only when used, so importing this
file imports no stage.
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

    def config_class(self) -> type:
        return _load(self.config)

    def main_fn(self) -> Callable:
        return _load(self.main)


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


SFT_ADAPTER = "sft/adapter_model.safetensors"

ALGORITHMS: list[Algorithm] = [
    Algorithm("dpo", "core.config:DPOConfig", "rl.dpo:main", "DPO update of the SFT policy (TRL DPOTrainer, "
              "agreement-smoothed loss)", "DPO", "tab:green",
              {"sft": SFT_ADAPTER, "preferences": "collect/preferences.jsonl"},
              (("loss", ("loss", "eval_loss")), ("reward margin", ("rewards/margins", "eval_rewards/margins")),
               ("preference accuracy", ("rewards/accuracies", "eval_rewards/accuracies")),
               ("KL per token", ("kl", "eval_kl"))),
              {"max_steps": 3, "eval_steps": 3, "batch_size": 4, "logging_steps": 1, "max_length": 256}),
    Algorithm("ppo", "core.config:PPOConfig", "rl.ppo:main", "PPO update of the SFT policy against the reward "
              "model (our own loop)", "PPO", "tab:red",
              {"sft": SFT_ADAPTER, "reward": "reward/metrics.json", "prompts": "data/prompts.jsonl"},
              (("reward-model score", ("score", "penalized_score", "rlhf_reward")), ("KL to reference", ("kl",)),
               ("response length", ("response_length",)), ("EOS rate", ("eos_rate",)), ("entropy", ("entropy",))),
              {"max_steps": 2, "batch_size": 4, "mini_batch_size": 4, "max_new_tokens": 16, "save_steps": 1}),
]


def names() -> tuple[str, ...]:
    return tuple(a.name for a in ALGORITHMS)


def get(name: str) -> Algorithm | None:
    return next((a for a in ALGORITHMS if a.name == name), None)
