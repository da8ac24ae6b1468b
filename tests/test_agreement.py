"""Tests for collect/agreement.py against published values, hand arithmetic and slow
reference implementations written straight from the definitions."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from collect.agreement import (LEVELS, agreement_report, annotator_agreement, bootstrap_ci,
                               counts_from_labels, flag_annotators, fleiss_kappa,
                               gold_accuracy, krippendorff_alpha, landis_koch,
                               position_bias)

# Fleiss (1971) worked example as reproduced on Wikipedia ("Fleiss' kappa"):
# 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])

# Krippendorff's alpha example (Wikipedia "Krippendorff's alpha"): 3 coders x 15 units.
N = np.nan
KRIPP_DATA = np.array([
    [N, N, N, N, N, 3, 4, 1, 2, 1, 1, 3, 3, N, 3],
    [1, N, 2, 1, 3, 3, 4, 3, N, N, N, N, N, N, N],
    [N, N, 2, 1, 3, 4, 4, N, 2, 1, 1, 3, 3, N, 4]])


# ------------------------------------------------------------------------------ Fleiss


def test_fleiss_published_example():
    r = fleiss_kappa(FLEISS_TABLE)
    assert r["defined"] and r["n_items"] == 10 and r["n_raters"] == 14
    assert r["p_bar"] == pytest.approx(0.378022, abs=1e-6)
    assert r["p_e"] == pytest.approx(0.212755, abs=1e-6)
    assert r["kappa"] == pytest.approx(0.209931, abs=1e-6)


def test_fleiss_two_by_two_by_hand():
    """[[7,1],[3,5]], n = 8 raters, N = 2 items.

    p = (10/16, 6/16) -> P_e = 0.390625 + 0.140625 = 0.53125 = 17/32.
    P_1 = (49 + 1 - 8) / 56 = 42/56, P_2 = (9 + 25 - 8) / 56 = 26/56 -> P_bar = 34/56 = 17/28.
    kappa = (17/28 - 17/32) / (15/32) = (17/224) / (15/32) = 17/105 = 0.1619047...
    """
    r = fleiss_kappa([[7, 1], [3, 5]])
    assert r["p_e"] == pytest.approx(17 / 32, abs=1e-12)
    assert r["p_bar"] == pytest.approx(17 / 28, abs=1e-12)
    assert r["kappa"] == pytest.approx(17 / 105, abs=1e-12)
    assert r["kappa"] == pytest.approx(0.161905, abs=1e-6)


def test_fleiss_three_categories_by_hand():
    """[[6,1,0],[0,7,0]], n = 7 raters, N = 2 items.

    p = (6/14, 8/14, 0) -> P_e = (36 + 64) / 196 = 25/49.
    P_1 = (36 + 1 - 7) / 42 = 5/7, P_2 = (49 - 7) / 42 = 1 -> P_bar = 6/7.
    kappa = (6/7 - 25/49) / (24/49) = (17/49) / (24/49) = 17/24 = 0.708333...
    """
    r = fleiss_kappa([[6, 1, 0], [0, 7, 0]])
    assert r["p_e"] == pytest.approx(25 / 49, abs=1e-12)
    assert r["p_bar"] == pytest.approx(6 / 7, abs=1e-12)
    assert r["kappa"] == pytest.approx(17 / 24, abs=1e-12)
    assert r["kappa"] == pytest.approx(0.708333, abs=1e-6)


def test_fleiss_rejects_unequal_raters_naming_the_row():
    table = FLEISS_TABLE.copy()
    table[3, 0] += 1  # item 3 now has 15 ratings, the others 14
    with pytest.raises(ValueError, match=r"row 3 has 15") as err:
        fleiss_kappa(table)
    assert "krippendorff_alpha" in str(err.value)


@pytest.mark.parametrize("bad", [[[1, -1], [0, 0]], [[1.5, 0.5], [1, 1]], [1, 2, 3]])
def test_fleiss_rejects_malformed_tables(bad):
    with pytest.raises(ValueError):
        fleiss_kappa(bad)


@pytest.mark.parametrize("table, reason", [
    ([[5, 0, 0], [5, 0, 0], [5, 0, 0]], "one category"),  # everyone always says the same
    (np.zeros((0, 3)), "no items"),
    ([[1, 0], [0, 1]], "fewer than 2 raters"),
])
def test_fleiss_undefined_cases_do_not_crash(table, reason):
    r = fleiss_kappa(table)
    assert not r["defined"] and math.isnan(r["kappa"]) and reason in r["reason"]


def test_fleiss_matches_statsmodels_on_random_tables():
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(7)
    for _ in range(20):
        n_items, n_raters, k = rng.integers(2, 60), rng.integers(2, 12), rng.integers(2, 7)
        labels = rng.integers(0, k, size=(n_items, n_raters))
        table = counts_from_labels(labels, range(k))
        ours = fleiss_kappa(table)["kappa"]
        theirs = inter_rater.fleiss_kappa(table, method="fleiss")
        assert ours == pytest.approx(theirs, abs=1e-12)


# ------------------------------------------------------------------ counts_from_labels


def test_counts_from_labels_arrays_and_lists():
    labels = np.array([["a", "b", "a"], ["tie", "tie", "tie"]])
    expected = [[2, 1, 0, 0], [0, 0, 3, 0]]
    cats = ["a", "b", "tie", "both_bad"]
    np.testing.assert_array_equal(counts_from_labels(labels, cats), expected)
    np.testing.assert_array_equal(counts_from_labels(labels.tolist(), cats), expected)
    ragged = [[1, 2, None], [5, float("nan"), 5, 5]]  # None / nan are missing ratings
    np.testing.assert_array_equal(counts_from_labels(ragged, [1, 2, 3, 4, 5]),
                                  [[1, 1, 0, 0, 0], [0, 0, 0, 0, 3]])
    with_nan = np.array([[1.0, np.nan], [2.0, 2.0]])
    np.testing.assert_array_equal(counts_from_labels(with_nan, [1, 2]), [[1, 0], [0, 2]])


def test_counts_from_labels_rejects_unknown_label():
    with pytest.raises(ValueError, match="'c'"):
        counts_from_labels(np.array([["a", "c"]]), ["a", "b"])
    with pytest.raises(ValueError, match="item row 1"):
        counts_from_labels([["a"], ["a", "zz"]], ["a", "b"])


# ------------------------------------------------------------------------ Krippendorff


def test_krippendorff_published_example():
    assert krippendorff_alpha(KRIPP_DATA, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(KRIPP_DATA, "interval") == pytest.approx(0.810845, abs=1e-6)


def slow_alpha(data, level):
    """Krippendorff (2011) straight from the definition, with loops and no numpy tricks."""
    units = []
    for u in range(len(data[0])):
        vals = [row[u] for row in data if not math.isnan(row[u])]
        if len(vals) >= 2:
            units.append(vals)
    values = sorted({v for vals in units for v in vals})
    o = {(c, k): 0.0 for c in values for k in values}
    for vals in units:
        for i, j in itertools.permutations(range(len(vals)), 2):
            o[vals[i], vals[j]] += 1.0 / (len(vals) - 1)
    n_c = {c: sum(o[c, k] for k in values) for c in values}
    n = sum(n_c.values())

    def delta2(c, k):
        if level == "nominal":
            return 0.0 if c == k else 1.0
        if level == "interval":
            return (c - k) ** 2
        if level == "ratio":
            return 0.0 if c + k == 0 else ((c - k) / (c + k)) ** 2
        lo, hi = min(c, k), max(c, k)  # ordinal: sum_{g=c..k} n_g - (n_c + n_k) / 2
        return (sum(n_c[g] for g in values if lo <= g <= hi) - (n_c[c] + n_c[k]) / 2) ** 2

    d_o = sum(o[c, k] * delta2(c, k) for c in values for k in values) / n
    d_e = sum(n_c[c] * n_c[k] * delta2(c, k) for c in values for k in values) / (n * (n - 1))
    return 1.0 - d_o / d_e


@pytest.mark.parametrize("seed", range(6))
def test_krippendorff_matches_slow_reference_with_missing(seed):
    rng = np.random.default_rng(seed)
    n_raters, n_units = rng.integers(2, 6), rng.integers(5, 40)
    truth = rng.integers(1, 6, size=n_units)
    noise = rng.integers(-1, 2, size=(n_raters, n_units)) * (rng.random((n_raters, n_units)) < 0.4)
    data = np.clip(truth + noise, 1, 5).astype(float)
    data[rng.random(data.shape) < 0.3] = np.nan  # missing ratings, some units unpairable
    for level in LEVELS:
        assert krippendorff_alpha(data, level) == pytest.approx(slow_alpha(data, level),
                                                                abs=1e-10), level


def test_krippendorff_sparse_path_matches_reference(monkeypatch):
    """Many distinct values take the sparse coincidence path; force it on small data."""
    import collect.agreement as agreement
    monkeypatch.setattr(agreement, "_DENSE_CELLS", 0)
    rng = np.random.default_rng(5)
    data = np.round(rng.normal(3.0, 1.0, size=(4, 25)) ** 2, 1)  # many distinct, >= 0
    data[rng.random(data.shape) < 0.3] = np.nan
    for level in LEVELS:
        assert krippendorff_alpha(data, level) == pytest.approx(slow_alpha(data, level),
                                                                abs=1e-10), level
    assert krippendorff_alpha(KRIPP_DATA, "nominal") == pytest.approx(0.691358, abs=1e-6)


def test_krippendorff_ordinal_reference_on_uneven_values():
    """Ordinal depends on ranks and marginals only, not on spacing: non-integer values with
    gaps must agree with the reference and with the same data relabelled 1..V."""
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 4, size=(4, 30)).astype(float)
    codes[rng.random(codes.shape) < 0.25] = np.nan
    spaced = np.where(np.isnan(codes), np.nan, np.array([0.5, 2.0, 2.25, 9.0])[
        np.nan_to_num(codes).astype(int)])
    ours = krippendorff_alpha(spaced, "ordinal")
    assert ours == pytest.approx(slow_alpha(spaced, "ordinal"), abs=1e-10)
    assert ours == pytest.approx(krippendorff_alpha(codes + 1, "ordinal"), abs=1e-12)


def test_krippendorff_nominal_relation_to_fleiss_by_hand():
    """With complete data (n raters on each of N items), D_o = 1 - P_bar and
    D_e = Nn/(Nn - 1) (1 - P_e), so alpha = 1 - (Nn - 1)/(Nn) * (1 - kappa).

    Table [[7,1],[3,5]]: kappa = 17/105 (see above), Nn = 16,
    alpha = 1 - (15/16)(88/105) = 1 - 1320/1680 = 3/14 = 0.2142857...
    """
    data = np.array([[0] * 7 + [1], [0] * 3 + [1] * 5], dtype=float).T  # (8 raters, 2 items)
    assert krippendorff_alpha(data, "nominal") == pytest.approx(3 / 14, abs=1e-12)


def test_krippendorff_nominal_relation_to_fleiss_on_random_complete_data():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(2000, 5))  # (N items, n raters)
    labels[:1000, 1:] = labels[:1000, :1]  # half the items unanimous: kappa well above 0
    kappa = fleiss_kappa(counts_from_labels(labels, range(4)))["kappa"]
    nn = labels.size
    expected = 1 - (nn - 1) / nn * (1 - kappa)
    assert krippendorff_alpha(labels.T.astype(float), "nominal") == pytest.approx(expected,
                                                                                 abs=1e-12)


def test_krippendorff_undefined_and_dropped_units():
    assert math.isnan(krippendorff_alpha([[3.0, 3.0], [3.0, 3.0]], "interval"))  # one value
    assert math.isnan(krippendorff_alpha([[1.0, N], [N, 2.0]], "nominal"))  # none pairable
    assert math.isnan(krippendorff_alpha(np.empty((3, 0)), "ordinal"))
    # a unit rated by one coder only is dropped, so it cannot change alpha
    extra = np.hstack([KRIPP_DATA, [[5.0], [N], [N]]])
    assert krippendorff_alpha(extra, "interval") == krippendorff_alpha(KRIPP_DATA, "interval")


def test_krippendorff_rejects_bad_input():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(KRIPP_DATA, "cardinal")
    with pytest.raises(ValueError, match="non-negative"):
        krippendorff_alpha([[-1.0, 2.0], [1.0, 2.0]], "ratio")
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha([1.0, 2.0], "nominal")


# --------------------------------------------------------------------------- bootstrap


def kappa_of(table):
    return fleiss_kappa(table)["kappa"]


def test_bootstrap_deterministic_and_contains_estimate():
    a = bootstrap_ci(kappa_of, FLEISS_TABLE, n_boot=500, seed=1)
    b = bootstrap_ci(kappa_of, FLEISS_TABLE, n_boot=500, seed=1)
    c = bootstrap_ci(kappa_of, FLEISS_TABLE, n_boot=500, seed=2)
    assert a == b and a != c
    assert a["estimate"] == pytest.approx(0.209931, abs=1e-6)
    assert a["low"] < a["estimate"] < a["high"]
    assert a["n_undefined"] == 0


def test_bootstrap_counts_undefined_resamples():
    # Resampling only the unanimous items gives P_e = 1: those resamples are nan.
    table = np.array([[4, 0], [4, 0], [2, 2]])
    r = bootstrap_ci(kappa_of, table, n_boot=200, seed=0)
    assert 0 < r["n_undefined"] < 200 and np.isfinite(r["low"]) and np.isfinite(r["high"])


# ---------------------------------------------------------------------------- bands


@pytest.mark.parametrize("kappa, band", [
    (-0.01, "poor"), (0.0, "slight"), (0.20, "slight"), (0.2001, "fair"), (0.205, "fair"),
    (0.40, "fair"), (0.41, "moderate"), (0.60, "moderate"), (0.61, "substantial"),
    (0.80, "substantial"), (0.805, "almost perfect"), (1.0, "almost perfect"),
    (float("nan"), "undefined"),
])
def test_landis_koch_boundaries(kappa, band):
    assert landis_koch(kappa) == band


def test_landis_koch_rejects_above_one():
    with pytest.raises(ValueError):
        landis_koch(1.5)


# ----------------------------------------------------------------------- annotators


def test_annotator_agreement_by_hand():
    """Item 1: x=a, y=a, z=b. x vs others {a, b}: tie, skipped; y likewise; z vs {a, a}:
    majority a, a miss. Item 2: x=a, y=b: each one's only other voter disagrees, a miss.
    Item 3: x alone: nobody else voted, skipped. Item 4: all b: a hit for everyone.
    Item 5: x=b, y=b, z=a: x and y see a tie, skipped; z sees {b, b}, a miss.
    So x: 1 of 2 (items 2, 4), y: 1 of 2 (items 2, 4), z: 1 of 3 (items 1, 4, 5)."""
    votes = [(1, "x", "a"), (1, "y", "a"), (1, "z", "b"),
             (2, "x", "a"), (2, "y", "b"),
             (3, "x", "a"),
             (4, "x", "b"), (4, "y", "b"), (4, "z", "b"),
             (5, "x", "b"), (5, "y", "b"), (5, "z", "a")]
    r = annotator_agreement(votes)
    assert r["x"] == {"share": 0.5, "n": 2}
    assert r["y"] == {"share": 0.5, "n": 2}
    assert r["z"] == {"share": pytest.approx(1 / 3, abs=1e-12), "n": 3}


def test_annotator_agreement_skips_only_voter():
    r = annotator_agreement([(1, "solo", "a")])
    assert r["solo"]["n"] == 0 and math.isnan(r["solo"]["share"])


def test_duplicate_votes_are_rejected():
    with pytest.raises(ValueError, match="voted twice"):
        annotator_agreement([(1, "x", "a"), (1, "x", "b")])


def simulated_votes(seed=0, n_items=200):
    """Four careful annotators (85% right) and one careless one (uniform random)."""
    rng = np.random.default_rng(seed)
    cats = ["a", "b", "tie", "both_bad"]
    truth = rng.integers(0, 4, size=n_items)
    votes = []
    for item in range(n_items):
        for ann in ["ann1", "ann2", "ann3", "ann4", "careless"]:
            if ann != "careless" and rng.random() < 0.85:
                label = truth[item]
            else:
                label = rng.integers(0, 4)
            votes.append((f"item{item}", ann, cats[label]))
    gold = {f"item{i}": cats[truth[i]] for i in range(0, n_items, 5)}
    return votes, gold, cats


def test_careless_annotator_is_flagged():
    votes, gold, _ = simulated_votes()
    per = annotator_agreement(votes)
    assert flag_annotators(per) == ["careless"]
    assert all(per[a]["share"] > 0.8 for a in ["ann1", "ann2", "ann3", "ann4"])
    acc = gold_accuracy(votes, gold)
    assert all(acc[a]["n"] == 40 for a in acc)
    assert flag_annotators(acc) == ["careless"]
    # too few items is too little evidence
    assert flag_annotators(per, min_items=10_000) == []


def test_gold_accuracy_by_hand():
    votes = [(1, "x", "a"), (2, "x", "b"), (3, "x", "a"), (1, "y", "b")]
    r = gold_accuracy(votes, {1: "a", 2: "a"})
    assert r["x"] == {"share": 0.5, "n": 2} and r["y"] == {"share": 0.0, "n": 1}


# ----------------------------------------------------------------------- position bias


def test_position_bias_by_hand_and_against_scipy():
    """9 left wins of 10: P(X >= 9) = (C(10,9) + C(10,10)) / 2^10 = 11/1024, two-sided
    (symmetric at p = 0.5) doubles it: 22/1024 = 0.021484375."""
    r = position_bias(9, 10)
    assert r["share"] == 0.9
    assert r["p_value"] == pytest.approx(22 / 1024, abs=1e-12)
    assert r["p_value"] == pytest.approx(stats.binomtest(9, 10, 0.5).pvalue, abs=1e-12)
    assert position_bias(60, 100)["p_value"] == pytest.approx(
        stats.binomtest(60, 100, 0.5).pvalue, abs=1e-12)
    assert math.isnan(position_bias(0, 0)["p_value"])
    with pytest.raises(ValueError):
        position_bias(5, 3)


# ----------------------------------------------------------------------------- report


def test_report_uses_fleiss_with_equal_raters():
    votes, _, cats = simulated_votes(n_items=60)
    r = agreement_report(votes, cats, n_boot=100)
    table = counts_from_labels([[v[2] for v in votes[i:i + 5]] for i in range(0, 300, 5)], cats)
    assert r["method"] == "fleiss_kappa" and r["raters_per_item"] == 5
    assert r["value"] == pytest.approx(fleiss_kappa(table)["kappa"], abs=1e-12)
    assert r["ci"][0] <= r["value"] <= r["ci"][1]
    assert r["band"] == landis_koch(r["value"])


def test_report_falls_back_to_krippendorff_and_adds_levels():
    # KRIPP_DATA as votes: unequal raters per unit -> Krippendorff nominal.
    votes = [(u, f"coder{c}", int(KRIPP_DATA[c, u]))
             for c in range(3) for u in range(15) if not np.isnan(KRIPP_DATA[c, u])]
    r = agreement_report(votes, [1, 2, 3, 4], levels=("ordinal", "interval"), n_boot=50)
    assert r["method"] == "krippendorff_alpha_nominal" and r["raters_per_item"] is None
    assert r["value"] == pytest.approx(0.691358, abs=1e-6)
    assert r["alpha"]["interval"]["value"] == pytest.approx(0.810845, abs=1e-6)
    assert r["alpha"]["ordinal"]["value"] == pytest.approx(
        krippendorff_alpha(KRIPP_DATA, "ordinal"), abs=1e-12)
    # unit 0 has a single rating; units 1 and 13 have none, so they never appear as items
    assert r["n_items_dropped"] == 1 and r["n_items"] == 12


def test_report_without_pairable_items_does_not_crash():
    for votes in ([], [(1, "x", "a"), (2, "y", "b")]):
        r = agreement_report(votes, ["a", "b"], levels=("ordinal",), n_boot=20)
        assert math.isnan(r["value"]) and r["band"] == "undefined" and r["n_items"] == 0
        assert math.isnan(r["alpha"]["ordinal"]["value"])


def test_report_rejects_label_outside_categories():
    with pytest.raises(ValueError, match="not one of the categories"):
        agreement_report([(1, "x", "a"), (1, "y", "maybe")], ["a", "b"])
    with pytest.raises(ValueError, match="interval alpha needs numeric labels"):
        agreement_report([(1, "x", "a"), (1, "y", "b")], ["a", "b"], levels=("interval",))
