import re
from pathlib import Path

import pytest
import yaml

from cli.main import config_classes
from core.config import ConfigError, SFTConfig, apply_updates, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_then_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lora_r: 4\nlearning_rate: 1.0e-4\nbatch_size: 3\n")
    cfg = load_config(SFTConfig, f, ["--lora_r", "16", "--resume"])
    assert cfg.lora_r == 16            # command line beats YAML
    assert cfg.learning_rate == 1e-4   # YAML beats default
    assert cfg.batch_size == 3
    assert cfg.resume is True          # bare flag
    assert cfg.lora_alpha == SFTConfig().lora_alpha  # untouched default


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lora_rank: 4\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'lora_rank'"):
        load_config(SFTConfig, f)


def test_unknown_option_on_command_line():
    with pytest.raises(ConfigError, match="unknown option '--lr'"):
        load_config(SFTConfig, None, ["--lr", "1"])


@pytest.mark.parametrize("key,value", [("lora_r", "sixteen"), ("resume", "maybe"), ("learning_rate", "fast")])
def test_wrong_type_names_key(key, value):
    with pytest.raises(ConfigError, match=f"key '{key}' must be"):
        load_config(SFTConfig, None, [f"--{key}", value])


def test_wrong_type_in_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("num_epochs: [1, 2]\n")
    with pytest.raises(ConfigError, match="key 'num_epochs' must be float"):
        load_config(SFTConfig, f)


def test_int_accepted_for_float_and_equals_form():
    cfg = load_config(SFTConfig, None, ["--num_epochs=2", "--learning_rate", "1e-3"])
    assert cfg.num_epochs == 2.0 and isinstance(cfg.num_epochs, float)
    assert cfg.learning_rate == 1e-3


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    """PyYAML reads "1e-4" (YAML 1.1: no dot) as a string; a float field takes it as 0.0001, in
    a stage file and under a loop's `stages:`, while text stays text and is still refused."""
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 1e-4\nwarmup_ratio: '5E-2'\n")
    assert yaml.safe_load(f.read_text())["learning_rate"] == "1e-4"
    cfg = load_config(SFTConfig, f)
    assert cfg.learning_rate == 0.0001 and cfg.warmup_ratio == 0.05
    # a loop's per-stage options reach the stage through the same check
    stage = apply_updates(SFTConfig(), yaml.safe_load("{learning_rate: 1e-4}"), "stages.sft")
    assert stage.learning_rate == 0.0001
    f.write_text("learning_rate: 1e-4x\n")
    with pytest.raises(ConfigError, match="key 'learning_rate' must be float, got str '1e-4x'"):
        load_config(SFTConfig, f)


@pytest.mark.parametrize("key,value,why", [
    ("learning_rate", "-1", "must be >= 0"), ("lora_r", "0", "must be >= 1"),
    ("val_fraction", "1.5", "must be in [0, 1)"),
    ("max_steps", "0", "must be -1 (num_epochs decides) or >= 1"), ("batch_size", "0", "must be >= 1"),
    ("weight_decay", "-0.1", "must be >= 0")])
def test_values_no_run_can_use_are_refused_by_name(key, value, why):
    with pytest.raises(ConfigError, match=rf"command line: key '{key}' {re.escape(why)}"):
        load_config(SFTConfig, None, [f"--{key}", value])
    from core.config import PPOConfig

    with pytest.raises(ConfigError, match=r"key 'max_new_tokens' must be >= 1, got -5"):
        load_config(PPOConfig, None, ["--max_new_tokens", "-5"])
    assert load_config(SFTConfig, None, ["--max_steps", "-1", "--val_fraction", "0"]).max_steps == -1


def test_broken_yaml_is_one_line_with_line_and_column(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lora_r: 4\nlearning_rate: [1e-4\nbatch_size: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{f}:3:11: not valid YAML: "), str(e.value)


def test_a_stage_option_given_to_the_loop_says_where_it_goes():
    from loop.config import LoopConfig

    with pytest.raises(ConfigError, match=r"unknown option '--learning_rate' for LoopConfig \('learning_rate' is an "
                                          r"option of the sft, reward, dpo, ppo, rloo stages: set it under `stages:`"):
        load_config(LoopConfig, None, ["--learning_rate", "1e-4"])
    with pytest.raises(ConfigError, match=r"'--learning_rat' .*'learning_rate' is an option of the sft"):
        load_config(LoopConfig, None, ["--learning_rat", "1e-4"])
    with pytest.raises(ConfigError, match=r"unknown option '--zzz' for LoopConfig$"):
        load_config(LoopConfig, None, ["--zzz", "1"])


def test_optional_bool_accepts_null():
    assert parse_overrides(SFTConfig, ["--gradient_checkpointing", "null"]) == {"gradient_checkpointing": None}
    assert load_config(SFTConfig, None, ["--gradient_checkpointing", "false"]).gradient_checkpointing is False


def test_every_stage_yaml_in_configs_parses():
    files = sorted((ROOT / "configs").rglob("*.yaml"))
    assert files, "configs/ holds no YAML"
    classes = config_classes()
    for f in files:
        stage = f.parent.name
        if stage in classes:
            load_config(classes[stage], f)  # raises on unknown keys / wrong types
        else:
            assert isinstance(yaml.safe_load(f.read_text()), dict), f
