"""Outputs follow Hugging Face conventions: adapters load with AutoPeftModelForCausalLM from any
working directory (adapter_config.json names the base by its absolute path, for every adapter a
stage saves), cards carry library_name / base_model / datasets / tags, `rlhf export --dtype`
sets the merged weights' dtype, and written files are readable under the process's umask."""
import json
import os
import shutil
import stat
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from core.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _base_of(adapter: Path) -> str:
    return json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]


@pytest.fixture
def relative_run(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny run (base + SFT adapter), with the working directory at its parent so
    that `work/...` paths are relative."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run / "base", tmp_path / "work" / "base")
    shutil.copytree(tiny_run / "sft", tmp_path / "work" / "sft")
    return tmp_path / "work"


def _logits(model, tok, text="Are you open Friday?"):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


def test_sft_from_a_relative_run_loads_with_auto_peft_anywhere(tiny_base, tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    from conftest import tiny_chat_rows
    from core.config import SFTConfig
    from core.device import resolve_device
    from core.models import load_policy, load_tokenizer
    from core.policies import adapter_dir, base_dir
    from core.runcard import read_card_header
    from sft.train import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_base, Path("work/base"))
    Path("work/data").mkdir(parents=True)
    Path("work/data/sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_chat_rows()))
    with umask(0o022):
        main(load_config(SFTConfig, None, dict(run="work", max_steps=2, eval_steps=2, batch_size=4, lora_r=4,
                                               early_stopping_patience=0, learning_rate=5e-2, threads=1)))
    run, base = tmp_path / "work", str((tmp_path / "work" / "base").resolve())
    assert _base_of(run / "sft") == base  # PEFT alone would have written "work/base"
    # every file the stage wrote, checkpoints included, is readable by all under umask 022
    modes = {str(p.relative_to(run / "sft")): stat.S_IMODE(p.stat().st_mode)
             for p in (run / "sft").rglob("*") if p.is_file()}
    assert {"config.yaml", "metrics.json", "README.md", "train.jsonl", "val.jsonl", "log.jsonl",
            "adapter_model.safetensors"} <= modes.keys()
    assert {f: m for f, m in modes.items() if m != 0o644} == {}

    header = read_card_header(run / "sft")
    assert header["library_name"] == "peft" and header["base_model"] == base
    assert header["datasets"] == [str((run / "data" / "sft.jsonl").resolve())]  # not the splits
    assert {"rlhf-loop", "trl", "sft", "lora"} <= set(header["tags"])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    auto = AutoPeftModelForCausalLM.from_pretrained(str(run / "sft")).eval()
    tok = load_tokenizer(run / "sft")
    ours = load_policy(run / "base", resolve_device("cpu", apply=False), tok, adapter=run / "sft").eval()
    torch.testing.assert_close(_logits(auto, tok), _logits(ours, tok))

    # a run directory without base/ finds the base through the adapter, from anywhere
    shutil.copytree(run / "sft", tmp_path / "moved" / "sft")
    assert base_dir(tmp_path / "moved") == Path(base)
    assert adapter_dir(tmp_path / "moved", "sft") == tmp_path / "moved" / "sft"


def test_dpo_ppo_and_reward_adapters_name_their_base_absolutely(relative_run, tmp_path, monkeypatch):
    """The adapters as the stages save them (rl/dpo.py: the "default" adapter of load_policy's
    model; rl/ppo.py: save_policy_and_value; reward: save_reward_model), from relative paths."""
    from peft import AutoPeftModelForCausalLM

    from core.config import PPOConfig, RewardConfig
    from core.device import resolve_device
    from core.models import load_policy, load_tokenizer, lora_config
    from reward.model import build_reward_model, load_reward_model, lora_seq_cls_config, save_reward_model
    from rl.ppo_model import build_actor_critic, save_policy_and_value

    base = str(Path("work/base").resolve())
    cpu = resolve_device("cpu", threads=1, apply=False)
    tok = load_tokenizer("work/base")

    dpo = load_policy("work/base", cpu, tok, adapter="work/sft", trainable=True)
    dpo.save_pretrained("out/dpo", selected_adapters=["default"])
    assert _base_of(Path("out/dpo")) == base

    cfg = load_config(PPOConfig, None, {"lora_r": 4})
    ac = build_actor_critic("work/base", "work/sft", tok, cpu, lora_config(cfg))
    save_policy_and_value(ac, Path("out/ppo"))
    assert _base_of(Path("out/ppo")) == base and _base_of(Path("out/ppo/value")) == base

    rcfg = load_config(RewardConfig, None, {"lora_r": 4})
    rm = build_reward_model("work/base", tok, cpu.device, lora_seq_cls_config(rcfg))
    save_reward_model("out/reward", rm, tok, "work/base", 64)
    assert _base_of(Path("out/reward")) == base

    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path / "work")  # another directory: "work/base" no longer resolves
    for name in ("dpo", "ppo"):
        model = AutoPeftModelForCausalLM.from_pretrained(str(out / name)).eval()
        assert model.peft_config["default"].base_model_name_or_path == base
        assert _logits(model, tok).shape[-1] == len(tok)
    rm2, _, meta = load_reward_model(out / "reward")
    assert meta["base_model"] == base and rm2.kind == "decoder"


def test_export_honours_dtype_and_writes_a_card(tiny_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from cli.main import main as cli
    from core.config import ExportConfig
    from core.export import main
    from core.runcard import read_card_header

    outs = {}
    for dtype in ("auto", "bfloat16", "float16"):
        outs[dtype] = main(load_config(ExportConfig, None, {"run": str(tiny_run), "merge": str(tmp_path / dtype),
                                                             "dtype": dtype}))
    expected = {"auto": ("F32", "float32"), "bfloat16": ("BF16", "bfloat16"), "float16": ("F16", "float16")}
    for dtype, out in outs.items():
        stored, name = expected[dtype]
        assert _safetensors_dtypes(out) == {stored}
        assert json.loads((out / "config.json").read_text())["dtype"] == name
    full = AutoModelForCausalLM.from_pretrained(str(outs["auto"]), dtype=torch.float32).state_dict()
    half = AutoModelForCausalLM.from_pretrained(str(outs["bfloat16"]), dtype="auto").state_dict()
    assert all(half[k].dtype == torch.bfloat16 and torch.equal(half[k], v.to(torch.bfloat16)) for k, v in full.items())

    header, sft = read_card_header(outs["bfloat16"]), read_card_header(tiny_run / "sft")
    assert header["library_name"] == "transformers"
    assert header["base_model"] == str((tiny_run / "base").resolve())
    assert header["datasets"] == sft["datasets"] and header["datasets"]  # what the merged adapter learned from
    assert {"rlhf-loop", "merged", "sft", "trl"} <= set(header["tags"]) and "lora" not in header["tags"]
    assert not (outs["bfloat16"] / "config.yaml").exists()  # only the card: a model directory stays a model's

    capsys.readouterr()
    assert cli(["export", "--run", str(tiny_run), "--merge", str(tmp_path / "x"), "--dtype", "int8"]) == 2
    err = capsys.readouterr().err
    assert "--dtype must be" in err and "Traceback" not in err and not (tmp_path / "x").exists()


def _safetensors_dtypes(model_dir: Path) -> set[str]:
    """The dtypes in the safetensors headers (8-byte length, then JSON), read without loading."""
    dtypes = set()
    for f in model_dir.glob("*.safetensors"):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return dtypes


def test_eval_directory_gets_a_card(tiny_run, tmp_path):
    from core.config import EvalConfig
    from core.runcard import read_card_header
    from eval.stage import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "base", run / "base")
    shutil.copytree(tiny_run / "sft", run / "sft")
    prompts = run / "data" / "prompts.jsonl"
    prompts.parent.mkdir()
    prompts.write_text("".join(json.dumps({"prompt": p, "tags": ["eval"]}) + "\n"
                               for p in ("Are you open Monday?", "When do you close on Sunday?")))
    main(load_config(EvalConfig, None, {"run": str(run), "max_new_tokens": 4, "n_bootstrap": 10, "report": False,
                                        "serving_temperature": 0.0, "ppl_max_rows": 2, "threads": 1}))
    header = read_card_header(run / "eval")
    assert "library_name" not in header  # an evaluation, not a model
    assert header["base_model"] == str((run / "base").resolve())
    assert header["datasets"] == [str(prompts.resolve())]
    assert {"rlhf-loop", "eval", "evaluation"} <= set(header["tags"])
    card = (run / "eval" / "README.md").read_text()
    assert "| policy sft | model |" in card and "\nsft     greedy " in card  # the stage's result table
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"base", "sft"} and (run / "eval" / "config.yaml").exists()


def test_atomic_writes_follow_the_umask(tmp_path):
    from core.io import atomic_write_text, write_json, write_jsonl

    with umask(0o022):
        files = [atomic_write_text(tmp_path / "a.txt", "x"), write_json(tmp_path / "b.json", {}),
                 write_jsonl(tmp_path / "c.jsonl", [{}])]
    assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o644] * 3
    with umask(0o077):  # a private umask is respected too
        assert stat.S_IMODE(write_json(tmp_path / "d.json", {}).stat().st_mode) == 0o600
    with umask(0o022):  # replacing a file gives the new one the umask's mode
        assert stat.S_IMODE(write_json(tmp_path / "d.json", {"x": 1}).stat().st_mode) == 0o644
    assert json.loads((tmp_path / "d.json").read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.jsonl", "d.json"]  # no temp left
