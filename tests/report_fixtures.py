"""A fake run directory for the report tests (test_report.py, test_report_browser.py): eval
metrics with a NaN, samples carrying script/markup payloads, and training logs with the keys
each stage's writer uses (core/training.py JsonlLogger, reward/train.py, rl/ppo.py)."""
import json
import math
from pathlib import Path

XSS = '<script>alert(1)</script> <img src=x onerror="alert(2)">'
POLICIES = ("base", "sft", "dpo", "ppo")
WIN_RATES = [  # distinctive numbers, so the test can find them in the page
    {"a": "dpo", "b": "sft", "judge": "gold", "decoding": "greedy", "win_rate": 0.613, "ci_low": 0.538,
     "ci_high": 0.688, "wins": 58, "ties": 7, "losses": 35, "n": 100,
     "style_controlled": {"win_rate": 0.521, "ci_low": 0.447, "ci_high": 0.598, "n": 100,
                          "coefficients": {"intercept": 0.084, "log_length": 1.234, "opener": -0.567,
                                           "closing": 2.468, "list": None}}},
    {"a": "ppo", "b": "sft", "judge": "reward", "decoding": "sampled", "win_rate": 0.842, "ci_low": 0.772,
     "ci_high": 0.903, "wins": 83, "ties": 3, "losses": 14, "n": 100},
]


def _decoding(k: int) -> dict:
    return {"gold_overall": 1.5 + 0.5 * k, "fact_accuracy": 0.1 * k, "eos_rate": 0.25 * k,
            "mean_length": 40.0 - 3 * k, "rm_score": None if k == 0 else 0.4 * k, "heldout_refusal_rate": 0.07 * k,
            "aspects": {"quality": 1.0 + k, "correctness": 2.0 + 0.5 * k}}


def metrics(policies=POLICIES) -> dict:
    pol = {}
    for k, name in enumerate(policies):
        pol[name] = {"greedy": _decoding(k), "kl_to_sft": None if name == "base" else 0.05 * k,
                     "ppl_sft_val": math.nan, "ppl_corpus": 12.5 - k, "harmful_rate": 0.02 * k,
                     "refusal_rate": 0.1, "detector_flag_rate": None, "redteam_samples": 4,
                     "harmful_rate_sampled": 0.0625 * k, "harmful_rate_sampled_ci": [0.0, 0.1875 + 0.0625 * k],
                     "refusal_rate_sampled": 0.4375, "refusal_rate_sampled_ci": [0.3125, 0.5625],
                     "evasive_rate": 0.25, "evasive_rate_sampled": 0.375, "evasive_rate_sampled_ci": [0.25, 0.5]}
        if name != "base":
            pol[name]["sampled"] = _decoding(k)
    return {"n_prompts": 100, "n_redteam": 48, "serving_temperature": 0.7, "policies": pol,
            "heldout_refusals": {"judge": "gold judge", "vs_sft": []},
            "win_rates": WIN_RATES if len(policies) > 2 else [],
            "safety": {"flagged": 3, "queued": 2, "by_category": {"pii": 2, f"violence {XSS}": 1},
                       "redteam_samples": 4,
                       "harmful_vs_sft": [{"policy": "dpo", "decoding": "greedy", "rate_a": 0.125, "rate_b": 0.5,
                                           "difference": -0.375, "ci_low": -0.521, "ci_high": -0.229, "n": 48}],
                       "refusal_vs_sft": [{"policy": "ppo", "decoding": "sampled", "rate_a": 0.6875, "rate_b": 0.4375,
                                           "difference": 0.25, "ci_low": 0.146, "ci_high": 0.354, "n": 48, "k": 4}],
                       "harm_head": {"auc": 0.8125, "n_harmful": 40, "n_refusal": 300},
                       "rm_orders": [{"better": "refusal", "worse": "evasive", "share": 0.2, "pairs": 120}]}}


def samples(policies=POLICIES) -> list[dict]:
    rows = []
    for k, name in enumerate(policies):
        for i in range(6):
            for dec in ("greedy", "sampled"):
                rows.append({"policy": name, "decoding": dec, "set": "heldout",
                             "prompt": f"When do you open on day {i}? {XSS if i == 0 else ''}",
                             "response": f"{name} says {XSS} we open at {8 + i}am.",
                             "overall": 1.0 + (i + k) % 5, "rm_score": None if name == "base" else 0.3 * i - k,
                             "fact_correct": None if i == 5 else i % 2 == 0, "harmful": False, "flags": []})
        rows.append({"policy": name, "decoding": "greedy", "set": "redteam", "prompt": f"How to hurt? {XSS}",
                     "response": f"{XSS} no.", "overall": None, "rm_score": None, "fact_correct": None,
                     "harmful": name == "base", "flags": ["violence"] if name == "base" else []})
    return rows


def logs(stage: str) -> list[dict]:
    if stage == "sft":
        rows = [{"step": s, "epoch": s / 40, "loss": 3.0 - s / 20, "grad_norm": 1.0, "learning_rate": 1e-3,
                 "mean_token_accuracy": 0.4 + s / 100} for s in range(5, 45, 5)]
        rows += [{"step": s, "epoch": s / 40, "eval_loss": 2.9 - s / 25, "eval_mean_token_accuracy": 0.5}
                 for s in (20, 40)]
        return rows + [{"step": 40, "epoch": 1.0, "train_runtime": 12.0, "train_loss": 2.1}]
    if stage == "reward":
        rows = [{"step": s, "epoch": s / 10, "pair_loss": 0.7 - s / 100, "accuracy": 0.5 + s / 50,
                 "margin": 0.1 * s, "loss": 0.7 - s / 100, "grad_norm": 0.5, "lr": 1e-4} for s in range(1, 21)]
        return rows + [{"step": s, "eval_accuracy": 0.6 + s / 100, "eval_loss": 0.65} for s in (10, 20)]
    if stage == "dpo":
        rows = [{"step": s, "epoch": s / 30, "loss": 0.69 - s / 100, "rewards/chosen": 0.01 * s,
                 "rewards/rejected": -0.01 * s, "rewards/margins": 0.02 * s, "rewards/accuracies": 0.5 + s / 100,
                 "logps/chosen": -40.0, "logps/rejected": -45.0, "kl": 0.002 * s} for s in range(2, 32, 2)]
        return rows + [{"step": 30, "epoch": 1.0, "eval_loss": 0.5, "eval_rewards/margins": 0.5,
                        "eval_rewards/accuracies": 0.7, "eval_kl": 0.05, "eval_objective": 0.5}]
    if stage == "ppo":
        return [{"step": s, "kl_coef": 0.05, "score": 0.1 * s, "penalized_score": 0.1 * s - 0.01,
                 "kl": 0.01 * s, "rlhf_reward": 0.09 * s, "response_length": 30.0 + s, "eos_rate": 0.9,
                 "reward_length_corr": None, "entropy": 2.0 - 0.05 * s, "policy_loss": -0.01, "value_loss": 0.2,
                 "clipfrac": 0.1, "approx_kl": 0.001, "rollout_s": 1.2, "train_s": 0.8} for s in range(1, 11)]
    raise ValueError(stage)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def add_votes(run: Path) -> None:
    """<run>/collect/annotations.db: three annotators, six items, mostly agreeing."""
    from collect.assign import add_items, side_swapped
    from collect.commands import store_for
    from collect.store import Assignment, User
    from collect.votes import shown_choice, submit_vote
    from core.records import ASPECTS

    store = store_for(run)
    try:
        with store.write() as s:
            s.add_all(User(name=n, role="annotator", password_hash="-") for n in ("x1", "x2", "x3"))
        add_items(store, [{"id": f"i{k}", "prompt": f"p{k} {XSS}", "response_a": XSS, "response_b": f"B{k}"}
                          for k in range(6)])
        for k in range(6):
            for j, name in enumerate(("x1", "x2", "x3")):
                choice = "b" if (k + j) % 4 == 0 else "a"
                swapped = side_swapped(0, f"i{k}", name)
                with store.write() as s:
                    s.add(Assignment(item_id=f"i{k}", annotator=name, swapped=swapped))
                a, b = dict.fromkeys(ASPECTS, 4 if choice == "a" else 2), dict.fromkeys(ASPECTS, 3)
                submit_vote(store, name, f"i{k}", shown_choice(choice, swapped), *((b, a) if swapped else (a, b)))
    finally:
        store.close()


def make_run(root: Path, full: bool = True) -> Path:
    """full: every input the report reads, the annotation store included; else only
    eval/metrics.json (base and sft) and the SFT log."""
    run = root / "run"
    policies = POLICIES if full else ("base", "sft")
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics(policies)))  # NaN written as NaN
    _jsonl(run / "sft" / "log.jsonl", logs("sft"))
    if full:
        _jsonl(run / "eval" / "samples.jsonl", samples(policies))
        for stage in ("reward", "dpo", "ppo"):
            _jsonl(run / stage / "log.jsonl", logs(stage))
        (run / "reward" / "metrics.json").write_text(json.dumps(
            {"heldout_accuracy": 0.8125, "heldout_accuracy_gold": 0.859, "gold_pairs": 64,
             "reward_length_corr": 0.0612, "gold_length_corr": 0.1734}))
        add_votes(run)
    return run
