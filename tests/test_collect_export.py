"""collect/ export: hand-built votes → exact pairs, margins, agreement and exclusions."""
import math

import pytest

from collect.assign import add_items, side_swapped
from collect.export import build_pairs, export_preferences
from collect.review import decide, flag_output
from collect.store import Assignment, User, open_store
from collect.summary import agreement_summary
from collect.votes import shown_choice, submit_vote
from core.io import read_jsonl
from core.records import ASPECTS, read_preferences

VOTERS = ("x1", "x2", "x3")


def rating(quality, harm=1):
    return dict.fromkeys(ASPECTS, 3) | {"quality": quality, "harmfulness": harm}


def force_vote(store, name, item_id, choice, qa, qb, harm_a=1, harm_b=1):
    return vote_with(store, name, item_id, choice, rating(qa, harm_a), rating(qb, harm_b))


def vote_with(store, name, item_id, choice, a, b):
    """Assign the item to `name` (with the real side coin) and vote through submit_vote,
    translating the canonical answer into what the annotator would have clicked."""
    swapped = side_swapped(0, item_id, name)
    with store.write() as s:
        s.add(Assignment(item_id=item_id, annotator=name, swapped=swapped))
    left, right = (b, a) if swapped else (a, b)
    return submit_vote(store, name, item_id, shown_choice(choice, swapped), left, right)


@pytest.fixture
def store(tmp_path):
    st = open_store(tmp_path / "annotations.db")
    with st.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash="-") for n in VOTERS)
        s.add(User(name="rev", role="reviewer", password_hash="-"))
    add_items(st, [{"id": f"i{k}", "prompt": f"p{k}", "response_a": f"A{k}",
                    "response_b": f"B{k}"} for k in range(10)]
              + [{"id": "g0", "prompt": "pg", "response_a": "Ag", "response_b": "Bg",
                  "is_gold": True, "gold_choice": "a"}])
    votes = {  # item: [(choice, quality a, quality b), ...] one per voter
        "i0": [("a", 5, 2), ("a", 4, 3), ("b", 2, 4)],
        "i1": [("b", 2, 4), ("b", 3, 5), ("b", 1, 3)],
        "i2": [("tie", 3, 3), ("tie", 3, 3), ("a", 4, 3)],
        "i3": [("both_bad", 1, 1), ("both_bad", 1, 2), ("b", 1, 2)],
        "i4": [("a", 4, 2), ("b", 2, 4)],
        "g0": [("a", 5, 1), ("b", 1, 5), ("a", 5, 1)],
    }
    for item, vs in votes.items():
        for name, (choice, qa, qb) in zip(VOTERS, vs):
            force_vote(st, name, item, choice, qa, qb)
    yield st
    st.close()


def test_pairs_exact_values(store):
    rows, stats = build_pairs(store)
    by_id = {r["item_id"]: r for r in rows}
    assert sorted(by_id) == ["i0", "i1"]
    i0 = by_id["i0"]
    # majority a (2 of 3); quality gaps a - b per voter: 3, 1, -2 → mean 2/3, x 0.25
    assert (i0["prompt"], i0["chosen"], i0["rejected"]) == ("p0", "A0", "B0")
    assert i0["margin"] == pytest.approx(0.25 * 2 / 3, abs=1e-6)
    assert i0["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert i0["n_votes"] == 3 and i0["origin"] == "votes"
    assert i0["aspects_chosen"]["quality"] == pytest.approx((5 + 4 + 2) / 3, abs=1e-4)
    assert i0["aspects_rejected"]["quality"] == pytest.approx((2 + 3 + 4) / 3, abs=1e-4)
    assert i0["aspects_chosen"]["relevance"] == 3.0
    i1 = by_id["i1"]
    # unanimous b; gaps b - a: 2, 2, 2 → 0.25 x 2
    assert (i1["chosen"], i1["rejected"], i1["margin"], i1["agreement"]) == ("B1", "A1", 0.5, 1.0)
    assert stats["excluded"] == {"gold": 1, "review_only": 0, "no_votes": 5, "too_few_votes": 0,
                                 "tie": 1, "both_bad": 1, "split": 1, "low_agreement": 0,
                                 "harmful_chosen": 0}
    assert (stats["n_items"], stats["n_pairs"]) == (11, 2)


def test_filters_min_agreement_and_min_votes(store):
    rows, stats = build_pairs(store, min_agreement=0.7, min_votes=3)
    assert [r["item_id"] for r in rows] == ["i1"]
    assert stats["excluded"]["low_agreement"] == 1  # i0 at 2/3
    assert stats["excluded"]["too_few_votes"] == 1  # i4 has 2 votes
    assert stats["excluded"]["split"] == 0


def test_harmful_never_chosen(store):
    for item in ("i5", "i6", "i7"):
        for name in VOTERS:
            force_vote(store, name, item, "a", 4, 2, harm_a=5 if item != "i7" else 1,
                       harm_b=5 if item == "i7" else 1)
    decide(store, "rev", "i5", "a", "confirm_harmful", category="fraud")
    decide(store, "rev", "i6", "a", "reference_answer", reference_answer="I can't help with that.")
    decide(store, "rev", "i7", "b", "confirm_harmful", category="fraud")  # the rejected side
    rows, stats = build_pairs(store)
    by_id = {r["item_id"]: r for r in rows}
    assert "i5" not in by_id and stats["excluded"]["harmful_chosen"] == 1
    assert (by_id["i6"]["chosen"], by_id["i6"]["rejected"], by_id["i6"]["origin"]) == \
        ("I can't help with that.", "A6", "reviewer")
    assert by_id["i6"]["aspects_chosen"] is None and by_id["i6"]["margin"] == 1.0
    assert (by_id["i7"]["chosen"], by_id["i7"]["rejected"]) == ("A7", "B7")
    harmful = {"A5", "A6", "B7"}
    assert not harmful & {r["chosen"] for r in rows}
    # a later dismissal supersedes the confirmation
    decide(store, "rev", "i5", "a", "dismiss")
    assert "i5" in {r["item_id"] for r in build_pairs(store)[0]}


def test_both_bad_exports_the_less_harmful_response(store, tmp_path):
    """Votes (choice, quality a, quality b, harm a, harm b) for x1, x2, x3.
    i5: both bad x3, harm a (5, 4, 5) -> 14/3, b (1, 2, 1) -> 4/3: gap 10/3 >= 1, b chosen;
        quality gaps b - a = 1 each -> margin 0.25.
    i6: both bad x2 + a; harm a (2, 2, 1) -> 5/3, b (1, 1, 1) -> 1: gap 2/3 < 1, dropped;
        at min_harm_gap 0.5 b is chosen with agreement 2/3.
    i7: both bad x3, a less harmful (1 vs 4) but a reviewer confirmed a harmful: dropped.
    i8: both bad x3, harmfulness never rated on b: no gap, dropped."""
    for name, vote in zip(VOTERS, [(1, 2, 5, 1), (1, 2, 4, 2), (1, 2, 5, 1)]):
        force_vote(store, name, "i5", "both_bad", *vote)
    for name, choice, ha in zip(VOTERS, ("both_bad", "both_bad", "a"), (2, 2, 1)):
        force_vote(store, name, "i6", choice, 2, 2, harm_a=ha, harm_b=1)
    for name in VOTERS:
        force_vote(store, name, "i7", "both_bad", 1, 1, harm_a=1, harm_b=4)
        vote_with(store, name, "i8", "both_bad", rating(1, 1), {"quality": 1})
    flag_output(store, "i7", "a", reason="eval audit")  # in the queue (the annotators rated b harmful)
    decide(store, "rev", "i7", "a", "confirm_harmful", category="fraud")
    rows, stats = build_pairs(store)
    by_id = {r["item_id"]: r for r in rows}
    assert sorted(by_id) == ["i0", "i1", "i5"]
    i5 = by_id["i5"]
    assert (i5["chosen"], i5["rejected"], i5["origin"], i5["agreement"]) == ("B5", "A5", "both_bad_harm", 1.0)
    assert i5["harm_gap"] == pytest.approx(10 / 3, abs=1e-4) and i5["min_harm_gap"] == 1.0
    assert i5["margin"] == 0.25
    assert i5["aspects_chosen"]["harmfulness"] == pytest.approx(4 / 3, abs=1e-4)
    assert i5["aspects_rejected"]["harmfulness"] == pytest.approx(14 / 3, abs=1e-4)
    # i3 (no harm gap), i6 (gap 2/3) and i8 (b unrated) stay out; i7's safer side is unsafe
    assert stats["excluded"]["both_bad"] == 3 and stats["excluded"]["harmful_chosen"] == 1
    assert (stats["from_votes"], stats["from_both_bad"], stats["min_harm_gap"]) == (2, 1, 1.0)

    rows, stats = build_pairs(store, min_harm_gap=0.5)
    i6 = {r["item_id"]: r for r in rows}["i6"]
    assert (i6["chosen"], i6["rejected"], i6["agreement"]) == ("B6", "A6", pytest.approx(2 / 3, abs=1e-6))
    assert i6["harm_gap"] == pytest.approx(2 / 3, abs=1e-4) and i6["min_harm_gap"] == 0.5
    assert stats["excluded"]["both_bad"] == 2
    assert build_pairs(store, min_harm_gap=4.5)[1]["from_both_bad"] == 0  # above the scale: off

    out = tmp_path / "collect" / "preferences.jsonl"
    export_preferences(store, out, n_boot=20)
    assert {r["item_id"] for r in read_preferences(out)} == {"i0", "i1", "i5"}  # the reward reader accepts it
    assert "1 from \"both bad\" votes by harmfulness" in (out.parent / "README.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["export", "--min_harm_gap", "0"], "export: --min_harm_gap 0.0: must be above 0"),
    (["export", "--min_agreement", "2"], "export: --min_agreement 2.0: must be in [0, 1]"),
    (["export", "--min_votes", "0"], "export: --min_votes 0: must be at least 1"),
    (["serve", "--overlap", "0"], "serve: --overlap 0: must be at least 1"),
    (["serve", "--gold_rate", "1"], "serve: --gold_rate 1.0: must be in [0, 1)"),
    (["generate", "--top_p", "0"], "generate: --top_p 0.0: must be in (0, 1]"),
    (["generate", "--round", "0"], "generate: --round 0: must be at least 1"),
    (["generate", "--pairs_per_prompt", "0"], "generate: --pairs_per_prompt 0: must be at least 1"),
    (["serve", "--lease_minutes", "-5"], "serve: --lease_minutes -5.0: must be 0 (no limit) or more"),
    (["serve", "--lease_minutes", "abc"],
     "serve: argument --lease_minutes: invalid float value: 'abc' (--help lists the options)")])
def test_cli_refuses_options_out_of_range_before_any_work(tmp_path, capsys, argv, message):
    """One line, exit 2, and nothing opened or served: no store is created."""
    from collect.cli import main

    assert main(argv + ["--run", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"rlhf collect {message}"
    assert not (tmp_path / "collect").exists()


def test_export_files_and_card(tmp_path, store):
    out = tmp_path / "collect" / "preferences.jsonl"
    stats = export_preferences(store, out, n_boot=50)
    rows = read_jsonl(out)
    assert [r["item_id"] for r in rows] == ["i0", "i1"]
    assert len(read_preferences(out)) == 2  # the reward stage's reader accepts it
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "margin", "agreement", "n_votes",
                            "aspects_chosen", "aspects_rejected", "item_id", "round", "origin"}
    card = (tmp_path / "collect" / "README.md").read_text()
    assert card.startswith("---\n") and "data_files: preferences.jsonl" in card
    assert "pairs exported: 2" in card and "| tie | 1 |" in card and "| split | 1 |" in card
    assert "krippendorff_alpha_nominal" in card  # 3 votes on most items, 2 on i4
    # the card travels with the data: annotators numbered, their account names left out
    assert "| annotator 1 |" in card and "| annotator 3 |" in card
    assert not any(f"| {name} |" in card for name in VOTERS)
    assert stats["card"].endswith("README.md")
    assert sorted(p.name for p in out.parent.iterdir()) == ["README.md", "preferences.jsonl"]


def test_agreement_summary_values(store):
    s = agreement_summary(store, n_boot=20)
    assert s["n_votes"] == 17 and s["n_gold_votes"] == 3
    assert s["choice"]["method"] == "krippendorff_alpha_nominal"
    assert s["choice"]["n_items"] == 5  # gold left out
    # gold g0 answer a: x1 a (right), x2 b (wrong), x3 a (right)
    gold = {n: s["annotators"][n]["gold_accuracy"] for n in VOTERS}
    assert gold == {"x1": {"share": 1.0, "n": 1}, "x2": {"share": 0.0, "n": 1},
                    "x3": {"share": 1.0, "n": 1}}
    # x3 vs the others' majority: i0 (a,a) said b → no; i1 b → yes; i2 (tie,tie) said a → no;
    # i3 (both_bad x2) said b → no; i4 has only x1, x2 → x3 did not vote there
    assert s["annotators"]["x3"]["agreement"] == {"share": 0.25, "n": 4}
    assert s["flagged"] == []  # too few items to single anyone out
    assert set(s["aspects"]) == set(ASPECTS)
    assert not math.isnan(s["aspects"]["quality"]["alpha"]["interval"]["value"])

    # the admin's table: the choice per item; each rating per response, with its interval alpha
    from collect.app_admin import AGREEMENT_HEADERS, agreement_rows

    rows = {r[0]: dict(zip(AGREEMENT_HEADERS, r)) for r in agreement_rows(s)}
    assert rows["choice"]["rated"] == "5 items" and rows["choice"]["interval alpha [95% CI]"] == "-"
    quality = s["aspects"]["quality"]
    assert rows["quality"]["rated"] == f"{quality['n_items']} responses"
    a = quality["alpha"]["interval"]
    assert rows["quality"]["interval alpha [95% CI]"] == f"{a['value']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"


# Votes with aspects left unrated (None): {item: [(choice, aspects a, aspects b)] for x1, x2, x3}
MIXED = {
    "m0": [("a", {"quality": 5, "relevance": 4}, {"quality": 2, "relevance": 2}),
           ("a", {"quality": 4, "relevance": 4}, {}),
           ("a", {}, {})],
    "m1": [("b", {}, {})] * 3,
    "m2": [("a", {"quality": 4, "relevance": 5}, {"quality": 2, "relevance": 1}),
           ("a", {"quality": 4, "relevance": 4}, {"quality": 2, "relevance": 1}),
           ("a", {"quality": 4}, {})],
}


@pytest.fixture
def mixed(tmp_path):
    st = open_store(tmp_path / "mixed.db")
    with st.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash="-") for n in VOTERS)
    add_items(st, [{"id": i, "prompt": f"p{i}", "response_a": f"A{i}", "response_b": f"B{i}"}
                   for i in MIXED])
    for item, vs in MIXED.items():
        for name, (choice, a, b) in zip(VOTERS, vs):
            vote_with(st, name, item, choice, a, b)
    yield st
    st.close()


def test_export_means_and_margin_over_given_ratings(tmp_path, mixed):
    """m0 chosen a: quality a (5, 4, -) -> 4.5, relevance a (4, 4, -) -> 4.0, b (2, -, -) -> 2.0
    each; only x1 rated the quality of both sides: gap 5 - 2 = 3, margin 0.25 x 3 = 0.75.
    m1: nobody rated anything -> no aspect means (null) and margin 0.0.
    m2 chosen a: quality a (4, 4, 4) -> 4.0, relevance a (5, 4, -) -> 4.5, b quality (2, 2, -)
    -> 2.0, relevance (1, 1, -) -> 1.0; gaps 2, 2 (x3 rated only a) -> margin 0.5.
    The other five aspects were never rated and are absent, not 3."""
    rows, stats = build_pairs(mixed)
    by_id = {r["item_id"]: r for r in rows}
    assert stats["n_pairs"] == 3
    m0, m1, m2 = by_id["m0"], by_id["m1"], by_id["m2"]
    assert (m0["chosen"], m0["agreement"], m0["n_votes"]) == ("Am0", 1.0, 3)
    assert m0["aspects_chosen"] == {"quality": 4.5, "relevance": 4.0}
    assert m0["aspects_rejected"] == {"quality": 2.0, "relevance": 2.0}
    assert m0["margin"] == 0.75
    assert (m1["chosen"], m1["aspects_chosen"], m1["aspects_rejected"], m1["margin"]) == \
        ("Bm1", None, None, 0.0)
    assert m2["aspects_chosen"] == {"quality": 4.0, "relevance": 4.5}
    assert m2["aspects_rejected"] == {"quality": 2.0, "relevance": 1.0}
    assert m2["margin"] == 0.5
    out = tmp_path / "preferences.jsonl"
    export_preferences(mixed, out, n_boot=20)
    back = {r["item_id"]: r for r in read_preferences(out)}  # the reward stage's reader
    assert back["m0"]["aspects_chosen"] == {"quality": 4.5, "relevance": 4.0}
    assert back["m1"]["aspects_chosen"] is None and back["m1"]["margin"] == 0.0


def test_agreement_leaves_missing_ratings_out(mixed):
    """Units are item/side; units with one rating are dropped (m0/b for both aspects).

    quality: m0/a {5, 4}, m2/a {4, 4, 4}, m2/b {2, 2}: 2 and 3 raters -> Krippendorff.
    Coincidences: o_45 = o_54 = 1 (m0/a), o_44 = 6 pairs x 1/2 = 3 (m2/a), o_22 = 2 (m2/b);
    n_2 = 2, n_4 = 4, n_5 = 1, n = 7.
    nominal: 1 - (n - 1) sum_{c!=k} o_ck / sum_{c!=k} n_c n_k = 1 - 6 x 2 / (49 - 21) = 4/7.
    interval: D_e = 2 (n_2 n_4 2^2 + n_2 n_5 3^2 + n_4 n_5 1^2) = 2 (32 + 18 + 4) = 108,
    observed 2 x 1^2 = 2: alpha = 1 - 6 x 2 / 108 = 8/9.
    relevance: m0/a {4, 4}, m2/a {5, 4}, m2/b {1, 1}: 2 raters on every unit -> Fleiss.
    p_j (1..5) = (2, 0, 0, 3, 1) / 6; P_i = 1, 0, 1 -> P_bar = 2/3;
    P_e = 1/9 + 1/4 + 1/36 = 7/18; kappa = (2/3 - 7/18) / (11/18) = 5/11.
    Entries: 3 items x 2 sides x 3 voters = 18; given 8 quality and 7 relevance ratings."""
    s = agreement_summary(mixed, n_boot=20)
    q, r = s["aspects"]["quality"], s["aspects"]["relevance"]
    assert q["method"] == "krippendorff_alpha_nominal"
    assert q["value"] == pytest.approx(4 / 7)
    assert q["alpha"]["interval"]["value"] == pytest.approx(8 / 9)
    assert (q["n_votes"], q["n_missing"], q["n_items"], q["n_items_dropped"]) == (8, 10, 3, 1)
    assert r["method"] == "fleiss_kappa" and r["raters_per_item"] == 2
    assert r["value"] == pytest.approx(5 / 11)
    assert (r["n_votes"], r["n_missing"], r["n_items"], r["n_items_dropped"]) == (7, 11, 3, 1)
    never = s["aspects"]["correctness"]  # rated by nobody: undefined, not an error
    assert never["n_votes"] == 0 and never["n_missing"] == 18 and math.isnan(never["value"])
    assert s["choice"]["method"] == "fleiss_kappa" and s["choice"]["value"] == 1.0


def test_conversation_items_are_shown_whole_and_exported_as_messages(tmp_path):
    from collect.assign import next_item

    sys_msg = {"role": "system", "content": "You are the shop's assistant."}
    turns = [sys_msg, {"role": "user", "content": "Kettles?"}, {"role": "assistant", "content": "Yes."},
             {"role": "user", "content": "Cheapest?"}]
    st = open_store(tmp_path / "annotations.db")
    with st.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash="-") for n in VOTERS)
    add_items(st, [{"id": "conv", "prompt": turns, "response_a": "The Basic.", "response_b": "Water."},
                   {"id": "one", "prompt": [{"role": "user", "content": "Hi?"}], "response_a": "Hello.",
                    "response_b": "Go away."}])
    view = next_item(st, "x1", gold_rate=0.0)  # the app's annotator page shows view.prompt
    assert view.item_id == "conv"
    assert view.prompt == "System: You are the shop's assistant.\n\nUser: Kettles?\n\nAssistant: Yes.\n\nUser: Cheapest?"
    for item in ("conv", "one"):
        force_vote(st, "x3", item, "a", 4, 2)
    out = tmp_path / "preferences.jsonl"
    export_preferences(st, out, card=False)
    back = {r["item_id"]: r for r in read_preferences(out)}
    assert back["conv"]["prompt"] == turns and back["conv"]["chosen"] == "The Basic."
    assert back["one"]["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert {r["item_id"]: r["prompt"] for r in read_jsonl(out)}["one"] == "Hi?"  # plain items stay plain text
    st.close()


@pytest.mark.parametrize("command", ["report", "export"])
def test_reading_a_run_without_a_store_is_refused_and_creates_none(tmp_path, capsys, command):
    """A mistyped --run used to get a new empty store, zero counts (or an empty export) and exit 0."""
    from collect.cli import main

    run = tmp_path / "nope"
    assert main([command, "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"rlhf collect {command}: no annotation store at {run / 'collect' / 'annotations.db'}: check "
                   "--run / --db (`rlhf collect import` or `users add` creates one)")
    assert not run.exists()
