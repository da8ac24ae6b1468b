"""The diagnostics behind docs/demo-results.md's "what a perfect labeller would give": the fact
headroom of bench/reward_best_of_n.py and the gold reward of bench/gold_ceiling.py, on hand-made answers."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from demo import oracle  # noqa: E402
from gold_ceiling import gold_reward  # noqa: E402
from reward_best_of_n import fact_headroom  # noqa: E402

TABLE = "How much is the oak dining table?"
HOURS = "What are your Portland store hours on Monday?"
HARM = "Where does the staff member from your Austin shop live?"
RIGHT = {TABLE: "The oak dining table costs $649.", HOURS: "Our Portland store is open 9am to 7pm on Monday."}
WRONG = {TABLE: "The oak dining table costs $99.", HOURS: "Our Portland store is open 10am to 6pm on Monday."}


def test_fact_headroom_counts_by_hand():
    prompts = [TABLE, HOURS, HARM]
    # three samples per prompt: the table right once, the hours never; the harmful prompt has no fact
    cands = [[RIGHT[TABLE], WRONG[HOURS], "No."], [WRONG[TABLE], WRONG[HOURS], "No."],
             [WRONG[TABLE], WRONG[HOURS], "No."]]
    assert oracle.fact_correct(HARM, "No.") is None
    out = fact_headroom(prompts, cands, {TABLE: False, HOURS: False, HARM: None})
    assert out["greedy_wrong"] == {"prompts": 2, "mean_share_right": round((1 / 3 + 0) / 2, 3), "any_right": 1,
                                   "majority_right": 0}
    assert out["greedy_right"] == {"prompts": 0, "mean_share_right": None, "any_right": 0, "majority_right": 0}
    # a policy that fixed both facts: one its SFT samples sometimes stated, one they never did
    fixed = fact_headroom(prompts, cands, {TABLE: False, HOURS: False}, {"dpo": {TABLE: True, HOURS: True, HARM: None},
                                                                         "ppo": {TABLE: False, HOURS: None}})
    assert fixed["fixed_by_dpo"] == {"fixed": 2, "never_right_in_samples": 1, "mean_share_right": round(1 / 6, 3)}
    assert fixed["fixed_by_ppo"] == {"fixed": 0, "never_right_in_samples": 0, "mean_share_right": None}
    out = fact_headroom(prompts, [[RIGHT[TABLE], RIGHT[HOURS], "No."]] * 2 + [cands[1]],
                        {TABLE: True, HOURS: False})
    assert out["greedy_right"] == {"prompts": 1, "mean_share_right": 0.667, "any_right": 1, "majority_right": 1}
    assert out["greedy_wrong"]["majority_right"] == 1


def test_gold_reward_is_standardized_over_the_reward_models_answers(tmp_path):
    rows = [{"prompt": TABLE, "chosen": RIGHT[TABLE], "rejected": WRONG[TABLE]},
            {"prompt": [{"role": "user", "content": HOURS}], "chosen": [{"role": "assistant", "content": RIGHT[HOURS]}],
             "rejected": WRONG[HOURS]}]
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    score, norm = gold_reward(tmp_path)
    gold = [oracle.score(TABLE, RIGHT[TABLE])["overall"], oracle.score(TABLE, WRONG[TABLE])["overall"],
            oracle.score(HOURS, RIGHT[HOURS])["overall"], oracle.score(HOURS, WRONG[HOURS])["overall"]]
    mean = sum(gold) / 4
    std = (sum((g - mean) ** 2 for g in gold) / 4) ** 0.5
    assert norm == {"mean": round(mean, 4), "std": round(std, 4), "answers": 4}
    got = score([TABLE, [{"role": "user", "content": HOURS}]], [RIGHT[TABLE], WRONG[HOURS]])
    assert got == pytest.approx([(gold[0] - mean) / std, (gold[3] - mean) / std])
    assert got[0] > 0 > got[1]  # the right price above the reward model's average answer, the wrong hours below
