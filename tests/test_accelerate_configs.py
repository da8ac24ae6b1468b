"""configs/accelerate/*.yaml: each parses with accelerate's own loader, has the distributed type its
name promises, uses only keys `accelerate launch` knows, and the settings LoRA needs survive the
way `accelerate launch` turns them into environment variables and plugins (ZeRO-3 stage and 16-bit
save, FSDP use_orig_params and full state dict). No GPU, DeepSpeed or process group needed."""
import os
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
# file stem → the DistributedType value its name promises
EXPECTED = {"cpu": "NO", "multi_gpu": "MULTI_GPU", "deepspeed_zero2": "DEEPSPEED",
            "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}


def _files():
    return sorted(CONFIGS.glob("*.yaml"))


def _load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(path))


def _launch_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file NAME.yaml` gives its processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "-m", "cli"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command does before deepspeed_launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_every_file_is_known_and_parses_with_its_promised_type():
    assert {f.stem for f in _files()} == set(EXPECTED), "add new configs to EXPECTED (and the README)"
    for f in _files():
        cfg = _load(f)
        assert cfg.distributed_type.value == EXPECTED[f.stem], f
        text = f.read_text()
        assert text.startswith("#") and f"--config_file configs/accelerate/{f.name}" in text, \
            f"{f.name}: start with a comment saying when to use it and the launch command"


def test_nested_keys_are_accelerate_launch_options():
    """The loader checks top-level keys only; a misspelt deepspeed_config/fsdp_config key would be
    silently ignored. Launch copies each nested key onto its argparse namespace, so each must be
    one of `accelerate launch`'s own options."""
    from accelerate.commands.launch import launch_command_parser

    dests = {a.dest for a in launch_command_parser()._actions}
    for f in _files():
        cfg = _load(f)
        for key in [*cfg.deepspeed_config, *cfg.fsdp_config]:
            assert key in dests, f"{f.name}: '{key}' is not an accelerate launch option"


def test_cpu_and_multi_gpu():
    cpu, ddp = _load(CONFIGS / "cpu.yaml"), _load(CONFIGS / "multi_gpu.yaml")
    assert cpu.use_cpu and cpu.mixed_precision == "no" and cpu.num_processes == 1
    assert not ddp.use_cpu and ddp.mixed_precision == "bf16" and ddp.num_machines == 1


@pytest.mark.parametrize("name,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_plugin_from_launch_env(name, stage):
    from accelerate.utils import DeepSpeedPlugin

    assert _load(CONFIGS / f"{name}.yaml").deepspeed_config["zero_stage"] == stage
    with mock.patch.dict(os.environ, _launch_env(name), clear=True):
        plugin = DeepSpeedPlugin()  # builds its DeepSpeed config dict; does not import deepspeed
    zero = plugin.deepspeed_config["zero_optimization"]
    assert plugin.zero_stage == stage and zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == "none" and zero["offload_param"]["device"] == "none"
    # "auto": the Trainer fills them from --max_grad_norm and --grad_accum
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    if stage == 3:
        assert plugin.zero3_init_flag is True
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # adapters saved as plain PEFT files


def test_fsdp_plugin_from_launch_env():
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import ShardingStrategy, StateDictType
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    assert _load(CONFIGS / "fsdp.yaml").fsdp_config["fsdp_use_orig_params"] is True
    env = _launch_env("fsdp")
    # Rank 0's weights are broadcast to the others at wrap time, so every process starts equal.
    assert env["FSDP_SYNC_MODULE_STATES"].lower() == "true"
    # Everything else comes from the launch environment. sync_module_states is passed as False
    # here only because checking it needs a CUDA device, which the plugin queries at construction.
    with mock.patch.dict(os.environ, env, clear=True):
        plugin = FullyShardedDataParallelPlugin(sync_module_states=False)
    assert plugin.fsdp_version == 1
    assert plugin.use_orig_params is True  # frozen base + trainable LoRA in one FSDP unit
    assert plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.transformer_cls_names_to_wrap == [LlamaDecoderLayer.__name__]  # the tiny default's block
    assert plugin.cpu_offload.offload_params is False and plugin.activation_checkpointing is False
