"""core/split.py: one hold-out rule for every stage. A prompt's side is a function of (seed, its
normalized text) alone, so the reward model and DPO hold out the same prompts from the same file."""
import hashlib
import json
import random

import pytest

from core.config import DPOConfig, RewardConfig, UserError
from core.prompts import prompt_key
from core.split import held_out_score, split_by_prompt


def pairs(n_prompts, per_prompt=2, offset=0):
    return [{"prompt": f"Question number {i}?" if j % 2 else f"question  NUMBER {i}", "chosen": f"a{j}",
             "rejected": f"b{j}"} for i in range(offset, offset + n_prompts) for j in range(per_prompt)]


def sides(train, val):
    return {prompt_key(r["prompt"]): "train" for r in train} | {prompt_key(r["prompt"]): "val" for r in val}


def test_key_normalizes_and_treats_a_string_as_one_user_turn():
    assert prompt_key("  What are your HOURS? ") == prompt_key([{"role": "user", "content": "what are your hours"}])
    assert prompt_key("Hours?") == "hours"
    assert prompt_key([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hours?"}]) == "hours"
    assert prompt_key("order #12?") != prompt_key("order 12?")


def test_score_is_the_documented_hash():
    """u = first 64 bits of sha256("seed:key") / 2**64, computed here with hashlib directly."""
    expected = int(hashlib.sha256(b"3:hours").hexdigest()[:16], 16) / 2**64
    assert held_out_score("hours", 3) == expected
    assert 0.0 <= expected < 1.0 and held_out_score("hours", 4) != expected


def test_rows_of_a_prompt_stay_together_and_the_fraction_holds():
    rows = pairs(2000)
    train, val = split_by_prompt(rows, 0.15, seed=0)
    assert len(train) + len(val) == 4000
    s = sides(train, val)
    assert not {prompt_key(r["prompt"]) for r in train} & {prompt_key(r["prompt"]) for r in val}
    assert len(s) == 2000  # the two spellings of each question are one prompt
    assert 0.13 < len(val) / 4000 < 0.17  # 2000 prompts: sd of the share is 0.008


def test_split_is_stable_under_reordering_new_rows_and_across_seeds():
    rows = pairs(300)
    base = sides(*split_by_prompt(rows, 0.2, seed=5))
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    assert sides(*split_by_prompt(shuffled, 0.2, seed=5)) == base
    grown = sides(*split_by_prompt(rows + pairs(300, offset=300), 0.2, seed=5))
    assert {k: grown[k] for k in base} == base  # new prompts never move old ones
    assert sides(*split_by_prompt(rows, 0.2, seed=6)) != base
    # a smaller fraction holds out a subset of a larger one's prompts
    small = {k for k, v in sides(*split_by_prompt(rows, 0.1, seed=5)).items() if v == "val"}
    assert small and small <= {k for k, v in base.items() if v == "val"}


def test_both_sides_non_empty_and_errors():
    two = pairs(2, per_prompt=1)
    train, val = split_by_prompt(two, 0.01, seed=0)  # neither falls under 0.01: the smaller u is held out
    u = {prompt_key(r["prompt"]): held_out_score(prompt_key(r["prompt"]), 0) for r in two}
    assert [prompt_key(r["prompt"]) for r in val] == [min(u, key=u.get)] and len(train) == 1
    train, val = split_by_prompt(two, 0.99, seed=0)
    assert len(train) == len(val) == 1
    assert split_by_prompt(two, 0.0, seed=0) == (two, [])
    with pytest.raises(UserError, match="share one prompt"):
        split_by_prompt(pairs(1), 0.2)
    with pytest.raises(UserError, match="val_fraction"):
        split_by_prompt(two, 1.0)


def test_reward_and_dpo_hold_out_the_same_prompts_from_one_file(tmp_path):
    """Each stage's own reading + splitting of one preference file, with its default fraction and
    the same seed."""
    from reward.train import load_split as reward_split
    from rl.dpo import load_split as dpo_split

    f = tmp_path / "preferences.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in pairs(120, per_prompt=3)))
    _, r_train, r_val = reward_split(f, RewardConfig(seed=3))
    _, d_train, d_val = dpo_split(f, DPOConfig(seed=3))
    assert r_val and r_train
    assert [r["prompt"] for r in r_val] == [r["prompt"] for r in d_val]
    assert [r["prompt"] for r in r_train] == [r["prompt"] for r in d_train]


def test_a_cap_keeps_the_prompts_with_the_smallest_scores():
    rows = pairs(300, per_prompt=1)
    full = {prompt_key(r["prompt"]) for r in split_by_prompt(rows, 0.3, seed=1)[1]}
    train, val = split_by_prompt(rows, 0.3, seed=1, max_held_out=5)
    capped = {prompt_key(r["prompt"]) for r in val}
    assert len(capped) == 5 and len(train) == 295 and capped <= full
    assert max(held_out_score(k, 1) for k in capped) < min(held_out_score(k, 1) for k in full - capped)


def test_the_loop_tags_eval_prompts_by_the_same_rule(tmp_path):
    from loop.prompts import write_tagged_prompts

    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Question number {i}?"}) + "\n" for i in range(200)))
    info = write_tagged_prompts(src, tmp_path / "out.jsonl", 0.1, 1000, seed=4)
    tagged = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    _, val = split_by_prompt([{"prompt": r["prompt"]} for r in tagged], 0.1, seed=4)
    assert [r["prompt"] for r in tagged if r["tags"] == ["eval"]] == [r["prompt"] for r in val]
    assert info["eval"] == len(val) and info["pref"] == 200 - len(val)
    assert write_tagged_prompts(src, tmp_path / "out2.jsonl", 0.1, 3, seed=4)["eval"] == 3
