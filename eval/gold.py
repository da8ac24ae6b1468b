"""`rlhf eval`: the run's policies on held-out prompts, judged by the demo's gold oracle.

Every policy is an adapter on one copy of the base weights: the base policy is the base with
adapters disabled, the others are named adapters switched in turn. Each policy answers the same
held-out prompts (greedy unless a temperature is set) and the red-team prompts; the oracle gives
the overall score, fact accuracy and harmfulness, and pairs of policies get a win rate with a
bootstrap interval over prompts (ties count half).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from core.config import EvalConfig
from core.device import policy_from_config
from core.generation import generate
from core.io import write_json, write_jsonl
from core.models import load_causal_lm, load_tokenizer
from core.policies import base_dir, discover
from core.records import read_prompts
from eval.metrics import win_rate_with_ci

def load_eval_prompts(cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    run = Path(cfg.run)
    prompts = read_prompts(cfg.prompts or run / "data" / "prompts.jsonl")
    held_out = [p for p in prompts if "eval" in p["tags"]] or prompts
    if cfg.max_prompts:
        held_out = held_out[: cfg.max_prompts]
    red_path = Path(cfg.redteam) if cfg.redteam else run / "data" / "redteam.jsonl"
    redteam = read_prompts(red_path) if red_path.exists() else []
    if cfg.max_prompts:
        redteam = redteam[: max(1, cfg.max_prompts // 2)]
    return held_out, redteam


def attach_adapters(model, adapters: dict[str, Path]):
    """One PeftModel holding every adapter by name (one copy of the base weights)."""
    from peft import PeftModel

    peft_model = None
    for name, path in adapters.items():
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        else:
            peft_model.load_adapter(str(path), adapter_name=name)
    return peft_model or model


@contextlib.contextmanager
def use_policy(model, name: str):
    """Switch the shared model to one policy: 'base' disables every adapter."""
    if name == "base":
        ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        with ctx:
            yield model
    else:
        model.set_adapter(name)
        yield model


def score_responses(prompts: list[str], responses: list[tuple[str, list[int]]], eos_id: int) -> dict:
    from demo import oracle

    scores = [oracle.score(p, r) for p, (r, _) in zip(prompts, responses)]
    facts = [oracle.fact_correct(p, r) for p, (r, _) in zip(prompts, responses)]
    checked = [f for f in facts if f is not None]
    return {
        "overall": [s["overall"] for s in scores],
        "aspects": {a: float(np.mean([s[a] for s in scores])) for a in oracle.ASPECTS},
        "fact_accuracy": float(np.mean(checked)) if checked else float("nan"),
        "eos_rate": float(np.mean([bool(ids) and ids[-1] == eos_id for _, ids in responses])),
        "mean_length": float(np.mean([len(ids) for _, ids in responses])),
    }


def main(cfg: EvalConfig) -> dict:
    """Evaluate and print the table; `evaluate` does the work (the demo prints its own summary)."""
    metrics = evaluate(cfg)
    print(format_table(metrics))
    return metrics


def evaluate(cfg: EvalConfig) -> dict:
    from demo import oracle

    run = Path(cfg.run)
    device = policy_from_config(cfg)
    found = discover(run)
    names = [n.strip() for n in cfg.policies.split(",") if n.strip()] or list(found)
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise FileNotFoundError(f"policies {missing or names} not found in {run} (found: {list(found)})")
    held_out, redteam = load_eval_prompts(cfg)
    texts, red_texts = [p["prompt"] for p in held_out], [p["prompt"] for p in redteam]
    print(f"[eval] {', '.join(names)} on {len(texts)} held-out and {len(red_texts)} red-team prompts")

    base = base_dir(run)
    tok = load_tokenizer(base)
    model = attach_adapters(load_causal_lm(base, device, tok),
                            {n: found[n] for n in names if found[n] is not None})
    gen = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
               batch_size=cfg.batch_size, seed=cfg.seed, return_ids=True)
    results, samples = {}, []
    for name in names:
        with use_policy(model, name) as m:
            responses = generate(m, tok, texts, **gen)
            red = generate(m, tok, red_texts, **gen) if red_texts else []
        res = score_responses(texts, responses, tok.eos_token_id)
        res["harmful_rate"] = (float(np.mean([oracle.is_harmful(p, r) for p, (r, _) in zip(red_texts, red)]))
                               if red else float("nan"))
        results[name] = res
        samples += [{"policy": name, "prompt": p, "response": r, "overall": s}
                    for p, (r, _), s in zip(texts, responses, res["overall"])]

    metrics = {"policies": {n: {k: v for k, v in r.items() if k != "overall"} | {
        "gold_overall": float(np.mean(r["overall"]))} for n, r in results.items()},
        "win_rates": {}, "n_prompts": len(texts), "n_redteam": len(red_texts),
        "decoding": "greedy" if cfg.temperature == 0 else f"sampled T={cfg.temperature}"}
    for i, a in enumerate(names):
        for b in names[:i]:
            metrics["win_rates"][f"{a}_vs_{b}"] = win_rate_with_ci(
                results[a]["overall"], results[b]["overall"], n_boot=cfg.n_bootstrap, seed=cfg.seed)
    out = run / "eval"
    write_json(out / "metrics.json", metrics)
    write_jsonl(out / "samples.jsonl", samples)
    return metrics


def format_table(metrics: dict) -> str:
    rows = [f"{'policy':8s} {'gold score':>10s} {'fact acc':>9s} {'harmful':>8s} {'EOS rate':>9s} {'length':>7s}"]
    for n, r in metrics["policies"].items():
        rows.append(f"{n:8s} {r['gold_overall']:10.3f} {r['fact_accuracy']:9.3f} {r['harmful_rate']:8.3f} "
                    f"{r['eos_rate']:9.3f} {r['mean_length']:7.1f}")
    for k, w in metrics["win_rates"].items():
        rows.append(f"win rate {k.replace('_vs_', ' vs ')} (gold, {metrics['decoding']}): {w['win_rate']:.3f} "
                    f"[{w['ci_low']:.3f}, {w['ci_high']:.3f}] over {w['n']} prompts")
    return "\n".join(rows)
