"""The red-team audit: every policy's greedy answer and k sampled answers per red-team prompt.

Greedy decoding shows one answer per prompt, and hides a harmful minority a sampled deployment
would serve. So each policy also answers every red-team prompt k times (EvalConfig.redteam_samples)
at the serving temperature, in one batched generate call over the prompts repeated k times.
Verdicts per answer: the gold judge's harmful help and refusal (when there is one) and the
rule-based detector (eval/safety.py); flagged answers, greedy or sampled, go to the review queue.

Rates over the k samples get cluster-bootstrap intervals over prompts (eval/metrics.py): the
k answers to one prompt are not independent, the prompts are the sample. Each other policy's
harmful and refusal rates minus SFT's are paired on the same prompts (and their k samples).
With the reward model's harmfulness head, its AUC for harmful help vs refusals over the
audited answers (all policies, greedy and sampled) says whether a safety gate on it
(reward_type=gated) would tell them apart.

An answer that neither refuses nor helps (an evasive or off-topic one, "Our coffee mug is $14")
is its own kind: a policy can lower its harmful rate by drifting there instead of refusing, so
its rate is reported beside the other two. `rm_orders` says how the reward model ranks the
kinds against each other on the same prompt; one that scores evasive answers above refusals
teaches RL to stop refusing.
"""
from __future__ import annotations

import numpy as np

from core.records import ASPECTS
from eval import safety
from eval.metrics import KINDS, kind, mean_by_verdict, rate_difference_with_ci, rate_with_ci
from reward.harm import auc

HARM = ASPECTS.index("harmfulness")
VERDICTS = ("harmful", "refusal")


def repeat(prompts: list, k: int) -> list:
    """Each prompt k times in a row: [p0] * k + [p1] * k + ..., so sample j of prompt i is row i*k + j."""
    return [p for p in prompts for _ in range(k)]


def as_matrix(values: list, k: int) -> np.ndarray:
    """The flat per-answer list of k samples per prompt → (N, k)."""
    return np.asarray(values, dtype=float).reshape(-1, k)


def _flag(rows: dict, rules) -> list[list[str]]:
    rows["flags"] = [safety.detect(r, rules) for r in rows["response"]]
    return rows["flags"]


def _rates(rows: dict, k: int, use_gold: bool, n_boot: int, seed: int, suffix: str) -> dict:
    """{harmful,refusal,evasive,detector_flag}_rate{suffix} and their _ci for one policy's answers
    (the gold judge's three as None without one)."""
    out = {}
    verdicts = {"detector_flag": [bool(c) for c in rows["flags"]]}
    if use_gold:
        verdicts.update({v: rows[v] for v in VERDICTS})
        verdicts["evasive"] = [kind(h, r) == "evasive" for h, r in zip(rows["harmful"], rows["refusal"])]
    for name in ("harmful", "refusal", "evasive", "detector_flag"):
        flags = verdicts.get(name)
        if not flags:
            out[f"{name}_rate{suffix}"] = out[f"{name}_rate{suffix}_ci"] = None
            continue
        r = rate_with_ci(as_matrix(flags, k) if k > 1 else flags, n_boot, seed)
        out[f"{name}_rate{suffix}"] = r["rate"]
        out[f"{name}_rate{suffix}_ci"] = [r["ci_low"], r["ci_high"]]
    return out


def audit(cfg, rules, red_prompts: list, greedy: dict, sampled: dict, k: int, use_gold: bool) -> tuple[dict, dict]:
    """Per-policy red-team rates and the audit summary; queues flagged answers for review.
    greedy / sampled: {policy: rows} from eval.stage's sampling (sampled: k answers per prompt,
    prompt-major, or {} when the audit samples none)."""
    per_policy, flagged = {}, []
    for name, rows in greedy.items():
        cats = _flag(rows, rules)
        per_policy[name] = _rates(rows, 1, use_gold, cfg.n_bootstrap, cfg.seed, "")
        flagged += [{"policy": name, "prompt": p, "response": r, "categories": c}
                    for p, r, c in zip(red_prompts, rows["response"], cats) if c]
        if name in sampled:
            cats = _flag(sampled[name], rules)
            per_policy[name] |= _rates(sampled[name], k, use_gold, cfg.n_bootstrap, cfg.seed, "_sampled")
            flagged += [{"policy": name, "prompt": p, "response": r, "categories": c}
                        for p, r, c in zip(repeat(red_prompts, k), sampled[name]["response"], cats) if c]
        else:
            per_policy[name] |= {f"{v}_rate_sampled{ci}": None for v in (*VERDICTS, "evasive", "detector_flag")
                                 for ci in ("", "_ci")}
        per_policy[name]["redteam_samples"] = k if name in sampled else 0
    by_cat: dict[str, int] = {}
    for f in flagged:
        for c in f["categories"]:
            by_cat[c] = by_cat.get(c, 0) + 1
    queued = safety.queue_flagged(cfg.run, flagged, db=cfg.db or None) if cfg.flag_to_review and flagged else 0
    summary = {"flagged": len(flagged), "queued": queued, "by_category": by_cat, "redteam_samples": k}
    pooled = [(s, h, r) for rows in greedy.values() if use_gold
              for s, h, r in zip(rows["rm_score"], rows["harmful"], rows["refusal"])]
    if any(s is not None for s, _, _ in pooled):  # how the reward model ranks the audited answers
        summary["rm_by_verdict"] = mean_by_verdict(*zip(*pooled))
    if use_gold and red_prompts:
        n = len(red_prompts)
        orders = rm_orders([(range(n), rows) for rows in greedy.values()]
                           + [([i // k for i in range(n * k)], rows) for rows in sampled.values()])
        if orders:
            summary["rm_orders"] = orders
        head = harm_head_auc([*greedy.values(), *sampled.values()])
        if head is not None:
            summary["harm_head"] = head
        if "sft" in greedy:
            for v in VERDICTS:
                summary[f"{v}_vs_sft"] = vs_sft(greedy, sampled, v, k, cfg.n_bootstrap, cfg.seed)
    return per_policy, summary


def rm_orders(row_sets: list[tuple]) -> list[dict]:
    """How the reward model orders two kinds of answer to the same red-team prompt: for each pair
    of KINDS (better, worse), the share of same-prompt pairs of answers, over all the row sets
    (policies, greedy and sampled), in which the better kind scores higher (ties count half).
    row_sets: (the prompt index of each row, rows with rm_score, harmful, refusal). Pairs of
    kinds no prompt has both of are left out; [] without reward-model scores."""
    by_prompt: dict[int, dict[str, list[float]]] = {}
    for prompt_of, rows in row_sets:
        for i, s, h, r in zip(prompt_of, rows.get("rm_score") or [], rows["harmful"], rows["refusal"]):
            if s is not None:
                by_prompt.setdefault(i, {}).setdefault(kind(h, r), []).append(float(s))
    out = []
    for a, better in enumerate(KINDS):
        for worse in KINDS[a + 1:]:
            wins = pairs = 0.0
            for scores in by_prompt.values():
                if better in scores and worse in scores:
                    sa, sb = np.array(scores[better])[:, None], np.array(scores[worse])[None, :]
                    wins += float((sa > sb).sum() + 0.5 * (sa == sb).sum())
                    pairs += sa.size * sb.size
            if pairs:
                out.append({"better": better, "worse": worse, "share": wins / pairs, "pairs": int(pairs)})
    return out


def harm_head_auc(row_sets: list[dict]) -> dict | None:
    """AUC of the reward model's predicted harmfulness for the gold judge's harmful-help answers
    against its refusals (answers that are neither are left out), pooled over row sets."""
    scores, labels = [], []
    for rows in row_sets:
        for s, h, r in zip(rows.get("harm_score") or [], rows["harmful"], rows["refusal"]):
            if s is not None and (h or r):
                scores.append(s)
                labels.append(bool(h))
    value = auc(scores, labels) if scores else None
    return None if value is None else {"auc": value, "n_harmful": sum(labels), "n_refusal": len(labels) - sum(labels)}


def vs_sft(greedy: dict, sampled: dict, verdict: str, k: int, n_boot: int, seed: int) -> list[dict]:
    """Each other policy's rate of `verdict` minus SFT's on the same red-team prompts, per decoding,
    with a paired bootstrap interval over prompts (sampled: each prompt keeps its k samples)."""
    out = []
    for decoding, rows, kk in (("greedy", greedy, 1), ("sampled", sampled, k)):
        for name in rows:
            if name != "sft" and "sft" in rows:
                a, b = rows[name][verdict], rows["sft"][verdict]
                if kk > 1:
                    a, b = as_matrix(a, kk), as_matrix(b, kk)
                out.append({"policy": name, "decoding": decoding,
                            **rate_difference_with_ci(a, b, n_boot, seed)})
    return out


def _ci(p: dict, key: str) -> str:
    rate, ci = p.get(key), p.get(key + "_ci")
    if rate is None:
        return "n/a"
    return f"{rate:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{rate:.3f}"


def _kinds(p: dict, suffix: str) -> str:
    """The gold judge's rates of one decoding, or without a judge the detector's flag rate."""
    if p.get(f"harmful_rate{suffix}") is None:
        return f"detector flags {_ci(p, f'detector_flag_rate{suffix}')}"
    return ", ".join(f"{v} {_ci(p, f'{v}_rate{suffix}')}" for v in ("harmful", "refusal", "evasive")
                     if p.get(f"{v}_rate{suffix}") is not None)


def table_lines(metrics: dict) -> list[str]:
    """The printed table's red-team lines: per policy the rates with 95% intervals over prompts,
    then each policy minus SFT (paired)."""
    s, n = metrics.get("safety") or {}, metrics.get("n_redteam") or 0
    if not n:
        return []
    k = s.get("redteam_samples") or 0
    rows = [f"red-team audit, {n} prompts: greedy" + (f" and {k} sampled answers per prompt" if k else "")
            + " (95% intervals resample prompts)"]
    for name, p in metrics["policies"].items():
        line = f"  {name:7s} greedy {_kinds(p, '')}"
        if p.get("redteam_samples"):
            line += f"; sampled {_kinds(p, '_sampled')}"
        rows.append(line)
    for v in VERDICTS:
        for d in s.get(f"{v}_vs_sft", []):
            rows.append(f"{v} rate {d['policy']} - sft ({d['decoding']}): {d['rate_a']:.3f} - {d['rate_b']:.3f} = "
                        f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] over {d['n']} red-team "
                        f"prompts" + (f" x {d['k']} samples" if d.get("k", 1) > 1 else ""))
    if s.get("rm_orders"):
        rows.append("reward model on same-prompt red-team answers: " + ", ".join(
            f"{o['better']} above {o['worse']} {o['share']:.3f} of {o['pairs']} pairs" for o in s["rm_orders"]))
    head = s.get("harm_head")
    if head:
        rows.append(f"reward model's harmfulness head: AUC {head['auc']:.3f} for harmful help ({head['n_harmful']}) "
                    f"vs refusals ({head['n_refusal']}) among the audited answers")
    return rows
