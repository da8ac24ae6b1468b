"""The demo's tuned values: demo/sizes.py and configs/*/tiny.yaml say the same, and they differ
from the stage defaults (which are for real 0.5-8B models) where the tiny model needs it."""
import dataclasses
from pathlib import Path

import pytest

from core.config import DPOConfig, EvalConfig, PPOConfig, RewardConfig, RLOOConfig, SFTConfig, load_config
from demo.sizes import FULL, QUICK, TINY

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig, "ppo": PPOConfig, "rloo": RLOOConfig,
           "eval": EvalConfig}


@pytest.mark.parametrize("stage", sorted(CLASSES))
def test_tiny_yaml_is_the_demo_full_config(stage):
    cls = CLASSES[stage]
    assert load_config(cls, ROOT / "configs" / stage / "tiny.yaml") == load_config(cls, None, None, FULL[stage])


def test_base_tiny_yaml_is_the_demo_base():
    """configs/base/tiny.yaml repeats the demo base's shape and schedule (demo/config.py BaseConfig)."""
    import yaml

    from demo.config import BaseConfig

    values = yaml.safe_load((ROOT / "configs" / "base" / "tiny.yaml").read_text())
    assert values["num_layers"] == 4
    assert {k: getattr(BaseConfig(), k) for k in values} == values


def test_rich_corpus_yamls_double_the_corpus_and_the_base_steps():
    """configs/data/rich.yaml and configs/base/rich.yaml (README "A richer corpus") change only the
    corpus sizes and the base's steps, each to twice the demo default."""
    from demo.config import BaseConfig, DataConfig

    data = load_config(DataConfig, ROOT / "configs" / "data" / "rich.yaml")
    base = load_config(BaseConfig, ROOT / "configs" / "base" / "rich.yaml")
    assert (data.faq_per_wording, data.forum_per_wording) == (2 * DataConfig().faq_per_wording,
                                                               2 * DataConfig().forum_per_wording) == (20, 4)
    assert base.max_steps == 2 * BaseConfig().max_steps == 880
    assert dataclasses.replace(data, faq_per_wording=10, forum_per_wording=2) == DataConfig()
    assert dataclasses.replace(base, max_steps=440) == BaseConfig()


def test_demo_values_differ_from_the_real_model_defaults():
    sft, dpo = load_config(SFTConfig, None, None, FULL["sft"]), load_config(DPOConfig, None, None, FULL["dpo"])
    assert (SFTConfig().learning_rate, sft.learning_rate) == (2e-4, 2e-3)
    assert (SFTConfig().max_length, sft.max_length) == (1024, 256)
    assert (DPOConfig().max_steps, dpo.max_steps) == (-1, 80)
    assert RewardConfig().ablations is False and PPOConfig().max_steps == -1


def test_quick_keeps_the_tiny_values_it_does_not_shrink():
    assert QUICK["sft"]["learning_rate"] == TINY["sft"]["learning_rate"] == 2e-3
    assert QUICK["dpo"]["max_steps"] == 6 and FULL["dpo"]["max_steps"] == 80
    assert QUICK["eval"]["batch_size"] == 128
