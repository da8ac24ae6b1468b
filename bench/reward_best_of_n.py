"""How well does a reward model pick answers? The measure RL needs, where held-out pair accuracy
is not enough: on the demo, a reward model with 0.83 held-out accuracy against gold picked SFT
answers that beat SFT's greedy ones 0.545 of the time, where gold's own picks won 0.93.

For each reward model directory, on a finished demo run (gold oracle; after `rlhf eval`):
- ranking: the share of pairs of answers to the same prompt (every policy's answers in
  eval/samples.jsonl) that it orders as gold does, decisive pairs (gold gap > 1) and near ties
  (0.15-1), held-out and red-team prompts apart;
- facts: where SFT's greedy answer states the asked fact wrong, how often its samples state it
  right (what a policy trained from SFT could learn to say by sharpening);
- best-of-n: n SFT samples per held-out eval prompt (T 0.7, the eval's serving temperature),
  the one it scores highest against SFT's greedy and sampled eval answers by gold, raw and
  style-controlled win rates, beside the same for gold's pick (the ceiling).

    python bench/reward_best_of_n.py --run runs/demo --rm runs/demo/reward [--rm OTHER ...] [--n 16] [--average]

--average also measures the sum of the models' standardized scores (each model's scores less its
mean over the eval answers, over their standard deviation), an ensemble of the reward models.
"""
from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def ranking(rows: list[dict], scores: list[float]) -> dict:
    """Share of same-prompt answer pairs ordered as gold orders them, by set and gold gap."""
    per = defaultdict(list)
    for r, s in zip(rows, scores):
        per[r["set"], r["prompt"]].append((s, r["overall"]))
    out = {}
    for name, (lo, hi) in {"decisive": (1.0, 9.0), "near_tie": (0.15, 1.0)}.items():
        for kind in ("heldout", "redteam"):
            ok = n = 0
            for (k, _), answers in per.items():
                for (a, ga), (b, gb) in itertools.combinations(answers if k == kind else [], 2):
                    if lo < abs(ga - gb) <= hi:
                        n, ok = n + 1, ok + int((a - b) * (ga - gb) > 0)
            out[f"{kind}_{name}"] = {"accuracy": round(ok / n, 3) if n else None, "pairs": n}
    return out


def win_rates(prompts, picked, baseline) -> dict:
    """Gold win rate (ties 0.5) of the picked answers over the baseline's, raw and style-controlled."""
    from demo import oracle
    from eval.style_control import style_controlled_win_rate

    outcome = []
    for p, a, b in zip(prompts, picked, baseline):
        x, y = oracle.score(p, a)["overall"], oracle.score(p, b)["overall"]
        outcome.append(1.0 if x > y else 0.0 if x < y else 0.5)
    sc = style_controlled_win_rate(picked, baseline, outcome, n_boot=0)["win_rate"]
    return {"raw": round(float(np.mean(outcome)), 3), "style_controlled": round(sc, 3)}


def fact_headroom(prompts, cands, greedy_right, policies=None) -> dict:
    """What the SFT policy knows: over the held-out prompts with a checkable fact, split by whether
    its greedy answer got it right, the mean share of the n samples that state it right and how
    many prompts have at least one right sample. A policy trained from SFT can only fix, by
    sharpening, facts its samples sometimes get right: `policies` ({name: {prompt: fact right}},
    greedy answers) gives, per policy, the facts it fixed and how many of those SFT's samples never
    stated right."""
    from demo import oracle

    share = {p: float(np.mean([bool(oracle.fact_correct(p, c[i])) for c in cands])) for i, p in enumerate(prompts)}
    out = {}
    for name, want in (("greedy_right", True), ("greedy_wrong", False)):
        shares = [share[p] for p in prompts if greedy_right.get(p) is want]
        out[name] = {"prompts": len(shares), "mean_share_right": round(float(np.mean(shares)), 3) if shares else None,
                     "any_right": sum(s > 0 for s in shares), "majority_right": sum(s > 0.5 for s in shares)}
    for pol, right in (policies or {}).items():
        fixed = [share[p] for p in prompts if greedy_right.get(p) is False and right.get(p) is True]
        out[f"fixed_by_{pol}"] = {"fixed": len(fixed), "never_right_in_samples": sum(s == 0 for s in fixed),
                                  "mean_share_right": round(float(np.mean(fixed)), 3) if fixed else None}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--rm", action="append", required=True, help="reward model directory (repeatable)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--average", action="store_true", help="also the sum of the models' standardized scores")
    args = ap.parse_args()

    from collect.generate import _sample, load_policies
    from demo import oracle
    from reward.score import load_scorer

    run = Path(args.run)
    rows = [json.loads(x) for x in (run / "eval" / "samples.jsonl").read_text().splitlines()]
    sft = {dec: {r["prompt"]: r["response"] for r in rows if r["set"] == "heldout" and r["policy"] == "sft"
                 and r["sample"] == 0 and r["decoding"] == dec} for dec in ("greedy", "sampled")}
    prompts = list(sft["greedy"])
    tok, model = load_policies(run, ["sft"], threads=args.threads)
    cands = [_sample(model, tok, "sft", prompts, 1000 + k, dict(max_new_tokens=96, temperature=0.7, top_p=1.0))
             for k in range(args.n)]
    gold = np.array([[oracle.score(p, c[i])["overall"] for i, p in enumerate(prompts)] for c in cands])

    def best_of_n(scores: np.ndarray) -> dict:
        pick = scores.argmax(0)
        picked = [cands[k][i] for i, k in enumerate(pick)]
        return {dec: win_rates(prompts, picked, [sft[dec][p] for p in prompts]) for dec in ("greedy", "sampled")}

    greedy = defaultdict(dict)  # policy -> prompt -> its greedy answer's fact is right
    for r in rows:
        if r["set"] == "heldout" and r["sample"] == 0 and r["decoding"] == "greedy":
            greedy[r["policy"]][r["prompt"]] = r["fact_correct"]
    right = greedy.pop("sft")
    report = {"n": args.n, "prompts": len(prompts), "gold_pick": best_of_n(gold),
              "facts": fact_headroom(prompts, cands, right, greedy)}
    print(f"gold's pick of {args.n}: {report['gold_pick']}")
    for name, f in report["facts"].items():
        if name.startswith("fixed_by_"):
            print(f"{name[9:]} fixed {f['fixed']} of SFT's wrong facts (greedy): {f['never_right_in_samples']} of them "
                  f"never right in SFT's {args.n} samples; {f['mean_share_right']} of the samples right on average")
            continue
        print(f"facts where SFT's greedy answer is {name.split('_')[1]} ({f['prompts']} prompts): "
              f"{f['mean_share_right']} of the {args.n} samples right on average; at least one right on "
              f"{f['any_right']}, most on {f['majority_right']}")
    summed = None
    for rm in args.rm:
        scorer = load_scorer(rm, device="cpu")
        scores = np.array([scorer.score(prompts, c) for c in cands])
        answers = np.array([s for i in range(0, len(rows), 128) for s in
                            scorer.score([r["prompt"] for r in rows[i:i + 128]],
                                         [r["response"] for r in rows[i:i + 128]])])
        report[rm] = {"best_of_n": best_of_n(scores), "ranking": ranking(rows, list(answers))}
        print(f"{rm}: best of {args.n} {report[rm]['best_of_n']}; ranking {report[rm]['ranking']}")
        z = ((scores - answers.mean()) / answers.std(), (answers - answers.mean()) / answers.std())
        summed = z if summed is None else (summed[0] + z[0], summed[1] + z[1])
    if args.average and len(args.rm) > 1:
        report["average"] = {"best_of_n": best_of_n(summed[0]), "ranking": ranking(rows, list(summed[1]))}
        print(f"average of the {len(args.rm)}: best of {args.n} {report['average']['best_of_n']}; "
              f"ranking {report['average']['ranking']}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
