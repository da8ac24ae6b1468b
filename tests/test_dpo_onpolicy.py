"""On-policy pairs for DPO (rl/onpolicy.py): which answers pair up, by hand; and through the stage,
that the pairs are the SFT policy's own samples, scored as the reward function scores them, split by
the prompt rule, reused on resume, and refused with one clear line when the options are wrong."""
import json
import re

import pytest

from core.config import ConfigError, UserError, load_config
from rl.dpo import DPOConfig
from rl.onpolicy import PAIRS_FILE, best_worst, distinct_prompts, pairs_from_samples


# ---------------------------------------------------------------- which answers pair up

def test_best_against_worst():
    assert best_worst(["a", "b", "c"], [0.1, 2.0, -1.0], 0.5) == (1, 2)


def test_a_gap_below_the_minimum_gives_no_pair():
    assert best_worst(["a", "b"], [1.0, 1.4], 0.5) is None
    assert best_worst(["a", "b"], [1.0, 1.5], 0.5) == (1, 0)  # exactly the gap counts


def test_empty_and_repeated_answers_do_not_count():
    # the empty answer has the lowest score and "b " repeats "b": the worst left is "c"
    assert best_worst(["b", "", " b ", "c"], [3.0, -9.0, -5.0, 0.0], 0.5) == (0, 3)
    assert best_worst(["same", "same ", ""], [2.0, 0.0, -1.0], 0.0) is None  # one distinct answer


def test_ties_go_to_the_earlier_answer():
    assert best_worst(["a", "b", "c", "d"], [1.0, 1.0, 0.0, 0.0], 0.5) == (0, 2)


def test_pairs_from_samples_by_hand():
    prompts = ["p0", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "p1"}], "p2"]
    samples = [["x0", "y0", "z0"],  # samples[s][i]: prompt i's s-th answer
               ["x1", "y1", "z0"],
               ["x2", "y2", "z0"]]
    scores = [[0.0, 1.0, 5.0],
              [2.0, 1.2, 5.0],
              [-1.0, 1.1, 5.0]]
    rows = pairs_from_samples(prompts, samples, scores, 0.5)
    # p1's answers are within 0.2 of each other and p2's are one text: only p0 pairs up
    assert rows == [{"prompt": "p0", "chosen": "x1", "rejected": "x2", "chosen_score": 2.0,
                     "rejected_score": -1.0, "source": "onpolicy"}]
    rows = pairs_from_samples(prompts, samples, scores, 0.1)
    assert [r["chosen"] for r in rows] == ["x1", "y1"] and rows[1]["prompt"] == prompts[1]


def test_distinct_prompts_keep_file_order():
    assert distinct_prompts(["Are you open?", "Hours?", "are you  open?"]) == ["Are you open?", "Hours?"]


# ---------------------------------------------------------------- through the stage

@pytest.fixture
def prefs(tmp_path):
    from conftest import tiny_chat_rows

    rows = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": "We are closed.", "n_votes": 3,
             "agreement": 1.0} for r in tiny_chat_rows()]
    f = tmp_path / "preferences.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _cfg(run, prefs, out, **kw):
    base = dict(run=str(run), data=str(prefs), out=str(out), max_steps=2, eval_steps=2, logging_steps=1,
                batch_size=4, learning_rate=5e-3, warmup_ratio=0.0, val_fraction=0.15, early_stopping_patience=0,
                max_kl=0.0, threads=1, dtype="float32", onpolicy_samples=3, onpolicy_max_new_tokens=12,
                onpolicy_batch_size=4, onpolicy_min_gap=0.2)
    base.update(kw)
    return load_config(DPOConfig, None, base)


def length_reward(prompts, responses):
    return [len(r) / 10 for r in responses]


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_onpolicy_pairs_are_the_sft_policys_samples_ranked_by_the_reward(tiny_run, prefs, tmp_path):
    from core.device import resolve_device
    from core.models import load_policy, load_tokenizer
    from core.split import split_by_prompt
    from rl.dpo import main
    from rl.onpolicy import sample_answers

    out = tmp_path / "dpo"
    metrics = main(_cfg(tiny_run, prefs, out), reward_fn=length_reward)
    pairs = _rows(out / PAIRS_FILE)
    n_file = len(_rows(prefs))
    assert pairs and metrics["onpolicy_pairs"] == len(pairs) and metrics["onpolicy_prompts"] == n_file

    # the same seed gives the same three answers per prompt: every pair is the longest against the shortest
    tok = load_tokenizer(tiny_run / "base")
    model = load_policy(tiny_run / "base", resolve_device("cpu", apply=False), tok, adapter=tiny_run / "sft")
    prompts = [r["prompt"] for r in _rows(prefs)]
    samples = sample_answers(model, tok, prompts, 3, seed=0, temperature=0.8, max_new_tokens=12, batch_size=4)
    by_prompt = {p: [s[i] for s in samples] for i, p in enumerate(prompts)}
    for p in pairs:
        answers = [a for a in by_prompt[p["prompt"]] if a.strip()]
        assert p["chosen"] == max(answers, key=len) and p["rejected"] == min(answers, key=len)
        assert p["chosen_score"] == pytest.approx(len(p["chosen"]) / 10, abs=1e-4)
        assert p["chosen_score"] - p["rejected_score"] >= 0.2

    # trained on both: the file's pairs and the on-policy ones, every prompt on one side of the split
    train, val = _rows(out / "train.jsonl"), _rows(out / "val.jsonl")
    assert len(train) + len(val) == n_file + len(pairs) == metrics["train_pairs"] + metrics["val_pairs"]
    assert {r["source"] for r in train + val} == {"file", "onpolicy"}
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    expected_val = {r["prompt"] for r in split_by_prompt(_rows(prefs), 0.15, 0)[1]}
    assert {r["prompt"] for r in val} == expected_val
    header = (out / "README.md").read_text()
    assert "on-policy pairs" in header and str(out / PAIRS_FILE) in header


def test_prompts_come_from_the_prompts_file_without_its_eval_rows(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "When do you open on Monday?", "tags": ["pref"]},
            {"prompt": "Do you sell lamps?", "tags": []},  # in no preference pair
            {"prompt": "When do you open on Monday? ", "tags": ["pref"]},  # the first one again
            {"prompt": "Held-out question?", "tags": ["eval"]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo"
    metrics = main(_cfg(tiny_run, prefs, out, onpolicy_prompts=str(prompts), onpolicy_min_gap=0.0),
                   reward_fn=length_reward)
    assert metrics["onpolicy_prompts"] == 2
    assert {p["prompt"] for p in _rows(out / PAIRS_FILE)} <= {"When do you open on Monday?", "Do you sell lamps?"}
    with pytest.raises(UserError, match=r"no_prompts.jsonl: no such prompts file \(key 'onpolicy_prompts'\)"):
        main(_cfg(tiny_run, prefs, tmp_path / "dpo2", onpolicy_prompts=str(tmp_path / "no_prompts.jsonl")),
             reward_fn=length_reward)
    assert not (tmp_path / "dpo2").exists()  # refused before anything was written


def test_onpolicy_only_and_resume_reads_the_same_pairs(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    out = tmp_path / "dpo"
    main(_cfg(tiny_run, prefs, out, onpolicy_keep_pairs=False), reward_fn=length_reward)
    first = (out / PAIRS_FILE).read_text()
    train = _rows(out / "train.jsonl") + _rows(out / "val.jsonl")
    assert {r["source"] for r in train} == {"onpolicy"} and len(train) == len(first.splitlines())

    def no_reward(prompts, responses):
        raise AssertionError("a resumed run must not sample and score again")

    metrics = main(_cfg(tiny_run, prefs, out, onpolicy_keep_pairs=False, resume=True), reward_fn=no_reward)
    assert (out / PAIRS_FILE).read_text() == first and metrics["onpolicy_reused"] is True


@pytest.mark.parametrize("options,message", [
    (dict(onpolicy_samples=1), "'onpolicy_samples' must be 0 (off) or at least 2"),
    (dict(onpolicy_min_gap=-1.0), "'onpolicy_min_gap' must be >= 0"),
    (dict(onpolicy_temperature=0.0), "'onpolicy_temperature' must be > 0"),
])
def test_option_refusals(tiny_run, prefs, tmp_path, options, message):
    from rl.dpo import main

    with pytest.raises(ConfigError, match=re.escape(message)):
        main(_cfg(tiny_run, prefs, tmp_path / "dpo", **options))
    assert not (tmp_path / "dpo").exists()  # refused before anything was written


def test_a_missing_reward_model_is_named_before_any_loading(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    with pytest.raises(UserError, match=r"no_rm: no reward model to rank the on-policy answers.*rlhf reward"):
        main(_cfg(tiny_run, prefs, tmp_path / "dpo", onpolicy_reward=str(tmp_path / "no_rm")))
