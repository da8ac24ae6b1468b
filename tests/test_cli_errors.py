"""Every user mistake ends with exit code 2, one line that names the file (and line and field) or
the option, no traceback, and nothing half-made left behind. Each case runs the installed `rlhf`
command the way a user would."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from own_model import build_qwen

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    qwen = build_qwen(d / "qwen")
    (d / "latin1.yaml").write_bytes("learning_rate: 1e-4 # d\xe9j\xe0 vu\n".encode("latin-1"))
    (d / "sft.jsonl").write_text(json.dumps({"prompt": "Hi", "completion": "Hello"}) + "\n")
    (d / "prompts.jsonl").write_text(json.dumps({"prompt": "Hi"}) + "\n")
    (d / "rules.yaml").write_text("violence: ['(unclosed']\n")
    (d / "same.csv").write_text('prompt,completion\n"Hi","Hello"\n"Hi","Hey"\n"Hi","Yo"\n')
    (d / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"))
    (d / "broken.parquet").write_bytes(b"not a parquet file")
    (d / "sft20.jsonl").write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f"Answer {i}."})
                                           + "\n" for i in range(20)))
    (d / "dup_ids.jsonl").write_text("".join(json.dumps({"id": "x", "prompt": p}) + "\n" for p in ("Hi", "Yo")))
    # the second row cut short before its closing brace: the error's column is where the row ends
    (d / "cut.jsonl").write_text(json.dumps({"prompt": "Hi", "completion": "Hey"}) + "\n"
                                 '{"prompt": "Hi", "completion": "Hello"\n')
    (d / "notok").mkdir()
    (d / "notok" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return {"dir": d, "qwen": qwen}


def rlhf(*args, cwd):
    p = subprocess.run([str(Path(sys.executable).with_name("rlhf")), *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    return p.returncode, p.stdout, p.stderr


# (name, command line with {d} for the fixture folder and {qwen} for the model, text the error must hold)
CASES = [
    ("model path", ["sft", "--model", "{d}/nowhere", "--data", "{d}/sft.jsonl", "--out", "{d}/o"],
     "'{d}/nowhere' is not a local directory (models are never downloaded)"),
    ("unknown option", ["dpo", "--learning_rat", "1e-4"], "unknown option '--learning_rat' for DPOConfig (did you mean"),
    ("non-UTF-8 config", ["sft", "--config", "{d}/latin1.yaml"], "{d}/latin1.yaml: not UTF-8 text (byte"),
    ("missing config", ["reward", "--config", "{d}/nope.yaml"], "{d}/nope.yaml: config file not found"),
    ("export without a run", ["export", "--merge", "{d}/merged"], "runs/demo/sft: no LoRA adapter here"),
    ("export without --merge", ["export", "--run", "{d}"], "--merge OUT (the output directory) is required"),
    ("loop without its inputs", ["loop", "--run", "{d}/r"], "--model, --sft, --prompts required"),
    ("loop, bad stage", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl", "--prompts",
                         "{d}/prompts.jsonl", "--until", "rlhf"], "--until 'rlhf': not a stage"),
    ("loop, no rounds", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl", "--prompts",
                         "{d}/prompts.jsonl", "--rounds", "0"], "--rounds 0: must be at least 1"),
    ("loop, a later round's stage", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl",
                                     "--prompts", "{d}/prompts.jsonl", "--until", "ppo@3", "--rounds", "2"],
     "--until 'ppo@3': not a stage (one of sft, collect, reward, dpo, ppo, rloo, eval, or NAME@K for K in 2..2)"),
    ("loop, round policy", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl", "--prompts",
                            "{d}/prompts.jsonl", "--round_policy", "sft"], "--round_policy 'sft': must be auto or one of"),
    ("demo, no rounds", ["demo", "--run", "{d}/demo", "--rounds", "0"], "--rounds 0: must be at least 1"),
    ("demo, negative jobs", ["demo", "--run", "{d}/demo", "--jobs", "-1"], "--jobs -1: must be 0 (auto) or more"),
    ("demo data, negative corpus size", ["data", "demo", "--run", "{d}/dd", "--faq_per_wording", "-1"],
     "command line: key 'faq_per_wording' must be >= 0, got -1"),
    ("demo, missing data config", ["demo", "--run", "{d}/demo", "--data_config", "{d}/nodata.yaml"],
     "{d}/nodata.yaml: config file not found"),
    ("loop, negative jobs", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl", "--prompts",
                             "{d}/prompts.jsonl", "--jobs", "-2"], "--jobs -2: must be 0 (auto) or more"),
    ("eval workers", ["eval", "--run", "{d}", "--workers", "-1"], "--workers must be >= 0 (0 = one per thread), got -1"),
    ("eval rules before sampling", ["eval", "--run", "{d}", "--safety_rules", "{d}/rules.yaml"],
     "{d}/rules.yaml"),
    ("SFT rows all one prompt", ["sft", "--model", "{qwen}", "--data", "{d}/same.csv", "--out", "{d}/o",
                                 "--eos_token", "<|im_end|>"], "all 3 rows share one prompt ('hi')"),
    ("SFT rows longer than max_length", ["sft", "--model", "{qwen}", "--data", "{d}/sft20.jsonl", "--out", "{d}/o",
                                         "--eos_token", "<|im_end|>", "--max_length", "4"],
     "{d}/sft20.jsonl: the data check above found errors; nothing was trained"),
    ("a row cut short", ["sft", "--model", "{qwen}", "--data", "{d}/cut.jsonl", "--out", "{d}/o",
                         "--eos_token", "<|im_end|>"],
     "{d}/cut.jsonl:2: (row): not valid JSON: Expecting ',' delimiter at column 39"),
    ("loop, a prompt id repeated", ["loop", "--run", "{d}/r", "--model", "{qwen}", "--sft", "{d}/sft.jsonl",
                                    "--prompts", "{d}/dup_ids.jsonl"],
     "{d}/dup_ids.jsonl:2: id: 'x' repeats the id of {d}/dup_ids.jsonl:1; each prompt needs its own"),
    ("non-UTF-8 data", ["sft", "--model", "{qwen}", "--data", "{d}/latin1.jsonl", "--out", "{d}/o",
                        "--eos_token", "<|im_end|>"], "{d}/latin1.jsonl:1: (row): not UTF-8 text (byte 0xe9"),
    ("corrupt Parquet", ["reward", "--data", "{d}/broken.parquet", "--out", "{d}/o"],
     "{d}/broken.parquet: not a readable Parquet file"),
    ("Qwen tokenizer unfixed", ["sft", "--model", "{qwen}", "--data", "{d}/sft.jsonl", "--out", "{d}/o"],
     "pass --eos_token '<|im_end|>'"),
    ("guidelines file", ["collect", "serve", "--run", "{d}/c", "--guidelines", "{d}/none.md"],
     "--guidelines {d}/none.md: file not found"),
    ("rloo, one sample per prompt", ["rloo", "--run", "{d}/r", "--num_generations", "1"],
     "num_generations must be >= 2 (the leave-one-out baseline"),
    ("SFT held-out share", ["sft", "--model", "{qwen}", "--data", "{d}/sft.jsonl", "--out", "{d}/o",
                            "--eos_token", "<|im_end|>", "--val_fraction", "0.7"],
     "key 'val_fraction' must be in (0, 0.5] for SFT, got 0.7"),
    ("an option out of range", ["ppo", "--run", "{d}/r", "--max_new_tokens", "-5"],
     "command line: key 'max_new_tokens' must be >= 1, got -5"),
    ("run is a file", ["eval", "--run", "{d}/sft.jsonl"], "--run {d}/sft.jsonl: a file, not a run directory"),
    ("model without tokenizer files", ["sft", "--model", "{d}/notok", "--data", "{d}/sft.jsonl", "--out", "{d}/o"],
     "tokenizer '{d}/notok': no tokenizer files there"),
]


@pytest.mark.parametrize("name,args,expected", CASES, ids=[c[0] for c in CASES])
def test_user_mistakes_are_one_line_errors(files, name, args, expected):
    d = files["dir"]
    fill = {"d": d, "qwen": files["qwen"]}
    before = sorted(p.name for p in d.iterdir())
    code, out, err = rlhf(*[a.format(**fill) for a in args], cwd=d)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [x for x in err.splitlines() if x.startswith("rlhf ")]
    assert len(lines) == 1 and expected.format(**fill) in lines[0], err
    assert sorted(p.name for p in d.iterdir()) == before  # nothing half-made left behind
