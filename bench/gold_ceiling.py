"""How far can alignment go on a demo run with a perfect labeller? A diagnostic, never a recipe.

The demo's gold oracle replaces the reward model as the labeller, through the stages' own
`reward_fn` hook, on a copy of a finished demo run (the same base, SFT adapter and settings):
- dpo: on-policy DPO (rl/onpolicy.py) on gold's best against gold's worst of `--samples` SFT
  answers per training prompt, without the annotators' pairs;
- ppo, rloo: the run's RL settings with gold's score as the reward.
Gold is standardized like the reward model's score before RL (the mean and standard deviation over
the answers in <run>/reward/train.jsonl), so the KL terms and on-policy gaps mean the same. Then
`rlhf eval` on the copy. If these policies do not beat SFT by gold, better labels (annotators or
reward model) cannot make the stages' policies do so either; what they lack is elsewhere.

    python bench/gold_ceiling.py --run runs/demo --out runs/ceiling [--algos dpo,ppo,rloo] [--seed 0]
        [--samples 8] [--rl_max_steps N]

The oracle trains nothing in the project itself; this script exists to measure a bound.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COPIED = ("data", "base", "sft", "collect", "reward")


def _text(message) -> str:
    """A prompt or response as plain text (TRL's conversational rows hold message lists)."""
    return message if isinstance(message, str) else message[-1]["content"]


def gold_reward(run: Path, max_rows: int = 256):
    """Gold's overall score standardized over the reward model's training answers (the first
    max_rows rows, both answers of each), as rl.pg_inputs.load_reward_fn standardizes the reward
    model's score (there with the sample standard deviation, here the population one: a factor
    of 1.001 at 512 answers)."""
    from demo import oracle

    rows = [json.loads(x) for x in (run / "reward" / "train.jsonl").read_text().splitlines()[:max_rows]]
    ref = np.array([oracle.score(_text(r["prompt"]), _text(r[k]))["overall"]
                    for r in rows for k in ("chosen", "rejected")])
    mean, std = float(ref.mean()), float(ref.std())

    def score(prompts, responses):
        return [(oracle.score(_text(p), r)["overall"] - mean) / std for p, r in zip(prompts, responses)]

    return score, {"mean": round(mean, 4), "std": round(std, 4), "answers": len(ref)}


def _refuse(message: str):
    print(message, file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="a finished demo run (after its RL stages)")
    ap.add_argument("--out", required=True, help="the copy to train in (replaced)")
    ap.add_argument("--algos", default="dpo,ppo,rloo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=8, help="DPO: SFT answers per training prompt")
    ap.add_argument("--max_new_tokens", type=int, default=64, help="DPO: answer length limit (PPO's in the demo)")
    ap.add_argument("--rl_max_steps", type=int, default=0, help="PPO and RLOO iterations (0 = the run's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from core import registry
    from core.config import load_config

    run, out = Path(args.run), Path(args.out)
    algos = [a for a in args.algos.split(",") if a]
    for a in algos:
        if a not in ("dpo", "ppo", "rloo") or not (run / a / "config.yaml").exists():
            _refuse(f"{run / a / 'config.yaml'}: no {a} config (--algos takes dpo, ppo, rloo of a finished run)")
    if out.resolve() == run.resolve() or out.resolve() in run.resolve().parents:
        _refuse(f"{out}: --out would replace the run itself; give a new directory")
    shutil.rmtree(out, ignore_errors=True)
    for d in COPIED:
        shutil.copytree(run / d, out / d)
    reward_fn, norm = gold_reward(out)
    print(f"[ceiling] gold standardized over {norm['answers']} answers: mean {norm['mean']}, std {norm['std']}")
    for a in algos:
        argv = ["--run", str(out), "--model", str(out / "base"), "--out", str(out / a), "--seed", str(args.seed),
                "--threads", str(args.threads)]
        if a == "dpo":
            argv += ["--data", str(out / "collect" / "preferences.jsonl"), "--onpolicy_samples", str(args.samples),
                     "--onpolicy_keep_pairs", "false", "--onpolicy_max_new_tokens", str(args.max_new_tokens),
                     "--onpolicy_batch_size", "128"]
        if a != "dpo" and args.rl_max_steps:
            argv += ["--max_steps", str(args.rl_max_steps)]
        algo = registry.get(a)
        algo.main_fn()(load_config(algo.config_class(), run / a / "config.yaml", argv), reward_fn=reward_fn)
    subprocess.run([sys.executable, "-m", "cli", "eval", "--config", str(run / "eval" / "config.yaml"),
                    "--run", str(out), "--redteam", str(out / "data" / "redteam.jsonl"),
                    "--policies", ",".join(["sft"] + algos), "--threads", str(args.threads)], check=True, cwd=ROOT)
    print(json.dumps({"gold_normalization": norm, "metrics": str(out / "eval" / "metrics.json")}))


if __name__ == "__main__":
    main()
