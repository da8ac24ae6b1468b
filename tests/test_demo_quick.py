"""The whole demo loop at reduced size: every artifact appears, a re-run (of the run or a copy)
skips every stage, a changed setting re-runs that stage and the ones after it, and an
interrupted run resumes."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ARTIFACTS = (
    "data/sft.jsonl", "data/prompts.jsonl", "data/redteam.jsonl", "data/corpus.txt",
    "base/config.json", "base/tokenizer.json", "base/README.md", "base/log.jsonl",
    "sft/adapter_model.safetensors", "sft/README.md", "sft/metrics.json", "sft/log.jsonl",
    "collect/annotations.db", "collect/preferences.jsonl", "collect/README.md", "collect/metrics.json",
    "reward/README.md", "reward/metrics.json", "reward/log.jsonl",
    "dpo/adapter_model.safetensors", "dpo/README.md", "dpo/metrics.json", "dpo/log.jsonl",
    "ppo/adapter_model.safetensors", "ppo/README.md", "ppo/metrics.json", "ppo/log.jsonl",
    "rloo/adapter_model.safetensors", "rloo/README.md", "rloo/metrics.json", "rloo/log.jsonl",
    "eval/metrics.json", "eval/samples.jsonl", "eval/report.html",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import main

    run = tmp_path_factory.mktemp("demo") / "run"
    cfg = load_config(DemoConfig, None, {"run": str(run), "quick": True})
    return run, cfg, main(cfg)


def test_quick_demo_writes_every_artifact(quick_run):
    run, _, first = quick_run
    for f in ARTIFACTS:
        assert (run / f).exists(), f
    ev = first["eval"]
    assert set(ev["policies"]) == {"base", "sft", "dpo", "ppo", "rloo"}
    pairs = {(w["a"], w["b"], w["judge"], w["decoding"]) for w in ev["win_rates"]}
    for a in ("dpo", "ppo", "rloo"):
        for judge in ("gold", "reward"):
            for decoding in ("greedy", "sampled"):
                assert (a, "sft", judge, decoding) in pairs
    for w in ev["win_rates"]:  # each beside its style-controlled rate, fitted on the same prompts
        s = w["style_controlled"]
        assert s["n"] == w["n"] and 0 <= s["ci_low"] <= s["ci_high"] <= 1 and 0 <= s["win_rate"] <= 1
        assert set(s["coefficients"]) == {"intercept", "log_length", "opener", "closing", "list"}
    for name in ("dpo", "ppo", "rloo"):
        p = ev["policies"][name]
        assert p["kl_to_sft"] is not None and p["ppl_sft_val"] > 1 and p["ppl_corpus"] > 1
        assert 0 <= p["harmful_rate"] <= 1 and p["greedy"]["rm_score"] is not None
    by_verdict = ev["safety"]["rm_by_verdict"]  # the reward model scored every audited answer
    assert sum(v["n"] for v in by_verdict.values()) == 5 * ev["n_redteam"]
    diffs = {(d["policy"], d["decoding"]): d for d in ev["safety"]["harmful_vs_sft"]}
    assert set(diffs) == {(n, dec) for n in ("base", "dpo", "ppo", "rloo") for dec in ("greedy", "sampled")}
    for (name, dec), d in diffs.items():
        rate = ev["policies"][name]["harmful_rate" if dec == "greedy" else "harmful_rate_sampled"]
        assert d["rate_a"] == pytest.approx(rate) and d["n"] == ev["n_redteam"]
        assert d["difference"] == pytest.approx(d["rate_a"] - d["rate_b"]) and d["ci_low"] <= d["ci_high"]
    decomposition = {(d["policy"], d["decoding"]): d for d in ev["gold"]["decomposition"]}
    assert set(decomposition) == {(n, dec) for n in ("base", "dpo", "ppo", "rloo") for dec in ("greedy", "sampled")}
    for (name, dec), d in decomposition.items():  # the oracle's terms add up to the gold gain over SFT
        gain = ev["policies"][name][dec]["gold_overall"] - ev["policies"]["sft"][dec]["gold_overall"]
        assert sum(d["terms"].values()) == pytest.approx(d["gain"], abs=1e-4) and d["gain"] == pytest.approx(gain, abs=1e-5)
    # k sampled answers per red-team prompt, all in samples.jsonl, rates with intervals over prompts
    k, n_red = ev["safety"]["redteam_samples"], ev["n_redteam"]
    assert k == 4
    samples = [json.loads(x) for x in (run / "eval" / "samples.jsonl").read_text().splitlines()]
    red = [r for r in samples if r["set"] == "redteam" and r["policy"] == "ppo" and r["decoding"] == "sampled"]
    assert sorted(r["sample"] for r in red) == sorted(list(range(k)) * n_red)
    assert ev["policies"]["ppo"]["harmful_rate_sampled"] == pytest.approx(sum(r["harmful"] for r in red) / len(red))
    assert ev["policies"]["ppo"]["refusal_rate_sampled"] == pytest.approx(sum(r["refusal"] for r in red) / len(red))
    lo, hi = ev["policies"]["ppo"]["refusal_rate_sampled_ci"]
    assert lo <= ev["policies"]["ppo"]["refusal_rate_sampled"] <= hi
    assert {(d["policy"], d["decoding"], d["k"]) for d in ev["safety"]["refusal_vs_sft"]} == {
        (n, dec, k if dec == "sampled" else 1) for n in ("base", "dpo", "ppo", "rloo")
        for dec in ("greedy", "sampled")}
    rm = json.loads((run / "reward" / "metrics.json").read_text())
    assert {"harm_auc", "harm_auc_all", "gate_threshold_heldout"} <= set(rm)
    assert all(v > 0 for v in first["timings"].values())
    assert "<img" in (run / "eval" / "report.html").read_text()
    # the round's guidelines, where `rlhf collect serve --run` finds them
    assert (run / "collect" / "guidelines.md").read_text() == \
        (ROOT / "demo" / "guidelines.md").read_text()


def test_rerun_skips_and_a_changed_stage_reruns_what_follows(quick_run, tmp_path):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import ORDER, main

    run, cfg, _ = quick_run
    second = main(cfg)
    assert second["timings"] == {name: 0.0 for name in ORDER}
    # a copied (or moved) run is still up to date: the fingerprints leave the path out
    shutil.copytree(run, tmp_path / "copy")
    assert main(replace(cfg, run=str(tmp_path / "copy")))["timings"] == {name: 0.0 for name in ORDER}

    # a changed DPO setting re-runs DPO and eval (eval reads the DPO adapter), nothing before
    dpo_cfg = tmp_path / "dpo.yaml"
    dpo_cfg.write_text("max_steps: 2\neval_steps: 2\nbatch_size: 4\nlogging_steps: 1\nmax_length: 96\n")
    third = main(load_config(DemoConfig, None, {"run": str(run), "quick": True, "dpo_config": str(dpo_cfg)}))
    assert all(third["timings"][s] == 0.0 for s in ("data", "base", "sft", "collect", "reward", "ppo", "rloo"))
    assert third["timings"]["dpo"] > 0 and third["timings"]["eval"] > 0
    assert json.loads((run / "dpo" / "metrics.json").read_text())["steps"] == 2


def test_until_stops_after_the_named_stage(tmp_path):
    from core.config import UserError, load_config
    from demo.config import DemoConfig
    from demo.pipeline import main

    with pytest.raises(UserError, match="not a stage"):
        main(load_config(DemoConfig, None, {"run": str(tmp_path / "r"), "quick": True, "until": "nope"}))
    out = main(load_config(DemoConfig, None, {"run": str(tmp_path / "r"), "quick": True, "until": "data"}))
    assert list(out["timings"]) == ["data"] and not (tmp_path / "r" / "base").exists()


def test_eval_to_collect_sends_blind_ab_items_and_reports_human_votes(quick_run):
    from collect.assign import next_item
    from collect.commands import store_for
    from collect.users import add_user
    from collect.votes import submit_vote
    from core.records import ASPECTS
    from core.config import EvalConfig, load_config
    from demo.simulate import simulate_run
    from eval.human import human_win_rates
    from eval.stage import main

    run, _, _ = quick_run
    cfg = load_config(EvalConfig, None, ["--run", str(run), "--to-collect", "--a", "sft", "--b", "ppo",
                                         "--ab_n", "4", "--max_new_tokens", "8", "--threads", "1"])
    assert main(cfg) == {"ab_items": 4}
    assert main(cfg) == {"ab_items": 0}  # idempotent
    store = store_for(run)
    try:
        add_user(store, "viewer", "annotator", "a long enough password")
        seen = 0
        while (view := next_item(store, "viewer", overlap=3, gold_rate=0.0)) is not None:
            shown = " ".join(str(v) for v in vars(view).values())
            assert "sft" not in shown and "ppo" not in shown, shown
            flat = dict.fromkeys(ASPECTS, 3)
            submit_vote(store, "viewer", view.item_id, choice_shown="tie", aspects_left=flat, aspects_right=flat)
            seen += 1
        assert seen >= 4
    finally:
        store.close()
    simulate_run(run, n_annotators=3, careless=0, seed=1, overlap=3, gold_rate=0.0)
    (human,) = human_win_rates(run, n_boot=50)
    assert (human["a"], human["b"], human["judge"], human["n"]) == ("sft", "ppo", "human", 4)
    assert 0 <= human["win_rate"] <= 1


def test_an_interrupted_stage_resumes_and_a_finished_one_is_skipped(tmp_path):
    from core.config import DPOConfig
    from loop.runner import Stage, run_stage

    out, seen = tmp_path / "dpo", []
    inputs = {"prefs": tmp_path / "prefs.jsonl"}
    (tmp_path / "prefs.jsonl").write_text("{}\n")

    def crash(cfg):
        seen.append(cfg.resume)
        raise KeyboardInterrupt

    def finish(cfg):
        seen.append(cfg.resume)
        (out / "metrics.json").write_text("{}")

    cfg = DPOConfig(run=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run_stage(Stage("dpo", out, crash, cfg, inputs))
    assert run_stage(Stage("dpo", out, finish, cfg, inputs)) > -1  # resumed
    assert run_stage(Stage("dpo", out, finish, cfg, inputs)) is None  # up to date: skipped
    assert seen == [False, True]
    (tmp_path / "prefs.jsonl").write_text('{"changed": 1}\n')  # new input: a fresh run
    run_stage(Stage("dpo", out, finish, cfg, inputs))
    assert seen == [False, True, False]


def test_eval_without_a_judge_leaves_the_gold_columns_out(quick_run, tmp_path):
    from core.config import EvalConfig, load_config
    from eval.stage import main, no_gold_reason

    run, _, _ = quick_run
    shutil.copytree(run, tmp_path / "copy")
    cfg = load_config(EvalConfig, None, {"run": str(tmp_path / "copy"), "policies": "sft,dpo", "max_prompts": 4,
                                         "max_new_tokens": 8, "serving_temperature": 0.0, "report": False,
                                         "flag_to_review": False, "threads": 1})
    m = main(cfg)
    assert {k: m["judges"][k] for k in ("gold", "reward", "no_gold_because")} == {
        "gold": False, "reward": True, "no_gold_because": no_gold_reason(judge_given=False)}
    assert m["judges"]["human"] == any(w["judge"] == "human" for w in m["win_rates"])
    assert "gold_overall" not in m["policies"]["sft"]["greedy"] and m["policies"]["sft"]["harmful_rate"] is None
    assert {w["judge"] for w in m["win_rates"] if w["judge"] != "human"} == {"reward"}
    assert "harmful_vs_sft" not in m["safety"]
