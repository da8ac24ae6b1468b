"""TRL's and transformers' option names work as ours: a TRL recipe YAML loads unchanged, ignored
options are said to be ignored, and a mistake gets a 'did you mean'."""
from pathlib import Path

import pytest

from core.aliases import ALIASES, NOT_USED, targets
from core.config import ChatConfig, ConfigError, DPOConfig, PPOConfig, RewardConfig, RLOOConfig, SFTConfig, load_config

ROOT = Path(__file__).resolve().parents[1]

TRL_SFT_YAML = """\
model_name_or_path: /models/qwen2.5-0.5b
dataset_name: data/sft.jsonl
learning_rate: 2.0e-4
num_train_epochs: 1
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
gradient_checkpointing: true
max_seq_length: 2048
lr_scheduler_type: cosine
warmup_ratio: 0.03
logging_steps: 25
eval_strategy: steps
eval_steps: 100
bf16: true
use_peft: true
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules: q_proj,v_proj
output_dir: runs/qwen-sft
report_to: none
push_to_hub: false
"""


def test_a_trl_sft_recipe_loads_unchanged(tmp_path, capsys):
    f = tmp_path / "sft.yaml"
    f.write_text(TRL_SFT_YAML)
    cfg = load_config(SFTConfig, f)
    assert (cfg.model, cfg.data, cfg.out) == ("/models/qwen2.5-0.5b", "data/sft.jsonl", "runs/qwen-sft")
    assert (cfg.batch_size, cfg.grad_accum, cfg.num_epochs, cfg.max_length) == (2, 8, 1.0, 2048)
    assert (cfg.lr_scheduler, cfg.dtype, cfg.target_modules, cfg.lora_r) == ("cosine", "bfloat16", "q_proj,v_proj", 32)
    assert cfg.gradient_checkpointing is True and cfg.learning_rate == 2e-4
    noted = capsys.readouterr().err
    for key in ("eval_strategy", "use_peft", "report_to", "push_to_hub"):
        assert f"{f}: '{key}' ignored: {NOT_USED[key]}" in noted


def test_a_trl_dpo_recipe_and_command_line_names(tmp_path):
    f = tmp_path / "dpo.yaml"
    f.write_text("model_name_or_path: m\nbeta: 0.05\nper_device_train_batch_size: 4\nfp16: true\n"
                 "num_train_epochs: 2\nmax_length: 512\n")
    cfg = load_config(DPOConfig, f, ["--gradient_accumulation_steps", "4", "--output_dir=runs/x"])
    assert (cfg.model, cfg.beta, cfg.batch_size, cfg.dtype, cfg.num_epochs) == ("m", 0.05, 4, "float16", 2.0)
    assert (cfg.grad_accum, cfg.out) == (4, "runs/x")
    ppo = load_config(PPOConfig, None, ["--response_length", "53", "--cliprange", "0.1", "--num_ppo_epochs", "4"])
    assert (ppo.max_new_tokens, ppo.clip_eps, ppo.ppo_epochs) == (53, 0.1, 4)
    rm = load_config(RewardConfig, None, {"center_rewards_coefficient": 0.02, "per_device_eval_batch_size": 8})
    assert (rm.center_coef, rm.eval_batch_size) == (0.02, 8)
    assert load_config(SFTConfig, None, ["--bf16", "false"]).dtype == "float32"


def test_mistakes_are_named_with_a_hint():
    with pytest.raises(ConfigError, match="'per_device_train_batch_size' and 'batch_size' both set 'batch_size'"):
        load_config(SFTConfig, None, {"batch_size": 4, "per_device_train_batch_size": 2})
    with pytest.raises(ConfigError, match=r"unknown option '--learning_rat' for SFTConfig \(did you mean 'learning_rate'"):
        load_config(SFTConfig, None, ["--learning_rat", "1e-4"])
    with pytest.raises(ConfigError, match="TRL's name for 'max_new_tokens', which this stage does not have"):
        load_config(SFTConfig, None, {"response_length": 5})
    with pytest.raises(ConfigError, match="key 'per_device_train_batch_size' must be int"):
        load_config(SFTConfig, None, {"per_device_train_batch_size": "two"})


def test_readme_lists_every_alias():
    readme = (ROOT / "README.md").read_text()
    for trl in ALIASES:
        assert f"`{trl}` | {' or '.join(f'`{k}`' for k in targets(trl))} |" in readme, trl


def test_trainer_options_without_a_counterpart_are_noted_where_a_stage_lacks_them(tmp_path, capsys):
    f = tmp_path / "sft.yaml"
    f.write_text(TRL_SFT_YAML + "save_steps: 500\nlogging_strategy: steps\nper_device_eval_batch_size: 4\n"
                 "optim: adamw_torch\ngradient_checkpointing_kwargs: {use_reentrant: false}\ndataset_num_proc: 4\n")
    cfg = load_config(SFTConfig, f)
    assert cfg.eval_steps == 100 and cfg.batch_size == 2
    noted = capsys.readouterr().err
    for key in ("save_steps", "logging_strategy", "per_device_eval_batch_size", "optim",
                "gradient_checkpointing_kwargs", "dataset_num_proc"):
        assert f"{f}: '{key}' ignored: {NOT_USED[key]}" in noted
    # a stage that has the option takes it, under TRL's name too, with no note
    rm = load_config(RewardConfig, None, {"save_steps": 7, "per_device_eval_batch_size": 8})
    assert (rm.save_steps, rm.eval_batch_size) == (7, 8)
    assert "ignored" not in capsys.readouterr().err


def test_a_trl_rloo_recipe_and_a_dpo_recipe_of_an_older_trl_load(tmp_path, capsys):
    f = tmp_path / "rloo.yaml"
    f.write_text("model_name_or_path: m\ndataset_name: p.jsonl\nreward_model_path: rm\nbeta: 0.05\n"
                 "max_completion_length: 48\nepsilon: 0.1\nnum_generations: 8\nlogging_steps: 10\nuse_vllm: false\n"
                 "max_prompt_length: 512\n")
    rloo = load_config(RLOOConfig, f)
    assert (rloo.prompts, rloo.reward, rloo.kl_coef, rloo.max_new_tokens, rloo.clip_eps) == ("p.jsonl", "rm", 0.05,
                                                                                           48, 0.1)
    assert rloo.num_generations == 8
    noted = capsys.readouterr().err
    for key in ("logging_steps", "use_vllm", "max_prompt_length"):
        assert f"{f}: '{key}' ignored: {NOT_USED[key]}" in noted
    f = tmp_path / "dpo.yaml"
    f.write_text("dataset_name: prefs.jsonl\nbeta: 0.1\nrpo_alpha: null\nlora_r: 32\nlora_target_modules: all-linear\n"
                 "no_remove_unused_columns: true\nmax_prompt_length: 512\nmax_completion_length: 256\n")
    dpo = load_config(DPOConfig, f)
    assert (dpo.data, dpo.beta, dpo.nll_coef) == ("prefs.jsonl", 0.1, 0.0)
    assert load_config(DPOConfig, None, {"rpo_alpha": 0.2}).nll_coef == 0.2
    noted = capsys.readouterr().err
    assert f"'lora_r' ignored: {NOT_USED['lora_r']}" in noted and "'lora_target_modules' ignored" in noted
    assert f"'max_completion_length' ignored: {NOT_USED['max_completion_length']}" in noted
    with pytest.raises(ConfigError, match="TRL's name for 'data' or 'prompts', which this stage does not have"):
        load_config(ChatConfig, None, {"dataset_name": "x"})


def test_trl_habits_that_tripped_the_loader(tmp_path, capsys):
    # bare flags, as TRL's example commands write them, do not swallow the next option
    cfg = load_config(DPOConfig, None, ["--use_peft", "--no_remove_unused_columns", "--beta", "0.2"])
    assert cfg.beta == 0.2
    assert load_config(SFTConfig, None, ["--packing", "--per_device_train_batch_size", "2"]).batch_size == 2
    with pytest.raises(ConfigError, match="option '--rpo_alpha' needs a value"):
        load_config(DPOConfig, None, ["--rpo_alpha", "--model", "/x"])
    # bf16 on and fp16 off is one choice; a flag that is not true/false says so
    assert load_config(SFTConfig, None, {"bf16": True, "fp16": False}).dtype == "bfloat16"
    with pytest.raises(ConfigError, match="key 'bf16' must be true or false, got 1"):
        load_config(SFTConfig, None, {"bf16": 1})
    # TRL's nulls keep our defaults; a list of target modules is read as ours
    f = tmp_path / "rm.yaml"
    f.write_text("center_rewards_coefficient: null\ntorch_dtype: null\nresume_from_checkpoint: null\n"
                 "lora_target_modules: [q_proj, v_proj]\n")
    rm = load_config(RewardConfig, f)
    assert (rm.center_coef, rm.dtype, rm.resume, rm.target_modules) == (RewardConfig().center_coef, "auto", False,
                                                                       "q_proj,v_proj")
    assert f"{f}: 'torch_dtype' is null: the stage's default is kept" in capsys.readouterr().err
    # a TRL name that means something else in the RL stages is refused there, saying why
    with pytest.raises(ConfigError, match="per-device micro-batch has no counterpart in the RL stages"):
        load_config(PPOConfig, None, {"per_device_train_batch_size": 4})
    with pytest.raises(ConfigError, match="gradient step every mini_batch_size rollouts"):
        load_config(RLOOConfig, None, {"gradient_accumulation_steps": 4})
    assert load_config(RLOOConfig, None, {"gradient_accumulation_steps": 1}).mini_batch_size == RLOOConfig().mini_batch_size
    # TRL's beta is fixed; ours adapts unless told not to, and the note says so
    assert load_config(RLOOConfig, None, ["--beta", "0.05"]).kl_coef == 0.05
    assert "adaptive_kl (on) then moves it towards kl_target" in capsys.readouterr().err
    load_config(RLOOConfig, None, {"beta": 0.05, "adaptive_kl": False})
    assert "adaptive_kl" not in capsys.readouterr().err
