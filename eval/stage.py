"""`rlhf eval`: compare the run's policies (base, sft and each RL algorithm's) on held-out and
red-team prompts.

Every policy is an adapter on one copy of the base weights. Each answers the held-out prompts
twice, greedily and sampled at the serving temperature, and the red-team prompts greedily and
`redteam_samples` times sampled (a harmful minority greedy decoding would hide; eval/redteam.py). Judges: a gold judge (core.judge.Judge, when the caller passes one: the demo passes its
oracle), the run's reward model (when one exists), and people (votes on blind A/B items sent
with `--to-collect`). Reported per policy: gold score, fact accuracy, RM score, EOS rate, length,
KL to the SFT policy, perplexity on the SFT validation set and the base corpus, and the safety
audit (gold judge and rule-based detector; flagged outputs go to the collect/ review queue).
Win rates (ties count half) with bootstrap intervals over prompts compare each RL policy with
SFT and the ones before it (`comparisons`), and SFT with the base; each with its style-controlled
rate beside it (eval/style_control.py: the judge's preference for length, openers, closings and
lists fitted out). In a later round of the loop, eval/rounds.py compares it with the round before.

Writes <run>/eval/metrics.json, samples.jsonl and report.html.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from core import registry
from core.config import REFUSAL_LIKE, EvalConfig, UserError, tokenizer_fixes
from core.device import policy_from_config
from core.forked import balance, fork_map, resolve_workers
from core.generation import generate
from core.io import read_jsonl, write_jsonl
from core.judge import Judge
from core.models import load_causal_lm, load_tokenizer
from core.policies import attach_adapters, base_dir, discover, merged_policy, tokenizer_dir, use_policy
from core.records import prompt_text, read_prompts
from core.runcard import data_info, write_run_card
from core.training import check_launch
from eval import gold, likelihood, redteam, rounds, safety
from eval.metrics import outcomes, rate_difference_with_ci, win_rate_with_ci
from eval.style_control import style_controlled_win_rate
from eval.table import format_table


def comparisons() -> list[tuple[str, str]]:
    """(a, b) pairs whose win rates are reported: each RL algorithm vs SFT, SFT vs the base, and
    each algorithm vs every one registered before it (core/registry.py)."""
    algs = registry.names()
    return [(a, "sft") for a in algs] + [("sft", "base")] + [(b, a) for a, b in itertools.combinations(algs, 2)]


def prompt_paths(cfg: EvalConfig) -> tuple[Path, Path]:
    """The held-out prompts file and the red-team prompts file (which may be absent)."""
    run = Path(cfg.run)
    return (Path(cfg.prompts) if cfg.prompts else run / "data" / "prompts.jsonl",
            Path(cfg.redteam) if cfg.redteam else run / "data" / "redteam.jsonl")


def load_eval_prompts(cfg: EvalConfig) -> tuple[list[list[dict]], list[list[dict]]]:
    """Held-out and red-team prompts, each the conversation's messages (system prompt and
    earlier turns included: generation renders them with the chat template)."""
    prompts_path, red_path = prompt_paths(cfg)
    prompts = read_prompts(prompts_path)
    held_out = [p for p in prompts if "eval" in p["tags"]] or prompts
    redteam = read_prompts(red_path) if red_path.exists() else []
    if cfg.max_prompts:
        held_out, redteam = held_out[: cfg.max_prompts], redteam[: max(1, cfg.max_prompts // 2)]
    return [p["prompt"] for p in held_out], [p["prompt"] for p in redteam]


def _policies(cfg: EvalConfig) -> dict[str, Path | None]:
    run = Path(cfg.run)
    found = discover(run)
    names = [n.strip() for n in cfg.policies.split(",") if n.strip()] or list(found)
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise UserError(f"policies {missing or names} not found in {run} (found: {list(found) or 'none'})")
    return {n: found[n] for n in names}


def _scorer(cfg: EvalConfig):
    from reward.score import load_scorer  # the RM is a judge here, as rl/ uses it as a reward

    path = Path(cfg.reward) if cfg.reward else Path(cfg.run) / "reward"
    if not cfg.reward and not path.exists():
        return None
    return load_scorer(path, device=policy_from_config(cfg).device)


def _sample_set(model, tok, name, prompts, gen, temperature, scorer, judge, seed) -> dict:
    """Responses of one policy and every judge's verdict on them, per row (gold: when `judge`)."""
    with merged_policy(model, name) as m:
        out = generate(m, tok, prompts, temperature=temperature, seed=seed, return_ids=True, **gen)
    texts, ids = [t for t, _ in out], [i for _, i in out]
    rows = {"response": texts, "ids": ids,
            "eos": [bool(i) and i[-1] == tok.eos_token_id for i in ids], "length": [len(i) for i in ids],
            "rm_score": [None] * len(texts), "harm_score": [None] * len(texts)}
    if scorer is not None and prompts:
        scored = scorer.details(prompts, texts)
        rows["rm_score"] = scored["reward"].tolist()
        if scored["aspects"] is not None:  # the harmfulness head, for the red-team audit
            rows["harm_score"] = scored["aspects"][:, redteam.HARM].tolist()
    if judge is not None:
        rows.update(gold.verdicts(judge, prompts, texts))
    return rows


def generate_all(model, tok, names, prompts, red, cfg: EvalConfig, gen: dict, k: int, scorer, judge):
    """Every policy's answers and verdicts: held-out greedy and sampled, red-team greedy and k sampled
    per prompt; (results, red_rows, red_sampled), each keyed by policy, with a progress bar in answers.
    With cfg.workers > 1 on the CPU, forked single-thread processes share the (policy, set) pieces
    (core/forked.py): every piece has its own seed, so the answers are the same either way."""
    from tqdm.auto import tqdm

    sets = {"greedy": (prompts, 0.0), "red": (red, 0.0)}
    if cfg.serving_temperature > 0:
        sets["sampled"] = (prompts, cfg.serving_temperature)
        if red and k:
            sets["red_sampled"] = (redteam.repeat(red, k), cfg.serving_temperature)
    units = [(name, key) for name in names for key in sets]
    chunks = balance(units, resolve_workers(cfg.workers, cfg.threads, model), lambda u: len(sets[u[1]][0]))

    def answer(unit):
        ps, temperature = sets[unit[1]]
        return _sample_set(model, tok, unit[0], ps, gen, temperature, scorer, judge, cfg.seed)

    done: dict[tuple[str, str], dict] = {}
    with tqdm(total=sum(len(sets[key][0]) for _, key in units), unit="answer", desc="eval",
              dynamic_ncols=True) as bar:
        for (name, key), rows in fork_map(answer, chunks):
            done[name, key] = rows
            bar.set_postfix_str(f"{name} {key.replace('_', ' ')}")
            bar.update(len(sets[key][0]))
    results = {name: {d: done[name, d] for d in ("greedy", "sampled") if (name, d) in done} for name in names}
    red_rows = {name: done[name, "red"] for name in names}
    # greedy decoding hides a minority of harmful answers: k samples per prompt (eval/redteam.py)
    red_sampled = {name: done[name, "red_sampled"] for name in names if (name, "red_sampled") in done}
    return results, red_rows, red_sampled


def refusals(rows: dict, use_gold: bool) -> list[bool]:
    """Which answers refuse: the gold judge's verdict, else the stock refusal phrases
    (core.config.REFUSAL_LIKE). On held-out questions a refusal is a cost: a reward model that
    scores refusing a plain question above answering it teaches RL to refuse (over-refusal, as
    XSTest measures it: Röttger et al., 2024)."""
    if use_gold:
        return [bool(r) for r in rows["refusal"]]
    found = re.compile(REFUSAL_LIKE, re.IGNORECASE)
    return [bool(found.search(r)) for r in rows["response"]]


def _summary(rows: dict, use_gold: bool, refused: list[bool]) -> dict:
    rm = [s for s in rows["rm_score"] if s is not None]
    out = {"eos_rate": float(np.mean(rows["eos"])) if rows["eos"] else float("nan"),
           "mean_length": float(np.mean(rows["length"])) if rows["length"] else float("nan"),
           "rm_score": float(np.mean(rm)) if rm else None,
           "heldout_refusal_rate": float(np.mean(refused)) if refused else float("nan")}
    if use_gold:
        out.update(gold.summarize(rows))
        if rm:
            out["rm_by_outcome"] = gold.rm_by_outcome(rows)
    return out


def _refusals_vs_sft(refused: dict, use_gold: bool, n_boot: int, seed: int) -> dict:
    """Each policy's refusal rate on the held-out prompts minus SFT's, paired over prompts, with a
    bootstrap interval (refused: policy -> decoding -> which answers refuse); `judge`: what
    decided a refusal."""
    out = {"judge": "gold judge" if use_gold else "refusal phrases", "vs_sft": []}
    for name in refused:
        for decoding in ("greedy", "sampled"):
            a, b = refused[name].get(decoding), refused.get("sft", {}).get(decoding)
            if name != "sft" and a is not None and b is not None:
                out["vs_sft"].append({"policy": name, "decoding": decoding,
                                      **rate_difference_with_ci(a, b, n_boot, seed)})
    return out


def _win_rates(results: dict, n_boot: int, seed: int) -> list[dict]:
    out = []
    for a, b in comparisons():
        if a not in results or b not in results:
            continue
        for decoding in ("greedy", "sampled"):
            ra, rb = results[a].get(decoding), results[b].get(decoding)
            if ra is None or rb is None:
                continue
            for judge, key in (("gold", "overall"), ("reward", "rm_score")):
                if key not in ra or ra[key][:1] == [None]:
                    continue
                w = win_rate_with_ci(ra[key], rb[key], n_boot=n_boot, seed=seed)
                style = style_controlled_win_rate(ra["response"], rb["response"], outcomes(ra[key], rb[key]),
                                                  n_boot=n_boot, seed=seed)
                out.append({"a": a, "b": b, "judge": judge, "decoding": decoding, **w, "style_controlled": style})
    return out


def _perplexities(cfg: EvalConfig, model, tok, names) -> dict[str, dict]:
    run, n = Path(cfg.run), cfg.ppl_max_rows or None
    val = read_jsonl(run / "sft" / "val.jsonl")[:n] if (run / "sft" / "val.jsonl").exists() else []
    corpus_path = run / "data" / "corpus.txt"
    docs = []
    if corpus_path.exists():
        docs = [d.strip() for d in corpus_path.read_text(encoding="utf-8").split("<|endoftext|>") if d.strip()]
        docs = docs[-n:] if n else docs
    out = {}
    for name in names:
        with use_policy(model, name) as m:
            out[name] = {"ppl_sft_val": likelihood.completion_perplexity(m, tok, val) if val else None,
                         "ppl_corpus": likelihood.text_perplexity(m, tok, docs) if docs else None}
    return out


def evaluate(cfg: EvalConfig, judge: Judge | None = None) -> dict:
    run = Path(cfg.run)
    if cfg.workers < 0:
        raise UserError(f"--workers must be >= 0 (0 = one per thread), got {cfg.workers}")
    rules = safety.load_rules(cfg.safety_rules or None)  # a bad rules file stops the run before sampling
    names = _policies(cfg)
    prompts, red = load_eval_prompts(cfg)
    judge_given = judge is not None
    use_gold = judge_given and gold.applies(judge, prompts)
    judge = judge if use_gold else None
    if cfg.redteam_samples < 0:
        raise UserError(f"--redteam_samples must be >= 0 (0 = greedy red-team answers only), got {cfg.redteam_samples}")
    scorer = _scorer(cfg)
    print(f"[eval] {', '.join(names)} on {len(prompts)} held-out and {len(red)} red-team prompts; judges: "
          + ", ".join(j for j, on in (("gold judge", use_gold), ("reward model", scorer)) if on))
    base = base_dir(run)
    tok = load_tokenizer(tokenizer_dir(run), **tokenizer_fixes(cfg))
    model = attach_adapters(load_causal_lm(base, policy_from_config(cfg), tok),
                            {n: p for n, p in names.items() if p is not None})
    gen = dict(max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p, batch_size=cfg.batch_size)
    k = cfg.redteam_samples if cfg.serving_temperature > 0 else 0
    results, red_rows, red_sampled = generate_all(model, tok, names, prompts, red, cfg, gen, k, scorer, judge)
    safety_rates, safety_summary = redteam.audit(cfg, rules, red, red_rows, red_sampled, k, use_gold)
    ppl = _perplexities(cfg, model, tok, names)

    refused = {name: {d: refusals(rows, use_gold) for d, rows in res.items()} for name, res in results.items()}
    policies = {}
    for name, res in results.items():
        entry = {d: _summary(rows, use_gold, refused[name][d]) for d, rows in res.items()}
        entry["kl_to_sft"] = None
        if "sft" in names and name != "sft" and "sampled" in res:
            entry["kl_to_sft"] = likelihood.policy_kl(model, tok, name, "sft", prompts, res["sampled"]["ids"],
                                                      cfg.serving_temperature)
        policies[name] = entry | ppl[name] | safety_rates[name]
    human = _human(cfg)
    metrics = {"n_prompts": len(prompts), "n_redteam": len(red), "serving_temperature": cfg.serving_temperature,
               "judges": {"gold": use_gold, "reward": scorer is not None, "human": bool(human),
                          "no_gold_because": None if use_gold else no_gold_reason(judge_given)},
               "policies": policies, "win_rates": _win_rates(results, cfg.n_bootstrap, cfg.seed) + human,
               "safety": safety_summary,
               "heldout_refusals": _refusals_vs_sft(refused, use_gold, cfg.n_bootstrap, cfg.seed),
               } | (gold.decomposition_metrics(results) if use_gold else {})
    out = run / "eval"
    rows = _sample_rows(prompts, red, results, red_rows, red_sampled, k)
    write_jsonl(out / "samples.jsonl", rows)
    compared = rounds.compare(run, rows, prompts, policies, scorer, judge, cfg.n_bootstrap, cfg.seed,
                              policy_from_config(cfg).device)
    if compared:  # a later round of the loop (core/rounds.py): against the round before
        metrics["rounds"] = compared
    write_card(cfg, out, base, names, scorer, metrics)
    return metrics


def write_card(cfg: EvalConfig, out: Path, base: Path, names: dict[str, Path | None], scorer, metrics: dict) -> None:
    """metrics.json, config.yaml and a card (README.md) for the eval directory: the prompt files
    as its datasets, the compared adapters and the judging reward model as its input models."""
    prompts_path, red_path = prompt_paths(cfg)
    data = {"held-out prompts": data_info(prompts_path, metrics["n_prompts"])}
    if metrics["n_redteam"]:
        data["red-team prompts"] = data_info(red_path, metrics["n_redteam"])
    data.update({f"policy {n}": data_info(p, kind="model") for n, p in names.items() if p is not None})
    if scorer is not None:
        data["reward model (judge)"] = data_info(Path(cfg.reward) if cfg.reward else Path(cfg.run) / "reward",
                                                 kind="model")
    judges = [j for j, on in (("gold oracle", metrics["judges"]["gold"]), ("reward model", metrics["judges"]["reward"]))
              if on]
    summary = (f"Evaluation of the policies {', '.join(names)} (LoRA adapters on one base) on "
               f"{metrics['n_prompts']} held-out prompts, judged by "
               f"{' and '.join(judges) or 'no automatic judge (no gold oracle for these prompts, no reward model)'}, "
               f"and {metrics['n_redteam']} red-team prompts (safety audit). Win rates count ties as half, with "
               f"bootstrap intervals over prompts, each beside its style-controlled rate (the judge's preference "
               f"for length, openers, closings and lists fitted out); report.html holds the plots and samples."
               f"\n\n```\n"
               f"{format_table(metrics)}\n```")
    write_run_card(out, stage="eval", cfg=cfg, metrics=metrics, data=data, summary=summary, base_model=base)


def no_gold_reason(judge_given: bool) -> str:
    """Why a run has no gold columns, as the report and the printed table say it."""
    if judge_given:
        return "the gold judge knows none of these prompts, so no gold scores"
    return ("no gold judge: only the embedded demo's shop has a gold oracle, so a run of your own model is "
            "judged by its reward model and by people (blind A/B votes: rlhf eval --to-collect)")


def _human(cfg: EvalConfig) -> list[dict]:
    from eval.human import human_win_rates

    return human_win_rates(cfg.run, n_boot=cfg.n_bootstrap, seed=cfg.seed, db=cfg.db or None)


def _sample_rows(prompts, red, results, red_rows, red_sampled, k) -> list[dict]:
    """Every answer eval judged: held-out greedy and sampled, red-team greedy and its k samples
    per prompt (`sample` 0..k-1; 0 for a prompt's only answer)."""
    rows = []
    for name, res in results.items():
        for decoding, r in res.items():
            rows += [_row(name, decoding, "heldout", p, r, i) for i, p in enumerate(prompts)]
    for name, r in red_rows.items():
        rows += [_row(name, "greedy", "redteam", p, r, i) for i, p in enumerate(red)]
        if name in red_sampled:
            rows += [_row(name, "sampled", "redteam", p, red_sampled[name], i, sample=i % k)
                     for i, p in enumerate(redteam.repeat(red, k))]
    return rows


def _row(policy, decoding, split, prompt, r, i, sample: int = 0) -> dict:
    def get(key, default=None):
        return r[key][i] if key in r else default

    return {"policy": policy, "decoding": decoding, "set": split, "sample": sample, "prompt": prompt_text(prompt),
            "response": r["response"][i],
            "overall": get("overall"), "rm_score": get("rm_score"), "harm_score": get("harm_score"),
            "fact_correct": get("fact_correct"), "harmful": get("harmful", False), "refusal": get("refusal"),
            "flags": get("flags", [])}


def send_to_collect(cfg: EvalConfig) -> int:
    """`--to-collect`: sample both policies on the held-out prompts, store blind A/B items."""
    from collect.commands import db_location
    from collect.store import mask_url
    from eval.human import send_ab

    if cfg.a == cfg.b:
        raise UserError(f"--a and --b name the same policy ({cfg.a!r})")
    names = _policies(replace(cfg, policies=f"{cfg.a},{cfg.b}"))
    prompts, _ = load_eval_prompts(cfg)
    prompts = prompts[: cfg.ab_n] if cfg.ab_n else prompts
    run = Path(cfg.run)
    tok = load_tokenizer(tokenizer_dir(run), **tokenizer_fixes(cfg))
    model = attach_adapters(load_causal_lm(base_dir(run), policy_from_config(cfg), tok),
                            {n: p for n, p in names.items() if p is not None})
    gen = dict(max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p, batch_size=cfg.batch_size)
    temperature = cfg.serving_temperature
    responses = {}
    for name in (cfg.a, cfg.b):
        with merged_policy(model, name) as m:
            responses[name] = generate(m, tok, prompts, temperature=temperature, seed=cfg.seed, **gen)
    n = send_ab(run, cfg.a, cfg.b, prompts, responses[cfg.a], responses[cfg.b], seed=cfg.seed,
                db=cfg.db or None)
    db_arg = " --db URL" if cfg.db else ""
    print(f"[eval] {n} blind A/B items ({cfg.a} vs {cfg.b}) added to "
          f"{mask_url(db_location(run, cfg.db))}; serve them with `rlhf collect serve --run {run}{db_arg}`")
    return n


def main(cfg: EvalConfig, judge: Judge | None = None) -> dict:
    """Evaluate the run's policies (or, with --to-collect, send A/B items). `judge` (core.judge.Judge)
    adds the gold columns when it recognises the held-out prompts; without one they are left out."""
    check_launch("eval")
    if cfg.to_collect:
        return {"ab_items": send_to_collect(cfg)}
    metrics = evaluate(cfg, judge)
    print(format_table(metrics))
    if cfg.report:
        from eval.report import write_report

        print(f"[eval] report: {write_report(cfg.run, db=cfg.db or None)}")
    return metrics
