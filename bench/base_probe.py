"""Does a demo base model answer the question it is asked? Greedy answers in the corpus's
help-center format ("Q: ...\\nA:", no chat template, no SFT) to the held-out eval prompts and
to SFT-wording prompts, scored for fact accuracy by the gold oracle. The diagnostic behind the
base pretraining defaults: a low held-out loss alone did not mean the model used the
question.

    python bench/base_probe.py [--model runs/demo/base] [--data runs/demo/data] [--format "Q: {p}\\nA:"]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch


def answers(model, tok, prompts: list[str], fmt: str, max_new_tokens: int = 50) -> list[str]:
    tok.padding_side = "left"
    enc = tok([fmt.replace("{p}", p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    # the answer ends where the corpus would start the next turn or document
    return [t.split("\n")[0].split("<|endoftext|>")[0].strip() for t in texts]


def fact_states(prompts: list[str], responses: list[str]) -> Counter:
    """correct / wrong (a conflicting value) / off_topic (another item) / absent (no value)
    per checkable prompt."""
    from demo import oracle

    return Counter(s for s in (oracle.fact_state(p, r) for p, r in zip(prompts, responses)) if s is not None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/demo/base")
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--format", default="Q: {p}\nA:", help="prompt format; {p} = the question")
    ap.add_argument("--n_sft", type=int, default=100, help="SFT-wording prompts to probe as well")
    args = ap.parse_args()
    fmt = args.format.replace("\\n", "\n")
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_causal_lm(args.model, resolve_device("cpu"), tok).eval()
    data = Path(args.data)
    held = [r["prompt"] for r in map(json.loads, (data / "prompts.jsonl").open()) if "eval" in r["tags"]]
    sft = [r["prompt"] for r in map(json.loads, (data / "sft.jsonl").open())][: args.n_sft]
    result = {}
    for name, prompts in (("heldout", held), ("sft_wording", sft)):
        states = fact_states(prompts, answers(model, tok, prompts, fmt))
        result[name] = {"fact_accuracy": round(states["correct"] / max(1, sum(states.values())), 3), **states}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
