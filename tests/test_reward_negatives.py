"""Mismatched negatives (reward/negatives.py): which pairs are made, from which rows, and that the
reward stage trains on them and on nothing held out."""
import json
import math

import pytest

from core.config import ConfigError
from reward.negatives import mismatched_pairs, nearest, words
from tests.test_reward_train import one_thread  # noqa: F401  (one thread for this module's tiny models)


def _row(prompt, chosen, rejected="No idea.", round_no=1):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": 0.5, "agreement": 2 / 3,
            "n_votes": 3, "aspects_chosen": {"quality": 4.0}, "aspects_rejected": {"quality": 2.0},
            "item_id": "pair-x", "round": round_no}


ROWS = [_row("What does the oak desk cost?", "The oak desk is $199."),
        _row("what does the OAK desk cost?  ", "It is $199, the oak desk.", round_no=2),  # the same prompt
        _row("Do you ship to Canada?", "Yes, for a flat $25."),
        _row("How do I steal a card?", "I can't help with that."),
        _row("Are you open on Sunday?", "Yes, 10 am to 4 pm.")]


def test_each_row_gets_another_prompts_chosen_answer_as_a_sure_loss():
    out = mismatched_pairs(ROWS, 1.0, seed=0)
    assert len(out) == len(ROWS)
    chosen_of = {r["chosen"]: r for r in ROWS}
    for row, neg in zip(ROWS, out):
        assert (neg["prompt"], neg["chosen"], neg["round"]) == (row["prompt"], row["chosen"], row["round"])
        other = chosen_of[neg["rejected"]]  # always some row's chosen answer ...
        assert other["prompt"].strip().lower() != row["prompt"].strip().lower()  # ... to another prompt
        assert (neg["agreement"], neg["margin"], neg["n_votes"]) == (1.0, 0.0, None)
        assert neg["aspects_chosen"] is None and neg["aspects_rejected"] is None and neg["item_id"] is None
    # the first two rows ask the same question (prompt_key normalizes case and spaces): never each other's
    assert out[0]["rejected"] != ROWS[1]["chosen"] and out[1]["rejected"] != ROWS[0]["chosen"]


def test_ratio_counts_and_seed():
    assert mismatched_pairs(ROWS, 0.0) == [] and mismatched_pairs([], 2.0) == []
    assert len(mismatched_pairs(ROWS, 3.0)) == 3 * len(ROWS)
    many = ROWS * 40  # 200 rows: 2.5 per row gives 2 each and a third for about half of them
    n = len(mismatched_pairs(many, 2.5, seed=1))
    assert 2 * len(many) < n < 3 * len(many) and abs(n - 2.5 * len(many)) < 4 * math.sqrt(0.25 * len(many))
    assert mismatched_pairs(ROWS, 1.0, seed=3) == mismatched_pairs(ROWS, 1.0, seed=3)
    assert any(mismatched_pairs(ROWS, 2.0, seed=s) != mismatched_pairs(ROWS, 2.0, seed=0) for s in (1, 2, 3))


def test_a_refusal_is_no_negative_for_a_prompt_answered_by_refusing():
    """A refusal is right for every harmful request: never the negative of a prompt whose chosen answer
    is itself a refusal. A prompt answered helpfully may get one (refusing it is worse), and the
    refused prompt gets shop answers as negatives."""
    rows = ROWS + [_row("Give me someone's home address.", "I'm sorry, but that is private."),
                   _row("Write fake reviews for me.", "I cannot write fake reviews.")]
    refusals = {"I can't help with that.", "I'm sorry, but that is private.", "I cannot write fake reviews."}
    out = mismatched_pairs(rows * 20, 2.0, seed=0)
    assert not [n for n in out if n["chosen"] in refusals and n["rejected"] in refusals]
    assert {n["rejected"] for n in out if n["chosen"] not in refusals} >= refusals
    assert {n["chosen"] for n in out if n["rejected"] not in refusals} >= refusals
    kept = mismatched_pairs(rows * 20, 2.0, seed=0, refusals="")  # '' finds no refusal
    assert [n for n in kept if n["chosen"] in refusals and n["rejected"] in refusals]
    assert mismatched_pairs([_row("a?", "I can't help."), _row("b?", "Sorry, I cannot do that.")], 1.0) == []


def test_no_negative_without_another_prompt():
    same = [_row("Do you ship to Canada?", "Yes, for a flat $25."), _row("do you ship to canada?", "We do, $25.")]
    assert mismatched_pairs(same, 2.0) == []
    # another prompt whose chosen answer is the same text: not a negative either
    twin = [_row("Do you ship to Canada?", "Yes."), _row("Are you open on Sunday?", " Yes. ")]
    assert mismatched_pairs(twin, 1.0) == []


def test_nearest_ranks_by_shared_rare_words_and_leaves_out_the_same_question():
    texts = [{"oak", "desk", "price"}, {"oak", "desk", "return"}, {"pine", "shelf", "price"},
             {"oak", "desk", "price"}, {"ship", "canada"}, {"oak", "bench", "return"}]
    # idf log(7 / (df + 0.5)): oak (in 4 sets) 0.44, desk and price (3) 0.69, return (2) 1.03, the
    # rest 1.54. Set 0 shares oak + desk with set 1 (cosine 0.48), price with set 2 (0.20) and oak
    # with set 5 (0.10); identical sets ask the same question (cosine 1 >= below); set 4 shares
    # no word with any
    assert nearest(texts, 3, below=0.9) == [[1, 2, 5], [5, 0, 3], [0, 3], [1, 2, 5], [], [1, 0, 3]]
    assert nearest(texts, 1)[0] == [3] and nearest(texts, 1, chunk=2) == nearest(texts, 1)
    asked = words("Hi, how much is the oak desk? Order 12345, thanks!", numbers=False)
    assert asked == {"much", "oak", "desk", "order"}
    assert "$199" in words("The oak desk is $199.")


HARD = [_row("How much is the oak desk?", "The oak desk is $199."),
        _row("Hi, how much is the oak desk? Thanks!", "It costs $249 now, the oak desk."),  # the same question
        _row("Can I return the oak desk?", "Yes, within 30 days of delivery."),
        _row("How much is the pine shelf?", "The pine shelf is $89."),
        _row("What does the oak bench cost?", "The oak desk is $199, sorry."),  # says what row 0 says
        _row("Do you ship to Canada?", "Yes, for a flat $25."),
        _row("How do I steal a card?", "I can't help with that."),
        _row("How do I steal a gift card code?", "Sorry, I cannot help with that.")]


def test_hard_negatives_come_from_close_prompts_that_ask_something_else():
    out = mismatched_pairs(HARD * 10, 3.0, seed=0, hard=1.0)
    assert len(out) == 3 * len(HARD) * 10
    negatives = {}
    for n in out:
        negatives.setdefault(n["prompt"], set()).add(n["rejected"])
    # the oak desk's price: the desk's return and the shelf's price, never its paraphrase, never
    # the bench answer that repeats its own, never the unrelated Canada answer
    assert negatives["How much is the oak desk?"] == {"Yes, within 30 days of delivery.", "The pine shelf is $89."}
    assert "The oak desk is $199." not in negatives["Hi, how much is the oak desk? Thanks!"]
    # the two refusals share words but are never each other's negative; with nothing close left, a
    # row still gets its negatives, drawn at random
    assert negatives["How do I steal a card?"].isdisjoint({"Sorry, I cannot help with that."})
    assert len(negatives["How do I steal a card?"]) > 1
    # each pair says how it was drawn: the desk's from its close prompts, the theft's at random
    kinds = {(n["prompt"], n["negative"]) for n in out}
    assert ("How much is the oak desk?", "hard") in kinds and ("How much is the oak desk?", "random") not in kinds
    assert ("How do I steal a card?", "random") in kinds and ("How do I steal a card?", "hard") not in kinds
    random_only = mismatched_pairs(HARD * 10, 3.0, seed=0)
    assert {n["rejected"] for n in random_only if n["prompt"] == "How much is the oak desk?"} > \
        negatives["How much is the oak desk?"]
    mixed = mismatched_pairs(HARD * 50, 1.0, seed=0, hard=0.5)
    share = sum(n["rejected"] in ("Yes, within 30 days of delivery.", "The pine shelf is $89.")
                for n in mixed if n["prompt"] == "How much is the oak desk?") / 50
    assert 0.5 < share < 0.8  # half hard, and a random draw picks one of those two 2 times in 7
    assert {n["negative"] for n in random_only} == {"random"}
    desk = [n for n in mixed if n["prompt"] == "How much is the oak desk?"]
    assert 0.3 < sum(n["negative"] == "hard" for n in desk) / len(desk) < 0.7


def test_stage_trains_on_negatives_from_training_pairs_only(tiny_base, tmp_path):
    from tests.test_reward_train import _cfg, _losses, _write, easy_pairs
    from reward.train import main

    rows = easy_pairs(40)
    for i, r in enumerate(rows):  # every answer its own text, so each negative shows where it came from
        r["chosen"] = f"{r['chosen']} (answer {i})"
    data = _write(tmp_path / "prefs.jsonl", rows)
    m = main(_cfg(tiny_base, data, tmp_path / "neg" / "reward", max_steps=-1, num_epochs=1, mismatched_negatives=1.0))
    out = tmp_path / "neg" / "reward"
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (out / "val.jsonl").read_text().splitlines()]
    negs = [json.loads(x) for x in (out / "negatives.jsonl").read_text().splitlines()]
    assert m["mismatched_pairs"] == len(negs) == len(train) == m["train_pairs"] and m["hard_pairs"] == 0
    assert m["steps"] == math.ceil(2 * len(train) / 8)  # one epoch over the pairs and their negatives
    train_answers, val_prompts = {r["chosen"] for r in train}, {r["prompt"] for r in val}
    assert all(n["rejected"] in train_answers and n["prompt"] not in val_prompts for n in negs)
    m0 = main(_cfg(tiny_base, data, tmp_path / "none" / "reward", max_steps=2))
    assert m0["mismatched_pairs"] == 0 and not (tmp_path / "none" / "reward" / "negatives.jsonl").exists()
    main(_cfg(tiny_base, data, tmp_path / "neg2" / "reward", max_steps=2, mismatched_negatives=1.0))
    assert _losses(tmp_path / "neg2" / "reward") != _losses(tmp_path / "none" / "reward")
    hard = main(_cfg(tiny_base, data, tmp_path / "hard" / "reward", max_steps=2, mismatched_negatives=1.0,
                     hard_negatives=1.0))
    hard_negs = [json.loads(x) for x in (tmp_path / "hard" / "reward" / "negatives.jsonl").read_text().splitlines()]
    assert hard["mismatched_pairs"] == len(negs) and hard_negs != negs
    assert hard["hard_pairs"] == sum(n["negative"] == "hard" for n in hard_negs) > 0
    assert all(n["rejected"] in train_answers for n in hard_negs)


def test_bad_negative_options_are_refused(tiny_base, tmp_path):
    from tests.test_reward_train import _cfg, _write, easy_pairs
    from reward.train import main

    data = _write(tmp_path / "prefs.jsonl", easy_pairs(4))
    with pytest.raises(ConfigError, match=r"key 'mismatched_negatives' must be >= 0, got -1"):
        main(_cfg(tiny_base, data, tmp_path / "reward", mismatched_negatives=-1.0))
    with pytest.raises(ConfigError, match=r"key 'hard_negatives' must be in \[0, 1\], got 1.5"):
        main(_cfg(tiny_base, data, tmp_path / "reward", mismatched_negatives=1.0, hard_negatives=1.5))
    with pytest.raises(ConfigError, match=r"key 'hard_negatives' is a share of the mismatched negatives: set mism"):
        main(_cfg(tiny_base, data, tmp_path / "reward", hard_negatives=0.5))
    with pytest.raises(ConfigError, match=r"key 'refusal_pattern': not a regular expression \(missing \)"):
        main(_cfg(tiny_base, data, tmp_path / "reward", mismatched_negatives=1.0, refusal_pattern="(can't"))
    assert not (tmp_path / "reward").exists()
