"""`rlhf demo --quick --rounds 2`: the simulated annotators vote on round 1's best policy against
SFT, and round 2's eval sets each policy against its round-1 self by the gold oracle and by the
retrained reward model, with the reward models' accuracy on the new pairs before and after."""
import json
import shutil
from dataclasses import replace

import pytest


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import main

    run = tmp_path_factory.mktemp("rounds") / "run"
    cfg = load_config(DemoConfig, None, {"run": str(run), "quick": True, "rounds": 2})
    return run, cfg, main(cfg)


def test_round_two_compares_with_round_one(two_rounds):
    run, _, result = two_rounds
    r2 = run / "rounds" / "2"
    assert (r2 / "base").resolve() == (run / "base").resolve() and (r2 / "sft" / "adapter_config.json").exists()
    collect = json.loads((r2 / "collect" / "metrics.json").read_text())
    assert collect["policy"] in ("dpo", "ppo", "rloo") and collect["vs"] == ["sft"] and collect["n_votes"] > 0
    round1 = len((run / "collect" / "preferences.jsonl").read_text().splitlines())
    assert collect["n_pairs_all"] == round1 + collect["n_pairs"] > round1
    m = result["eval"]  # the last round's eval is what the demo returns
    assert m == json.loads((r2 / "eval" / "metrics.json").read_text())
    rounds = m["rounds"]
    keys = {(w["policy"], w["judge"], w["decoding"]) for w in rounds["win_rates"]}
    assert keys == {(a, j, d) for a in ("dpo", "ppo", "rloo") for j in ("gold", "reward") for d in ("greedy", "sampled")}
    for w in rounds["win_rates"]:
        assert w["wins"] + w["ties"] + w["losses"] == w["n"] > 0 and w["ci_low"] <= w["win_rate"] <= w["ci_high"]
        assert w["style_controlled"]["n"] == w["n"]
    # gold win rates agree with the two rounds' own samples
    now = [json.loads(x) for x in (r2 / "eval" / "samples.jsonl").read_text().splitlines()]
    before = [json.loads(x) for x in (run / "eval" / "samples.jsonl").read_text().splitlines()]

    def gold(rows):
        return {r["prompt"]: r["overall"] for r in rows if r["policy"] == "ppo" and r["decoding"] == "greedy"
                and r["set"] == "heldout"}

    a, b = gold(now), gold(before)
    expected = sum(1.0 if a[p] > b[p] else 0.5 if a[p] == b[p] else 0.0 for p in a) / len(a)
    w = next(w for w in rounds["win_rates"] if (w["policy"], w["judge"], w["decoding"]) == ("ppo", "gold", "greedy"))
    assert w["win_rate"] == pytest.approx(expected)
    acc = rounds["reward_on_new_items"]
    held = len([1 for x in (r2 / "reward" / "val.jsonl").read_text().splitlines() if json.loads(x)["round"] == 2])
    assert acc["heldout"]["before"]["n"] == acc["heldout"]["after"]["n"] == held
    assert acc["all"]["before"]["n"] == collect["n_pairs"]
    assert {p["round"] for p in rounds["proxy_vs_gold"]} == {1, 2}
    page = (r2 / "eval" / "report.html").read_text()
    assert "Round 2 against round 1" in page and "gain over SFT by the reward model and by gold" in page


def test_two_rounds_rerun_and_copy_skip_every_stage(two_rounds, tmp_path):
    from demo.pipeline import main, order

    run, cfg, _ = two_rounds
    assert main(cfg)["timings"] == {name: 0.0 for name in order(2)}
    shutil.copytree(run, tmp_path / "copy", symlinks=True)  # the rounds' links are relative
    assert main(replace(cfg, run=str(tmp_path / "copy")))["timings"] == {name: 0.0 for name in order(2)}
