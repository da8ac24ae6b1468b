"""Rounds of the loop, piece by piece: where a round lives, which policy the next round's items
come from, the per-round export, the every-round pairs file, and eval's round-against-round
numbers on hand-made samples."""
from dataclasses import replace
from pathlib import Path

import pytest

from collect.assign import add_items, next_item
from collect.store import open_store
from collect.users import add_user
from collect.votes import submit_vote
from core.io import read_jsonl, write_json, write_jsonl
from core.records import RowProblem, validate_preference
from core.rounds import locate, make_round_dir, round_dir, rounds_up_to


def test_round_directories_link_the_shared_parts(tmp_path):
    root = tmp_path / "run"
    for part in ("base", "data", "sft"):
        (root / part).mkdir(parents=True)
        (root / part / "marker").write_text(part)
    assert round_dir(root, 1) == root and make_round_dir(root, 1) == root
    r3 = make_round_dir(root, 3)
    assert r3 == root / "rounds" / "3"
    for part in ("base", "data", "sft"):  # relative links: the run can move
        assert (r3 / part).is_symlink() and not (r3 / part).readlink().is_absolute()
        assert (r3 / part / "marker").read_text() == part
    assert make_round_dir(root, 3) == r3  # again: nothing changes
    assert locate(r3) == (root, 3) and locate(root) == (root, 1)
    assert rounds_up_to(r3) == [(1, root), (2, root / "rounds" / "2"), (3, r3)]
    assert rounds_up_to(root) == [(1, root)]
    with pytest.raises(ValueError):
        round_dir(root, 0)


def _eval_metrics(path, rates):
    write_json(path / "eval" / "metrics.json",
               {"win_rates": [{"a": a, "b": "sft", "judge": j, "decoding": d, "win_rate": w} for a, j, d, w in rates]})


def test_best_policy_prefers_people_then_the_reward_model_never_gold(tmp_path):
    from loop.rounds import best_policy

    _eval_metrics(tmp_path, [("dpo", "gold", "sampled", 0.9), ("ppo", "reward", "sampled", 0.7),
                             ("rloo", "reward", "sampled", 0.6), ("rloo", "reward", "greedy", 0.95),
                             ("dpo", "reward", "sampled", 0.5)])
    assert best_policy(tmp_path) == "ppo"  # reward-judged, sampled; gold's 0.9 is not looked at
    _eval_metrics(tmp_path, [("ppo", "reward", "sampled", 0.7), ("dpo", "human", "sampled", 0.55),
                             ("rloo", "human", "sampled", 0.52)])
    assert best_policy(tmp_path) == "dpo"
    assert best_policy(tmp_path, "rloo") == "rloo"
    from core.config import UserError

    with pytest.raises(UserError, match="eval"):
        best_policy(tmp_path / "nowhere")


def test_rivals_are_sft_then_the_best_of_two_rounds_back(tmp_path):
    from loop.rounds import rivals

    assert rivals(tmp_path, 2) == ["sft"]
    write_json(round_dir(tmp_path, 2) / "collect" / "metrics.json", {"policy": "ppo"})
    assert rivals(tmp_path, 3) == [str(tmp_path / "ppo"), "sft"]


def _store_with_two_rounds(path):
    store = open_store(str(path))
    add_user(store, "ann", "annotator", "a long enough password")
    items = [{"id": f"r{r}-{i}", "prompt": f"question {i}", "response_a": f"A{r}{i}", "response_b": f"B{r}{i}",
              "round": r} for r in (1, 2) for i in range(3)]
    add_items(store, items)
    while (view := next_item(store, "ann", overlap=1, gold_rate=0.0)) is not None:
        submit_vote(store, "ann", view.item_id, "left", {}, {})
    return store


def test_export_takes_one_round_and_the_pairs_file_keeps_every_round(tmp_path):
    from collect.export import build_pairs
    from loop.rounds import ALL_PAIRS, NEW_PAIRS, RoundCollectConfig, write_pairs

    root = tmp_path / "run"
    store = _store_with_two_rounds(root / "collect" / "annotations.db")
    try:
        rows, stats = build_pairs(store, round_no=2)
        assert sorted(r["item_id"] for r in rows) == ["r2-0", "r2-1", "r2-2"] and stats["n_items"] == 3
        assert len(build_pairs(store)[0]) == 6
    finally:
        store.close()
    first = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    cfg = RoundCollectConfig(run=str(make_round_dir(root, 2)), n_pairs=3, min_pairs=1, first_preferences=str(first))
    write_json(root / "rounds" / "2" / "collect" / "store_round.json", {"round": 2})  # as sample_items left it
    stats = write_pairs(cfg)
    assert (stats["n_pairs"], stats["n_pairs_all"]) == (3, 4)
    new = read_jsonl(root / "rounds" / "2" / "collect" / NEW_PAIRS)
    every = read_jsonl(root / "rounds" / "2" / "collect" / ALL_PAIRS)
    assert [r["round"] for r in new] == [2, 2, 2]
    assert [r["round"] for r in every] == [1, 2, 2, 2] and every[0]["chosen"] == "c"
    # the field survives validation, so the reward model's split files keep it
    assert validate_preference(every[1])["round"] == 2 and validate_preference(every[0] | {"round": None})["round"] is None
    for bad in (0, "2", True, 1.5):
        with pytest.raises(RowProblem, match="round"):
            validate_preference(every[1] | {"round": bad})


def _samples(policy, overall, responses, decoding="greedy"):
    return [{"policy": policy, "decoding": decoding, "set": "heldout", "prompt": f"q{i}", "response": r,
             "overall": o} for i, (o, r) in enumerate(zip(overall, responses))]


class LengthScorer:
    """A reward model that likes length."""

    def score(self, prompts, responses):
        return [float(len(r)) for r in responses]


def test_round_win_rates_from_both_rounds_samples(tmp_path):
    from eval.rounds import round_win_rates

    now = _samples("ppo", [4, 4, 2, 3], ["aaaa", "b", "cc", "d"])
    before = _samples("ppo", [3, 3, 3, 3], ["a", "bb", "c", "ddd"])
    rates = {(w["judge"], w["decoding"]): w for w in
             round_win_rates(now, before, {}, LengthScorer(), n_boot=200, seed=0)}
    assert set(rates) == {("gold", "greedy"), ("reward", "greedy")}
    gold = rates[("gold", "greedy")]  # wins, wins, loses, ties
    assert (gold["wins"], gold["losses"], gold["ties"], gold["win_rate"]) == (2, 1, 1, pytest.approx(0.625))
    reward = rates[("reward", "greedy")]  # the scorer re-scores both rounds: longer wins 2 of 4
    assert (reward["wins"], reward["losses"], reward["win_rate"]) == (2, 2, 0.5)
    assert 0 <= gold["style_controlled"]["win_rate"] <= 1 and gold["policy"] == "ppo"
    # no gold without gold scores on both sides; prompts only one round has are left out
    now[0]["overall"] = None
    rates = round_win_rates(now + _samples("dpo", [1], ["x"]), before, {}, None, n_boot=50, seed=0)
    assert rates == []


class Judge:
    def recognises(self, prompt):
        return True

    def score(self, prompt, response):
        return {"overall": 5.0 if "good" in response else 1.0}


def test_reward_accuracy_before_and_after_on_the_new_rounds_pairs(tmp_path):
    from eval.rounds import _accuracy, proxy_vs_gold

    rows = [{"prompt": "q", "chosen": "good long answer", "rejected": "bad"},
            {"prompt": "q", "chosen": "good", "rejected": "a much longer bad answer"}]
    assert _accuracy(LengthScorer(), rows, Judge()) == {"n": 2, "accuracy": 0.5, "accuracy_gold": 0.5,
                                                        "gold_pairs": 2}
    assert _accuracy(LengthScorer(), [], None) == {"n": 0}

    def policies(sft, ppo):
        return {name: {"sampled": {"rm_score": rm, "gold_overall": g}} for name, (rm, g) in
                (("sft", sft), ("ppo", ppo))}

    write_json(tmp_path / "eval" / "metrics.json", {"policies": policies((0.0, 3.0), (1.0, 3.5))})
    points = proxy_vs_gold([(1, tmp_path), (2, tmp_path / "r2")], current=policies((0.5, 3.0), (2.5, 3.2)))
    assert points == [{"round": 1, "policy": "ppo", "proxy_gain": 1.0, "gold_gain": 0.5},
                      {"round": 2, "policy": "ppo", "proxy_gain": 2.0, "gold_gain": 0.2}]


def test_annotators_get_the_newest_rounds_items_first(tmp_path):
    store = open_store(str(tmp_path / "a.db"))
    try:
        add_user(store, "ann", "annotator", "a long enough password")
        add_items(store, [{"id": f"old{i}", "prompt": "q", "response_a": "a", "response_b": "b"} for i in range(3)])
        add_items(store, [{"id": f"new{i}", "prompt": "q", "response_a": "a", "response_b": "b", "round": 2}
                          for i in range(2)])
        order = []
        while (view := next_item(store, "ann", overlap=1, gold_rate=0.0)) is not None:
            order.append(view.item_id)
            submit_vote(store, "ann", view.item_id, "left", {}, {})
        assert order == ["new0", "new1", "old0", "old1", "old2"]
    finally:
        store.close()


def test_a_later_rounds_fingerprint_leaves_the_run_directory_out(tmp_path):
    from core.config import DPOConfig
    from loop.runner import portable

    def round_two(top):
        return DPOConfig(run=str(top / "rounds" / "2"), sft=str(top / "dpo"),
                         data=str(top / "rounds" / "2" / "collect" / "preferences.jsonl"))

    a, b = portable(round_two(tmp_path / "a")), portable(round_two(tmp_path / "b"))
    assert a == b and (a.sft, a.data) == ("<run>/dpo", "<run>/rounds/2/collect/preferences.jsonl")


def test_the_printed_table_shows_the_round_comparison():
    from eval.table import _round_rows

    w = {"policy": "ppo", "judge": "gold", "decoding": "sampled", "win_rate": 0.61, "ci_low": 0.52, "ci_high": 0.7,
         "style_controlled": {"win_rate": 0.58, "ci_low": 0.5, "ci_high": 0.66}}
    acc = {"heldout": {"before": {"n": 40, "accuracy": 0.6, "accuracy_gold": 0.65},
                       "after": {"n": 40, "accuracy": 0.75}}}
    rows = _round_rows({"round": 2, "previous": 1, "win_rates": [w], "reward_on_new_items": acc})
    assert rows[0].startswith("round 2 vs round 1")
    assert rows[1].split() == ["ppo", "(gold,", "sampled)", "0.610", "[0.520,", "0.700]", "0.580", "[0.500,", "0.660]"]
    assert rows[2] == ("reward models on round 2's 40 held-out new pairs: round 1's 0.600, vs gold 0.650; "
                       "round 2's 0.750")
    assert _round_rows(None) == [] and _round_rows({"round": 2, "previous": 1}) == []


def test_a_new_attempt_at_a_round_takes_a_new_store_round(tmp_path):
    """Round 2's items from an attempt whose inputs have changed since keep their votes, under
    their own round number, and are never exported as the new attempt's."""
    from loop.rounds import RoundCollectConfig, forget_store_round, store_round

    root = tmp_path / "run"
    _store_with_two_rounds(root / "collect" / "annotations.db").close()  # rounds 1 and 2 exist
    out = make_round_dir(root, 2) / "collect"
    out.mkdir()
    cfg = RoundCollectConfig(run=str(root / "rounds" / "2"), n_pairs=3, min_pairs=1)
    assert store_round(cfg) == 3 and store_round(cfg) == 3  # kept while the attempt lasts
    forget_store_round(out, "interrupted")
    assert store_round(cfg) == 3
    forget_store_round(out, "stale")
    assert not (out / "store_round.json").exists()
    fresh = tmp_path / "fresh"
    open_store(str(fresh / "collect" / "annotations.db")).close()
    assert store_round(RoundCollectConfig(run=str(make_round_dir(fresh, 2)), n_pairs=3, min_pairs=1)) == 2


def test_later_rounds_take_their_own_options(tmp_path):
    """round_stages changes rounds 2 and later only (demo/sizes.py ROUNDS: the demo's DPO)."""
    from core.config import ConfigError, load_config
    from demo.config import DemoConfig
    from demo.pipeline import plan
    from loop.config import LoopConfig
    from loop.run import check, round_plan, stage_configs, Hooks

    st = {s.name: s for s in plan(load_config(DemoConfig, None, {"run": str(tmp_path / "d"), "quick": True,
                                                                  "rounds": 3}))}
    r1, r2 = vars(st["reward"].cfg), vars(st["reward@2"].cfg)
    assert {k for k in r1 if r1[k] != r2[k]} == {"run", "data"}  # as round 1, on its round's files
    assert st["ppo@2"].cfg.max_steps == st["ppo"].cfg.max_steps  # the rest as in round 1
    # the demo's round-2 DPO: every round's pairs, from round 1's adapter, lr 2e-4 and β 0.05
    d1, d2, d3 = st["dpo"], st["dpo@2"], st["dpo@3"]
    from demo.sizes import QUICK

    assert (d2.cfg.learning_rate, d2.cfg.beta) == (2e-4, 0.05)
    assert (d1.cfg.learning_rate, d1.cfg.beta) == (QUICK["dpo"]["learning_rate"], QUICK["dpo"]["beta"])
    assert Path(d2.cfg.data) == tmp_path / "d" / "rounds" / "2" / "collect" / "preferences_all.jsonl"
    assert Path(d2.cfg.sft) == tmp_path / "d" / "dpo" and Path(d3.cfg.sft) == tmp_path / "d" / "rounds" / "2" / "dpo"
    assert d2.inputs["preferences"] == tmp_path / "d" / "rounds" / "2" / "collect" / "preferences_all.jsonl"
    # the loop's default: round k's own pairs only
    cfg = LoopConfig(run=str(tmp_path / "n"), rounds=2)
    new = {s.name: s for s in round_plan(cfg, stage_configs(cfg), 2, Hooks(), None)}["dpo@2"]
    assert Path(new.cfg.data).name == "preferences.jsonl" and new.inputs["preferences"].name == "preferences.jsonl"
    # the reward model: from the backbone by default; with round_reward continue, from round k-1's
    plan2 = {s.name: s for s in round_plan(cfg, stage_configs(cfg), 2, Hooks(), None)}
    assert plan2["reward@2"].cfg.init == "" and "start" not in plan2["reward@2"].inputs
    cont = replace(cfg, round_reward="continue", rounds=3)
    r3 = {s.name: s for s in round_plan(cont, stage_configs(cont), 3, Hooks(), None)}["reward@3"]
    assert Path(r3.cfg.init) == tmp_path / "n" / "rounds" / "2" / "reward"
    assert r3.inputs["start"] == tmp_path / "n" / "rounds" / "2" / "reward" / "metrics.json"
    r2 = {s.name: s for s in round_plan(cont, stage_configs(cont), 2, Hooks(), None)}["reward@2"]
    assert Path(r2.cfg.init) == tmp_path / "n" / "reward"

    cfg = LoopConfig(run=str(tmp_path / "r"), rounds=2, round_stages={"reward": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"round_stages\.reward: unknown key 'bogus' for RewardConfig"):
        round_plan(cfg, stage_configs(cfg), 2, Hooks(), None)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for f in ("sft.jsonl", "p.jsonl"):
        (tmp_path / f).write_text("")
    bad = LoopConfig(run=str(tmp_path / "r"), model=str(model), sft=str(tmp_path / "sft.jsonl"),
                     prompts=str(tmp_path / "p.jsonl"), round_stages={"sft": {"max_steps": 1}})
    with pytest.raises(ConfigError, match=r"round_stages: unknown stage 'sft' \(one of collect, reward"):
        check(bad)
    with pytest.raises(ConfigError, match=r"--round_dpo_pairs 'every': must be new or all"):
        check(replace(bad, round_stages={}, round_dpo_pairs="every"))
    with pytest.raises(ConfigError, match=r"--round_reward 'again': must be anew or continue"):
        check(replace(bad, round_stages={}, round_reward="again"))
