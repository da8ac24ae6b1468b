"""eval/gold.py with a judge passed in (any object with core.judge.Judge's methods), and the rule
by which the CLI passes the demo's oracle (demo/judge.py)."""
import json

import pytest
import torch

from eval.gold import applies, reward_gold_metrics, rm_by_outcome, summarize, verdicts


class LengthJudge:
    """Knows prompts starting with "q"; overall = the response's length in characters (capped at 5),
    every aspect 3; harmful when the response says "steal", a refusal when it says "no"."""

    def recognises(self, prompt):
        return prompt.startswith("q")

    def score(self, prompt, response):
        return dict.fromkeys(("quality", "relevance", "helpfulness", "harmfulness", "correctness", "realism",
                              "comprehensibility"), 3) | {"overall": float(min(len(response), 5))}

    def fact_correct(self, prompt, response):
        return None if "?" in prompt else response == "ok"

    def is_harmful(self, prompt, response):
        return "steal" in response

    def is_refusal(self, prompt, response):
        return response == "no"


def test_verdicts_and_summary_use_the_judge_passed_in():
    judge = LengthJudge()
    assert applies(judge, ["q1", "q2", "x"]) and not applies(judge, ["q1", "x", "y"]) and not applies(judge, [])
    v = verdicts(judge, ["q1", "q2", "q3?"], ["ok", "steal", "no"])
    assert v["overall"] == [2.0, 5.0, 2.0] and v["harmful"] == [False, True, False]
    assert v["refusal"] == [False, False, True] and v["fact_correct"] == [True, False, None]
    s = summarize(v)
    assert s["gold_overall"] == 3.0 and s["fact_accuracy"] == 0.5 and s["aspects"]["quality"] == 3.0


def test_reward_gold_metrics_by_hand():
    """Pair q1: gold 4 - 1 = +3, the RM agrees (delta +1). Pair q2: gold 2 - 5 = -3, the RM says +1:
    wrong. Accuracy 1/2; the labels (chosen) agree with gold on 1 of 2. The lengths given are the
    gold scores themselves, so their correlation is 1."""
    rows = [{"prompt": "q1", "chosen": "aaaa", "rejected": "a"}, {"prompt": "q2", "chosen": "bb", "rejected": "bbbbb"}]
    lengths = {("q1", "aaaa"): 4, ("q1", "a"): 1, ("q2", "bb"): 2, ("q2", "bbbbb"): 5}
    m = reward_gold_metrics(LengthJudge(), rows, torch.tensor([1.0, 1.0]), lengths)
    assert m["gold_pairs"] == 2 and m["gold_near_ties"] == 0
    assert m["heldout_accuracy_gold"] == m["heldout_accuracy_gold_all"] == 0.5
    assert m["labels_agree_with_gold"] == 0.5 and m["gold_length_corr"] == 1.0
    # a third pair on a prompt the judge does not know: 4 of 6 responses judged, under 90%: no gold
    rows.append({"prompt": "x", "chosen": "c", "rejected": "d"})
    assert reward_gold_metrics(LengthJudge(), rows, torch.tensor([1.0, 1.0, 1.0]),
                               lengths | {("x", "c"): 1, ("x", "d"): 1}) == {}


def test_only_a_demo_run_gets_the_oracle(tmp_path):
    from demo import oracle
    from demo.config import DataConfig
    from demo.judge import eval_judge, is_demo_run, reward_gold_for_run
    from demo.pipeline import data_main

    run = tmp_path / "demo"
    data_main(DataConfig(run=str(run), n_sft=40, n_pref=8, n_eval=8, n_redteam=4))
    assert json.loads((run / "data" / "metrics.json").read_text())["domain"] == "demo"
    assert is_demo_run(run) and eval_judge(run) is oracle and reward_gold_for_run(run).args == (oracle,)

    other = tmp_path / "mine"
    (other / "data").mkdir(parents=True)
    (other / "data" / "prompts.jsonl").write_text((run / "data" / "prompts.jsonl").read_text())
    assert not is_demo_run(other) and eval_judge(other) is None and reward_gold_for_run(other) is None
    (other / "data" / "metrics.json").write_text("[1, 2]")
    assert not is_demo_run(other)


@pytest.mark.parametrize("argv", [["eval", "--run", "RUN", "--policies", "nope"],
                                  ["reward", "--run", "RUN", "--data", "missing.jsonl"]])
def test_cli_passes_the_judge_of_the_run(tmp_path, monkeypatch, argv):
    """The CLI asks demo/judge.py with the run of the command line; the stage gets what it says."""
    import demo.judge
    from cli.main import main

    seen = {}
    monkeypatch.setattr(demo.judge, "eval_judge", lambda run: seen.setdefault("eval", run) and "J")
    monkeypatch.setattr(demo.judge, "reward_gold_for_run", lambda run: seen.setdefault("reward", run) and "G")
    import eval.stage
    import reward.train
    monkeypatch.setattr(eval.stage, "main", lambda cfg, judge=None: seen.setdefault("got", judge))
    monkeypatch.setattr(reward.train, "main", lambda cfg, gold=None: seen.setdefault("got", gold))
    run = str(tmp_path / "r")
    assert main([a.replace("RUN", run) for a in argv]) == 0
    assert seen[argv[0]] == run and seen["got"] == ("J" if argv[0] == "eval" else "G")


def test_rm_by_outcome_groups_refusals_right_wrong_and_no_fact():
    rows = {"refusal": [True, False, False, False, True], "fact_correct": [None, True, False, True, False],
            "rm_score": [0.7, 1.0, -0.5, 0.8, 0.5], "overall": [1.5, 4.0, 1.5, 3.8, 1.7]}
    assert rm_by_outcome(rows) == {"correct": {"n": 2, "rm": 0.9, "gold": 3.9},
                                   "refusal": {"n": 2, "rm": 0.6, "gold": 1.6},
                                   "wrong": {"n": 1, "rm": -0.5, "gold": 1.5}}
    rows["fact_correct"][0], rows["refusal"][0] = None, False
    assert rm_by_outcome(rows)["no_fact"] == {"n": 1, "rm": 0.7, "gold": 1.5}
