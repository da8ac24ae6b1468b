"""configs/*/gpu.yaml and qlora.yaml: each recipe loads with its stage's config loader, documents
every value it changes, names no paths, and turns into the TRL arguments, quantization config and
device policy a GPU run would get, all checked on a machine without a GPU (the CUDA machine is
described to the pure `plan_device`, and TRL configs whose constructor checks for a GPU are
checked through the keyword arguments the stage passes them). Also: which stages each
configs/accelerate/*.yaml supports, as the stages enforce it, the README says and the headers say;
and a GPU recipe on a CPU-only machine is a one-line error."""
import re
from pathlib import Path

import pytest
import torch

from cli.main import config_classes
from core.config import UserError, load_config
from core.device import DeviceError, plan_device
from core.training import STAGE_LAUNCH_MODES, check_launch, launch_mode

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [("sft", "gpu"), ("sft", "qlora"), ("dpo", "gpu"), ("dpo", "qlora"), ("reward", "gpu"), ("ppo", "gpu"),
           ("eval", "gpu")]
PATH_KEYS = {"run", "model", "data", "out", "sft", "reward", "prompts", "redteam", "corpus", "safety_rules"}
TRAINING = {"sft", "dpo", "reward", "ppo"}
CUDA = dict(cuda_available=True, bf16_supported=True, cpu_count=16)


def _path(stage, name):
    return ROOT / "configs" / stage / f"{name}.yaml"


def _load(stage, name, *overrides):
    return load_config(config_classes()[stage], _path(stage, name), list(overrides))


def _gpu_policy(cfg, local_rank=None):
    return plan_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, cfg.threads, local_rank=local_rank, **CUDA)


def test_the_recipe_list_is_complete():
    found = {(p.parent.name, p.stem) for p in (ROOT / "configs").glob("*/*.yaml") if p.stem in ("gpu", "qlora")}
    assert found == set(RECIPES), "add new GPU recipes to RECIPES (and to the README's 'On GPUs')"


@pytest.mark.parametrize("stage,name", RECIPES)
def test_recipe_header_and_keys(stage, name):
    import yaml

    text = _path(stage, name).read_text()
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    values = yaml.safe_load(text)
    assert text.startswith("#") and f"rlhf {stage} --config configs/{stage}/{name}.yaml" in comment
    assert not PATH_KEYS & set(values), "recipes take paths from the command line, never from the file"
    assert "--run DIR" in comment  # the header says where the paths go
    cfg = _load(stage, name)  # unknown keys or wrong types raise ConfigError
    defaults = config_classes()[stage]()
    changed = [k for k in values if getattr(defaults, k) != getattr(cfg, k)]
    assert changed, "a recipe that changes nothing is the defaults"
    for key in changed:  # every non-default value is explained in the header
        assert re.search(rf"\b{key}\b", comment), f"{stage}/{name}.yaml: '{key}' is set but not explained"
    assert (cfg.device, cfg.dtype) == ("cuda", "bfloat16")


@pytest.mark.parametrize("stage,name", RECIPES)
def test_recipe_resolves_to_bf16_on_a_cuda_machine(stage, name):
    cfg = _load(stage, name)
    policy = _gpu_policy(cfg)
    assert policy.device == torch.device("cuda") and policy.bf16 and not policy.use_cpu
    assert policy.gradient_checkpointing is (stage in TRAINING)
    # under `accelerate launch` each process takes the GPU of its LOCAL_RANK
    assert _gpu_policy(cfg, local_rank="3").device == torch.device("cuda", 3)
    # bf16 is the recipe's choice, not the machine's: a GPU without it still gets what was asked
    assert plan_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, 0, cuda_available=True,
                       bf16_supported=False, cpu_count=1).bf16
    with pytest.raises(DeviceError, match="CUDA is not available"):
        plan_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, 0, cuda_available=False,
                    bf16_supported=False, cpu_count=4)


def test_plan_device_auto():
    gpu = plan_device("auto", "auto", None, 0, **CUDA)
    assert gpu.device.type == "cuda" and gpu.bf16 and not gpu.gradient_checkpointing
    assert plan_device("auto", "auto", None, 0, cuda_available=True, bf16_supported=False, cpu_count=1).fp16
    cpu = plan_device("auto", "auto", None, 0, cuda_available=False, bf16_supported=False, cpu_count=6)
    assert cpu.device.type == "cpu" and cpu.dtype == torch.float32 and cpu.threads == 6
    assert plan_device("cpu", "auto", None, 0, local_rank="1", **CUDA).device == torch.device("cpu")
    for bad in ({"dtype": "int8"}, {"device": "gpu"}):
        with pytest.raises(UserError):
            plan_device(**{"device": "cuda", "dtype": "auto", **bad}, **CUDA)


def _trl_config(cls, kwargs):
    """Build TRL's config from the stage's arguments. TrainingArguments refuses bf16 without a GPU
    unless use_cpu is set, so only that one argument differs from the GPU run's; bf16 stays on."""
    return cls(**{**kwargs, "use_cpu": True})


def test_sft_gpu_trl_arguments(tmp_path):
    from trl import SFTConfig as TRLSFTConfig

    from core.models import lora_config
    from sft.train import trl_kwargs

    cfg = _load("sft", "gpu", "--model", "/models/m", "--run", str(tmp_path))
    kw = trl_kwargs(cfg, _gpu_policy(cfg), tmp_path / "sft")
    assert kw["bf16"] is True and kw["fp16"] is False and kw["use_cpu"] is False
    assert kw["activation_checkpointing"] is True and kw["dataloader_pin_memory"] is True
    assert (kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"]) == (8, 1)
    assert kw["learning_rate"] == 2e-4 and kw["max_length"] == 1024 and kw["completion_only_loss"] is True
    args = _trl_config(TRLSFTConfig, kw)
    assert args.bf16 and args.gradient_checkpointing and not args.fp16
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)
    assert args.learning_rate == 2e-4 and args.max_length == 1024 and args.num_train_epochs == 3.0
    assert args.eval_steps == args.save_steps == 200 and args.lr_scheduler_type.value == "cosine"
    assert args.output_dir == str(tmp_path / "sft" / "checkpoints")
    lora = lora_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (16, 32, 0.05, "all-linear")


def test_sft_qlora_arguments_and_quantization(tmp_path):
    from trl import SFTConfig as TRLSFTConfig

    from core.models import lora_config, quantization_config
    from sft.train import trl_kwargs

    cfg = _load("sft", "qlora")
    assert cfg.load_in_4bit is True
    policy = _gpu_policy(cfg)
    args = _trl_config(TRLSFTConfig, trl_kwargs(cfg, policy, tmp_path))
    assert args.bf16 and args.gradient_checkpointing and args.max_grad_norm == 0.3
    assert args.lr_scheduler_type.value == "constant" and args.learning_rate == 2e-4
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    lora = lora_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.1)
    q = quantization_config(policy)
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16


@pytest.mark.parametrize("name,batch,accum", [("gpu", 8, 8), ("qlora", 4, 16)])
def test_dpo_trl_arguments(tmp_path, name, batch, accum):
    from trl import DPOConfig as TRLDPOConfig

    from rl.dpo import trl_kwargs

    cfg = _load("dpo", name, "--run", str(tmp_path))
    assert cfg.load_in_4bit is (name == "qlora")
    kw = trl_kwargs(cfg, _gpu_policy(cfg), tmp_path / "dpo")
    assert kw["bf16"] is True and kw["use_cpu"] is False and kw["activation_checkpointing"] is True
    args = _trl_config(TRLDPOConfig, kw)
    assert args.bf16 and args.gradient_checkpointing
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (batch, accum)
    assert batch * accum == 64  # the DPO paper's batch, in pairs
    assert args.beta == 0.1 and args.learning_rate == 5e-6 and args.loss_type == ["sigmoid"]
    assert args.max_length == 1024 and args.max_steps == -1 and args.num_train_epochs == 1.0
    assert args.eval_steps == args.save_steps == 25 and args.load_best_model_at_end
    assert args.label_smoothing == 0.0  # ε is per pair, from the votes (cfg.label_smoothing)
    assert cfg.label_smoothing == "agreement"


def test_ppo_gpu_recipe():
    from core.models import lora_config
    from rl.ppo import check_config

    cfg = _load("ppo", "gpu", "--run", "runs/x")
    check_config(cfg)  # mini_batch_size within batch_size, valid estimators, checkpoints on
    assert (cfg.batch_size, cfg.mini_batch_size, cfg.ppo_epochs) == (64, 16, 4)
    assert cfg.batch_size // cfg.mini_batch_size == 4  # optimizer steps per epoch
    assert (cfg.max_new_tokens, cfg.max_steps, cfg.num_epochs) == (256, -1, 1.0)
    from rl.pg_inputs import total_iterations

    assert total_iterations(cfg.max_steps, cfg.num_epochs, 6400, cfg.batch_size, world=8) == 13  # 8 GPUs
    assert (cfg.temperature, cfg.gamma, cfg.lam, cfg.clip_eps, cfg.vf_coef) == (0.7, 1.0, 0.95, 0.2, 0.1)
    assert lora_config(cfg).r == 16  # the value function's adapter
    assert not cfg.load_in_4bit


def test_reward_gpu_recipe():
    from reward.train import check_config, total_steps

    cfg = _load("reward", "gpu", "--model", "/models/m")
    check_config(cfg)
    assert cfg.lora is True and cfg.max_length == 1024 and cfg.batch_size == 8 and cfg.eval_batch_size == 64
    assert cfg.num_epochs == 1.0 and cfg.ablations is False and cfg.learning_rate == 1e-4
    assert total_steps(cfg, n_train=800) == 100  # one pass over 800 pairs in batches of 8


def test_reward_refuses_4bit():
    from core.config import ConfigError, RewardConfig
    from reward.train import check_config

    with pytest.raises(ConfigError, match="load_in_4bit"):
        check_config(load_config(RewardConfig, None, {"load_in_4bit": True}))


def test_reward_gradient_checkpointing_keeps_loss_and_gradients(tiny_base, tmp_path):
    """The reward recipe's gradient_checkpointing is applied to the backbone and changes nothing
    but memory: the same loss and gradients as without it (tiny decoder backbone, CPU)."""
    from core.config import RewardConfig
    from core.device import resolve_device
    from core.models import load_tokenizer
    from reward.train import batch_loss, encode_rows, make_batch, new_model

    tok = load_tokenizer(tiny_base)
    rows = [{"prompt": "Are you open Monday?", "chosen": "Yes, 9am to 6pm.", "rejected": "No idea.",
             "margin": 0.5, "agreement": 1.0, "aspects_chosen": None, "aspects_rejected": None}] * 2
    results = []
    for gc in (False, True):
        cfg = load_config(RewardConfig, None, {"model": str(tiny_base), "lora_r": 4, "gradient_checkpointing": gc})
        policy = resolve_device("cpu", gradient_checkpointing=gc, threads=1, apply=False)
        rm = new_model(cfg, tiny_base, tok, policy, aspect_heads=False)
        assert rm.hf_model.is_gradient_checkpointing is gc
        rm.train()
        batch = make_batch(encode_rows(rows, tok, rm.kind, 64), tok.pad_token_id)
        loss, _ = batch_loss(rm, batch, cfg)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in rm.named_parameters() if p.requires_grad}))
    (loss0, grads0), (loss1, grads1) = results
    assert loss0 == pytest.approx(loss1, abs=1e-6) and grads0.keys() == grads1.keys()
    assert all(torch.allclose(grads0[n], grads1[n], atol=1e-6) for n in grads0)
    assert any(g.abs().sum() > 0 for g in grads1.values())


def test_eval_gpu_recipe():
    cfg = _load("eval", "gpu", "--run", "runs/x")
    assert cfg.max_new_tokens == _load("ppo", "gpu").max_new_tokens == 256


# --------------------------------------------------------------------- accelerate launch modes

def _launch(name: str) -> dict[str, str]:
    """What a process started by `accelerate launch --config_file NAME.yaml` sees: accelerate's own
    launch environment plus the WORLD_SIZE torchrun adds (8 processes; cpu.yaml's header runs 2)."""
    from test_accelerate_configs import _launch_env, _load as load_accelerate

    n = load_accelerate(ROOT / "configs" / "accelerate" / f"{name}.yaml").num_processes
    return {**_launch_env(name), "WORLD_SIZE": str(max(n, 2))}


def _supported(name: str) -> set[str]:
    mode = launch_mode(_launch(name))
    return {stage for stage, modes in STAGE_LAUNCH_MODES.items() if mode in modes}


ACCELERATE = {"cpu": {"sft", "dpo", "ppo", "rloo"}, "multi_gpu": {"sft", "dpo", "ppo", "rloo"},
              "deepspeed_zero2": {"sft", "dpo"},
              "deepspeed_zero3": {"sft"}, "fsdp": {"sft"}}


@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_accelerate_config_stages_match_the_stages_checks(name):
    assert {launch_mode(_launch(name))} <= {"ddp", "zero2", "zero3", "fsdp"}
    assert _supported(name) == ACCELERATE[name]
    header = (ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text()
    line = re.search(r"^# Stages: ((?:[a-z]+, )*[a-z]+)", header, re.M)
    assert line, f"{name}.yaml: say which stages it supports in a '# Stages: ...' line"
    assert {s.strip() for s in line.group(1).split(",")} == ACCELERATE[name]
    for stage in STAGE_LAUNCH_MODES:
        if stage in ACCELERATE[name]:
            check_launch(stage, _launch(name))
        else:
            with pytest.raises(UserError, match=f"^{stage} runs in"):
                check_launch(stage, _launch(name))


def test_readme_table_lists_the_same_stages():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## On GPUs"):]
    rows = re.findall(r"^\| `configs/accelerate/(\w+)\.yaml` \|.*\| ([a-z, ]+) \|$", section, re.M)
    assert {name: {s.strip() for s in stages.split(",")} for name, stages in rows} == ACCELERATE
    for stage, name in RECIPES:
        assert f"configs/{stage}/{name}.yaml" in section


def test_single_process_runs_every_stage():
    for stage in STAGE_LAUNCH_MODES:
        check_launch(stage, {})
        check_launch(stage, {"WORLD_SIZE": "1", "LOCAL_RANK": "0"})


# --------------------------------------------------------------------- on a machine without CUDA

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
@pytest.mark.parametrize("stage,name", RECIPES)
def test_gpu_recipe_on_cpu_is_a_one_line_error(stage, name, tmp_path, capsys):
    from cli.main import main

    rc = main([stage, "--config", str(_path(stage, name)), "--run", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"rlhf {stage}: ")
    if stage in TRAINING:
        assert "CUDA is not available" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_missing_model_on_cpu_is_a_one_line_error(tmp_path, capsys):
    from cli.main import main

    rc = main(["sft", "--config", str(_path("sft", "gpu")), "--device", "cpu", "--dtype", "float32",
               "--model", str(tmp_path / "nope"), "--run", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "nope' is not a local directory" in err


def test_4bit_on_cpu_is_a_user_error(tiny_base):
    from core.device import resolve_device
    from core.models import load_causal_lm

    with pytest.raises(UserError, match="needs CUDA"):
        load_causal_lm(tiny_base, resolve_device("cpu", apply=False), load_in_4bit=True)
