"""Shared fixtures: a tiny base model (built once per session) and a small chat data set."""
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS = ["When do you open on {d}?", "What time do you close on {d}?", "Are you open {d}?",
             "How late are you open on {d}?"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def launch_two_processes(script, cwd) -> None:
    """`accelerate launch --num_processes 2` of a Python script on the CPU. `--multi_gpu` selects
    accelerate's torchrun launcher (`--cpu` would start one process); a stage's
    Accelerator(cpu=True) then picks the gloo backend (DistributedType.MULTI_CPU)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
                   check=True, env=env, cwd=cwd, timeout=300)


def tiny_chat_rows(n_days=7):
    rows = []
    for qi, q in enumerate(QUESTIONS):
        for d in DAYS[:n_days]:
            ans = "We are closed on Sundays." if d == "Sunday" else f"On {d} we are open 9am to 6pm."
            rows.append({"prompt": q.format(d=d), "completion": ans, "meta": {"q": qi}})
    return rows


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A 2-layer Llama + BPE tokenizer with the project's chat template, saved as an HF directory."""
    from demo.pretrain import pretrain
    from demo.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("base") / "base"
    texts = [f"Customer: {r['prompt']}\nAgent: {r['completion']}" for r in tiny_chat_rows()] * 4
    tok = train_tokenizer(texts, vocab_size=320)
    pretrain(texts, tok, out, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
             seq_len=64, batch_size=4, max_steps=3, warmup_steps=1, progress=False)
    return out


@pytest.fixture
def chat_file(tmp_path):
    f = tmp_path / "sft.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in tiny_chat_rows()))
    return f


@pytest.fixture(scope="session")
def tiny_run(tiny_base, tmp_path_factory):
    """A run directory with base/ and a briefly trained sft/ adapter."""
    import shutil

    from core.config import SFTConfig, load_config
    from sft.train import main

    run = tmp_path_factory.mktemp("run")
    shutil.copytree(tiny_base, run / "base")
    data = run / "data" / "sft.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_chat_rows()))
    # float32: the shared fixture is the same adapter on every machine (--dtype auto would pick bf16
    # autocast on CPUs whose probe finds it faster, core/device.py)
    main(load_config(SFTConfig, None, dict(run=str(run), max_steps=2, eval_steps=2, batch_size=4, lora_r=4,
                                           early_stopping_patience=0, learning_rate=5e-2, dtype="float32")))
    return run
