"""The demo's LoRA SFT in fp32 vs under bf16 autocast (TRL's bf16 flag on the CPU), the same base,
data, steps and seed, in one process: training seconds, validation loss and the policy's fact
accuracy on the held-out prompts (greedy, gold oracle), for each. The SFT half of the measurement
behind the CPU bf16 choice of the device policy (core/device.py).

    python bench/sft_dtype.py --base runs/demo/base [--data runs/demo/data] [--max_steps 120]

Each dtype trains in its own temporary run directory (base and data linked in) with the demo's
SFT settings (configs/sft/tiny.yaml). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--max_steps", type=int, default=120)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    from base_probe import fact_states  # bench/ is on the path as the script's folder

    from core.config import SFTConfig, load_config
    from core.device import resolve_device
    from core.generation import generate
    from core.models import load_policy, load_tokenizer
    from sft.train import main as sft

    data = Path(args.data).resolve()
    held = [r["prompt"] for r in map(json.loads, (data / "prompts.jsonl").open()) if "eval" in r["tags"]]
    result = {"max_steps": args.max_steps}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.dtypes.split(","):
            run = Path(tmp) / name
            run.mkdir()
            (run / "base").symlink_to(Path(args.base).resolve())
            (run / "data").symlink_to(data)
            cfg = load_config(SFTConfig, ROOT / "configs" / "sft" / "tiny.yaml",
                              {"run": str(run), "max_steps": args.max_steps, "dtype": name})
            m = sft(cfg)
            tok = load_tokenizer(run / "sft")
            model = load_policy(run / "base", resolve_device("cpu", "float32", apply=False), tok, adapter=run / "sft")
            states = fact_states(held, generate(model, tok, held, max_new_tokens=96, batch_size=128))
            accuracy = states["correct"] / max(1, sum(states.values()))
            result[name] = {"train_seconds": m["train_seconds"], "val_loss": round(m["val_loss"], 4),
                            "device": m["device"], "fact_accuracy": round(accuracy, 3)}
            print(name, result[name], flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
