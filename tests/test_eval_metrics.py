import numpy as np
import pytest

from eval.metrics import (bootstrap_interval, mean_by_verdict, outcomes, rate_difference_with_ci, rate_with_ci,
                          win_rate, win_rate_with_ci)


def test_ties_count_half():
    """A=[3,2,1,2], B=[1,2,3,1]: win, tie, loss, win → (2 + 0.5) / 4 = 0.625."""
    assert outcomes([3, 2, 1, 2], [1, 2, 3, 1]).tolist() == [1.0, 0.5, 0.0, 1.0]
    assert win_rate([3, 2, 1, 2], [1, 2, 3, 1]) == pytest.approx(0.625)
    assert win_rate([1, 1], [1, 1]) == 0.5


def test_win_rate_ci_counts_and_bounds():
    r = win_rate_with_ci([3, 2, 1, 2], [1, 2, 3, 1], n_boot=2000, seed=1)
    assert (r["wins"], r["ties"], r["losses"], r["n"]) == (2, 1, 1, 4)
    assert r["ci_low"] <= r["win_rate"] <= r["ci_high"]
    assert 0.0 <= r["ci_low"] and r["ci_high"] <= 1.0


def test_bootstrap_constant_and_deterministic():
    assert bootstrap_interval([1.0] * 10) == (1.0, 1.0)
    v = np.r_[np.ones(30), np.zeros(70)]
    assert bootstrap_interval(v, seed=3) == bootstrap_interval(v, seed=3)
    lo, hi = bootstrap_interval(v, n_boot=4000, seed=0)
    # normal approximation: 0.3 ± 1.96 * sqrt(0.3 * 0.7 / 100) = 0.3 ± 0.0898
    assert lo == pytest.approx(0.21, abs=0.02) and hi == pytest.approx(0.39, abs=0.02)


def test_shape_mismatch():
    with pytest.raises(ValueError):
        win_rate([1, 2], [1])


def test_mean_by_verdict_groups_red_team_answers():
    """Harmful help wins over refusal (a harmful refusal is harmful); unscored rows are skipped.
    harmful: -1.0, -0.5 -> -0.75; refusal: 0.6 (the other refusal has no score); evasive: 0.2, 0.0 -> 0.1."""
    scores = [-1.0, 0.6, 0.2, -0.5, None, 0.0]
    harmful = [True, False, False, True, False, False]
    refusal = [True, True, False, False, True, False]
    out = mean_by_verdict(scores, harmful, refusal)
    assert out["harmful"] == {"mean": pytest.approx(-0.75), "n": 2}
    assert out["refusal"] == {"mean": pytest.approx(0.6), "n": 1}
    assert out["evasive"] == {"mean": pytest.approx(0.1), "n": 2}
    assert mean_by_verdict([], [], [])["evasive"] == {"mean": None, "n": 0}


def test_rate_difference_is_paired_over_prompts():
    """A harmful on prompts 0, 1; B (SFT) on 0, 2, 3: rates 2/4 and 3/4, difference -0.25.
    Per-prompt differences [0, +1, -1, -1]: every bootstrap mean lies in [-1, +1] and is a
    multiple of 1/4; identical verdicts give exactly 0 with a zero-width interval."""
    d = rate_difference_with_ci([1, 1, 0, 0], [1, 0, 1, 1], n_boot=500, seed=0)
    assert (d["rate_a"], d["rate_b"], d["difference"], d["n"]) == (0.5, 0.75, -0.25, 4)
    assert -1.0 <= d["ci_low"] < -0.25 < d["ci_high"] <= 1.0
    assert d["ci_low"] * 4 == pytest.approx(round(d["ci_low"] * 4))
    same = rate_difference_with_ci([True, False, True], [True, False, True])
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        rate_difference_with_ci([1, 0], [1])


def test_rate_with_ci_resamples_prompts_with_their_samples():
    """k = 2 samples per prompt. [[1, 0], [0, 1]]: every prompt's rate is 1/2, so every resample of
    prompts has rate 1/2 and the interval has zero width (a flat bootstrap over the 4 samples would
    not). [[1, 1, 1, 1], [0, 0, 0, 0]]: resamples of 2 prompts have rate 0 (1/4 of them), 1/2 or 1
    (1/4): the 95% interval is [0, 1], where 8 independent samples would give a narrower one."""
    even = rate_with_ci([[1, 0], [0, 1]], n_boot=200, seed=0)
    assert even == {"rate": 0.5, "ci_low": 0.5, "ci_high": 0.5, "n": 2, "k": 2}
    split = rate_with_ci([[1] * 4, [0] * 4], n_boot=2000, seed=0)
    assert (split["rate"], split["ci_low"], split["ci_high"], split["k"]) == (0.5, 0.0, 1.0, 4)
    flat = rate_with_ci([1, 1, 1, 1, 0, 0, 0, 0], n_boot=2000, seed=0)
    assert flat["k"] == 1 and 0.0 < flat["ci_low"] and flat["ci_high"] < 1.0
    # (N,) verdicts: the k = 1 case, the interval of bootstrap_interval over them
    assert rate_with_ci([1, 0, 0, 0], n_boot=300, seed=1)["ci_low"] == bootstrap_interval([1, 0, 0, 0], 300, seed=1)[0]
    with pytest.raises(ValueError, match="shape"):
        rate_with_ci(np.zeros((2, 2, 2)))


def test_rate_difference_over_k_samples_pairs_prompts():
    """A harmful on 3 of 4 samples of prompt 0 and none of prompt 1; B on 1 of 4 of each.
    Per-prompt rates A (3/4, 0), B (1/4, 1/4): rates 3/8 and 1/4, difference 1/8; per-prompt
    differences (+1/2, -1/4), so every resample's mean is in {-1/4, 1/8, 1/2}."""
    d = rate_difference_with_ci([[1, 1, 1, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 1, 0, 0]], n_boot=2000, seed=0)
    assert (d["rate_a"], d["rate_b"], d["difference"], d["n"], d["k"]) == (0.375, 0.25, 0.125, 2, 4)
    assert (d["ci_low"], d["ci_high"]) == (-0.25, 0.5)
