"""eval/human.py: blind A/B items in the collect store, human win rates from votes."""
import dataclasses
import json
import math

import pytest
from sqlalchemy import select

from collect.assign import next_item
from collect.commands import store_for
from collect.store import Item, User
from collect.votes import submit_vote, undo_last, votes_of
from core.config import UserError
from core.records import ASPECTS
from eval.human import EMPTY, human_win_rates, send_ab
from eval.metrics import bootstrap_interval
from eval.style_control import style_controlled_win_rate

PROMPTS = [f"question {k}?" for k in range(5)]
FIRST = [f"first answer {k}" for k in range(5)]    # policy "sft"
SECOND = [f"second answer {k}" for k in range(5)]  # policy "ppo"
NAMES = ("sft", "ppo")
RATINGS = dict.fromkeys(ASPECTS, 3)
# Who each annotator prefers on each prompt: a policy, or tie / both_bad.
PLAN = {
    "question 0?": ("sft", "sft", "ppo"),       # sft 2, ppo 1         → sft wins the item
    "question 1?": ("ppo", "ppo", "tie"),       # sft 0.5, ppo 2.5     → loss
    "question 2?": ("sft", "tie", "both_bad"),  # sft 2, ppo 1         → win
    "question 3?": ("sft", "ppo", "tie"),       # sft 1.5, ppo 1.5     → tie
    "question 4?": ("tie", "tie", "both_bad"),  # 1.5 each             → tie
}
ANNOTATORS = ("ann1", "ann2", "ann3")


def _users(store, names):
    with store.write() as s:  # without the scrypt cost of add_user
        s.add_all(User(name=n, role="annotator", password_hash="scrypt$1$1$1$00$00") for n in names)


def _blind(view) -> bool:
    shown = json.dumps(dataclasses.asdict(view))
    return not any(name in shown for name in NAMES)


def _vote_all(store, annotator: str, k: int) -> int:
    """Annotator k votes the PLAN through the normal API, clicking by what is on screen."""
    n = 0
    while (view := next_item(store, annotator, overlap=3, gold_rate=0.0)) is not None:
        assert _blind(view), view
        want = PLAN[view.prompt][k]
        if want in NAMES:
            text = (FIRST if want == "sft" else SECOND)[PROMPTS.index(view.prompt)]
            assert text in (view.left, view.right)
            shown = "left" if view.left == text else "right"
        else:
            shown = want
        if (annotator, view.prompt) == ("ann1", "question 1?"):  # a changed mind: undo, revote
            submit_vote(store, annotator, view.item_id, "tie", RATINGS, RATINGS)
            undo_last(store, annotator)
        submit_vote(store, annotator, view.item_id, shown, RATINGS, RATINGS)
        n += 1
    return n


def test_send_ab_stores_blind_randomized_items_once(tmp_path):
    assert send_ab(tmp_path, "sft", "ppo", PROMPTS[:3], FIRST[:3], SECOND[:3]) == 3
    assert send_ab(tmp_path, "sft", "ppo", PROMPTS, FIRST, SECOND) == 2  # only the new ones
    assert send_ab(tmp_path, "sft", "ppo", PROMPTS, FIRST, SECOND) == 0
    store = store_for(tmp_path)
    with store.read() as s:
        items = list(s.scalars(select(Item)))
    assert len(items) == 5
    for it in items:
        assert not any(n in it.id for n in NAMES) and it.id.startswith("ab-")
        k = PROMPTS.index(it.prompt)
        assert {(it.source_a, it.response_a), (it.source_b, it.response_b)} == \
            {("sft", FIRST[k]), ("ppo", SECOND[k])}
        assert it.meta["ab_test"] == {"a": "sft", "b": "ppo", "round": 1}
    assert {it.source_a for it in items} == {"sft", "ppo"}  # the side is a per-item coin
    store.close()


def test_send_ab_checks_its_input_and_shows_blank_responses(tmp_path):
    with pytest.raises(UserError, match="two different policies"):
        send_ab(tmp_path, "sft", "sft", PROMPTS, FIRST, SECOND)
    with pytest.raises(UserError, match="5 prompts but 4 responses"):
        send_ab(tmp_path, "sft", "ppo", PROMPTS, FIRST[:4], SECOND)
    assert send_ab(tmp_path, "sft", "ppo", ["q?", "q?"], ["  ", "x"], ["y", "z"]) == 1
    store = store_for(tmp_path)
    with store.read() as s:
        (item,) = s.scalars(select(Item))
    assert {item.response_a, item.response_b} == {EMPTY, "y"}  # the first of a repeated prompt
    store.close()


def test_human_win_rates_from_votes_with_swapped_sides(tmp_path):
    """Per item majority (a tie or both_bad vote is half a vote for each policy):
    items 0 and 2 go to sft, item 1 to ppo, items 3 and 4 are ties (PLAN), so
    wins 2, ties 2, losses 1, win rate (2 + 2/2) / 5 = 0.6; the interval is the bootstrap
    of the per-item outcomes [1, 0, 1, 0.5, 0.5] (in the store's item order) with the same seed."""
    assert human_win_rates(tmp_path) == []  # no store at all
    send_ab(tmp_path, "sft", "ppo", PROMPTS, FIRST, SECOND, seed=4)
    assert human_win_rates(tmp_path) == []  # items, no votes
    store = store_for(tmp_path)
    _users(store, ANNOTATORS)
    assert [_vote_all(store, a, k) for k, a in enumerate(ANNOTATORS)] == [5, 5, 5]
    votes = votes_of(store)
    assert len(votes) == 15 and len(votes_of(store, include_inactive=True)) == 16
    assert {v.swapped for v in votes} == {True, False}  # some were shown b on the left
    with store.read() as s:
        items = list(s.scalars(select(Item).order_by(Item.created_at, Item.id)))
    store.close()
    # seed 4 puts ppo on side a of the decided items 0 and 2: a vote for side a is not
    # a vote for the first policy there
    assert [i.source_a for i in sorted(items, key=lambda i: i.prompt)] == \
        ["ppo", "sft", "ppo", "sft", "ppo"]

    (entry,) = human_win_rates(tmp_path, n_boot=500, seed=1)
    outcome = dict(zip(PROMPTS, [1.0, 0.0, 1.0, 0.5, 0.5]))
    lo, hi = bootstrap_interval([outcome[i.prompt] for i in items], n_boot=500, seed=1)
    style = entry.pop("style_controlled")
    assert entry == {"a": "sft", "b": "ppo", "judge": "human", "decoding": "sampled",
                     "win_rate": 0.6, "ci_low": lo, "ci_high": hi, "wins": 2, "ties": 2,
                     "losses": 1, "n": 5}
    assert lo < 0.6 < hi
    # fitted on the texts each item showed, sft's as A whichever side it was on: "first answer k"
    # is one character shorter than "second answer k", on every item
    ordered = [PROMPTS.index(i.prompt) for i in items]
    expected = style_controlled_win_rate([FIRST[k] for k in ordered], [SECOND[k] for k in ordered],
                                         [outcome[i.prompt] for i in items], n_boot=500, seed=1)
    assert style == expected and style["n"] == 5
    assert style["mean_difference"] == {"log_length": pytest.approx(math.log(15 / 16)), "opener": 0.0,
                                        "closing": 0.0, "list": 0.0}


def test_style_control_sees_a_blank_response_as_blank(tmp_path):
    """A blank answer is shown as EMPTY, but its style is that of "" (no length, no opener)."""
    send_ab(tmp_path, "sft", "ppo", ["q?"], ["  "], ["Hi! Yes."])
    store = store_for(tmp_path)
    _users(store, ["ann1"])
    view = next_item(store, "ann1", overlap=1, gold_rate=0.0)
    submit_vote(store, "ann1", view.item_id, "left" if view.left == "Hi! Yes." else "right", RATINGS, RATINGS)
    store.close()
    (entry,) = human_win_rates(tmp_path, n_boot=20)
    assert (entry["win_rate"], entry["style_controlled"]["n"]) == (0.0, 1)
    assert entry["style_controlled"]["mean_difference"] == {"log_length": pytest.approx(-math.log(9)),
                                                            "opener": -1.0, "closing": 0.0, "list": 0.0}


def test_annotate_page_in_the_app_is_blind(tmp_path):
    """The Gradio annotate page an annotator's browser gets shows no policy name."""
    from test_collect_app import PASSWORD, client, free_port

    from collect.app import build_app, launch
    from collect.app_common import AppConfig
    from collect.users import add_user

    send_ab(tmp_path, "sft", "ppo", PROMPTS, FIRST, SECOND)
    store = store_for(tmp_path)
    add_user(store, "ann1", "annotator", PASSWORD)
    app = build_app(store, AppConfig(overlap=3, gold_rate=0.0,
                                     export_path=str(tmp_path / "preferences.jsonl")))
    url = launch(app, store, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        page = client({"url": url.rstrip("/")}, "ann1").predict(api_name="/annotate_page")
        shown = json.dumps(page)
        assert page[2] in PROMPTS
        k = PROMPTS.index(page[2])
        assert FIRST[k] in shown and SECOND[k] in shown
        assert not any(n in shown for n in NAMES)
    finally:
        app.close()
        store.close()


def test_a_later_rounds_ab_items_and_win_rates_are_its_own(tmp_path):
    """`rlhf eval --to-collect` on round 2's directory (core/rounds.py) stores new items in the
    run's one store, though the policies have the same names as round 1's, and each round's human
    win rates count only its own items."""
    from core.rounds import make_round_dir

    root = tmp_path / "run"
    db = str(root / "collect" / "annotations.db")
    second = make_round_dir(root, 2)
    assert send_ab(root, "sft", "ppo", PROMPTS, FIRST, SECOND, db=db) == 5
    assert send_ab(second, "sft", "ppo", PROMPTS, FIRST, SECOND, db=db) == 5
    assert send_ab(second, "sft", "ppo", PROMPTS, FIRST, SECOND, db=db) == 0
    store = store_for(root, db)
    _users(store, ANNOTATORS)
    assert [_vote_all(store, a, k) for k, a in enumerate(ANNOTATORS)] == [10, 10, 10]
    with store.read() as s:
        rounds = sorted(i.meta["ab_test"]["round"] for i in s.scalars(select(Item)))
    store.close()
    assert rounds == [1] * 5 + [2] * 5
    for run in (root, second):
        (entry,) = human_win_rates(run, n_boot=50, db=db)
        assert (entry["n"], entry["win_rate"]) == (5, 0.6)
