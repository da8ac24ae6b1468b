from pathlib import Path

import pytest
import yaml

from cli.main import config_classes
from core.config import ConfigError, SFTConfig, load_config, parse_overrides

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
