"""Demo base pretraining in fp32 vs under bf16 autocast, or at two depths, the same steps and seed,
in one process: seconds, held-out loss (always computed in fp32) and the base's fact accuracy on
the held-out prompts (bench/base_probe.py), for each, and each one's time as a ratio of the first's.
The measurement behind the CPU bf16 choice of the device policy (core/device.py) and the demo
base's depth (demo/config.py BaseConfig.num_layers).

    python bench/base_dtype.py [--data runs/demo/data] [--tokenizer runs/demo/base] [--steps 440]
    python bench/base_dtype.py --dtypes float32 --layers 6,4

The tokenizer is trained on the corpus when --tokenizer is not given. `--dtypes bfloat16` then
`--dtypes float32` runs the two apart (the full 440 steps each take minutes). The runs use the demo's base
settings (demo/config.py BaseConfig) with --steps steps (the warm-up and the short-block share
scaled the same way). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--tokenizer", default="", help="a model directory whose tokenizer to use ('' = train one)")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = the demo base's max_steps)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--layers", default="", help="comma-separated depths to compare ('' = the demo's)")
    ap.add_argument("--keep", default="", help="save the models to KEEP/<variant> ('' = a temporary directory)")
    args = ap.parse_args()
    from base_probe import answers, fact_states  # bench/ is on the path as the script's folder
    from core.models import load_causal_lm, load_tokenizer
    from core.device import resolve_device
    from demo.base import read_corpus
    from demo.config import BaseConfig
    from demo.pretrain import pretrain
    from demo.tokenizer import train_tokenizer

    data, cfg = Path(args.data), BaseConfig()
    args.steps = args.steps or cfg.max_steps
    docs = read_corpus(data / "corpus.txt")
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else train_tokenizer(docs, vocab_size=cfg.vocab_size)
    held = [r["prompt"] for r in map(json.loads, (data / "prompts.jsonl").open()) if "eval" in r["tags"]]
    scale = args.steps / cfg.max_steps
    result = {"steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        depths = [int(x) for x in args.layers.split(",")] if args.layers else [cfg.num_layers]
        first = None  # the variant the others' times are divided by
        for dtype, layers in ((d, n) for d in args.dtypes.split(",") for n in depths):
            name = dtype if len(depths) == 1 else f"{dtype}_{layers}_layers"
            out = Path(tmp) / name
            m = pretrain(docs, tok, out, hidden_size=cfg.hidden_size, num_layers=layers,
                         num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
                         intermediate_size=cfg.intermediate_size, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                         max_steps=args.steps, lr=cfg.learning_rate,
                         warmup_steps=max(1, round(cfg.warmup_steps * scale)),
                         weight_decay=cfg.weight_decay, short_steps=round(cfg.short_seq_share * args.steps),
                         seed=cfg.seed, progress=False, dtype=getattr(torch, dtype))
            model = load_causal_lm(out, resolve_device("cpu", "float32", apply=False), load_tokenizer(out)).eval()
            states = fact_states(held, answers(model, load_tokenizer(out), held, "Q: {p}\nA:"))
            acc = states["correct"] / max(1, sum(states.values()))
            first = first or name
            result[name] = {"seconds": m["seconds"], "n_params": m["n_params"],
                            "time_ratio": round(m["seconds"] / result.get(first, m)["seconds"], 3),
                            "val_loss": round(m["val_loss"], 4),
                            "final_train_loss_avg": round(m["final_train_loss_avg"], 4), "fact_accuracy": round(acc, 3)}
            print(name, result[name], flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
