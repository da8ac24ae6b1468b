"""eval/style_control.py: style features of hand-written answers, the logistic fit on hand-checkable
data, and synthetic judges whose taste is known (length only, content only, openers only)."""
import math

import numpy as np
import pytest
from scipy.special import expit

from eval.metrics import outcomes, win_rate_with_ci
from eval.style_control import FEATURES, style_controlled, style_controlled_win_rate, style_differences, style_features

FACT = "The oak bookshelf costs $649 and ships free."
N = 1000  # prompts of each synthetic judge
FILLER = ("Our team checks every order by hand.", "Delivery takes three to five days.",
          "You can track the parcel online.", "Returns are free within thirty days.")


def _answer(rng, n_filler: int, opener: bool = False, closing: bool = False) -> str:
    body = " ".join([FACT, *rng.choice(FILLER, size=n_filler)])
    return ("Happy to help! " if opener else "") + body + (" Hope this helps!" if closing else "")


@pytest.mark.parametrize("text, opener, closing, listed", [
    ("Hi! We open at 9am. Have a great day!", 1, 1, 0),
    ("We open at 9am.", 0, 0, 0),
    ("Sure thing! Here are the steps:\n1. Log in.\n2) Click returns.\nHope this helps!", 1, 1, 1),
    ("Options:\n- the oak shelf\n* the pine shelf", 0, 0, 1),
    ("  • a bullet after spaces", 0, 0, 1),
    ("Thanks for asking!", 1, 0, 0),  # one sentence: the opener, not also a closing
    ("Shirts cost $5. Let me know if you need anything else.", 0, 1, 0),
    ("Anything else you buy ships free. We open at 9.", 0, 0, 0),  # the pleasantry is not at the end
    ("Surely not. Othello is in stock.", 0, 0, 0),  # "sure" and "hello" inside other words
    ("Rated\n3.5 stars by 1990 buyers.", 0, 0, 0),  # a decimal starting a line is not a list
    ("Of course, the shelf is $649.\n\nThank you", 1, 1, 0),
])
def test_style_features_of_hand_written_answers(text, opener, closing, listed):
    f = style_features(text)
    assert f.tolist() == pytest.approx([math.log1p(len(text.strip())), opener, closing, listed], abs=1e-12)


def test_style_differences_are_a_minus_b():
    d = style_differences(["Hi! We open at 9.", "- a\n- b"], ["We open at 9.", "Hope this helps!"])
    assert d.shape == (2, len(FEATURES)) and FEATURES == ("log_length", "opener", "closing", "list")
    assert d[0].tolist() == pytest.approx([math.log(18) - math.log(14), 1, 0, 0])
    assert d[1].tolist() == pytest.approx([math.log(8) - math.log(17), 0, -1, 1])  # a lone closing counts
    with pytest.raises(ValueError, match="2 answers of A but 1 of B"):
        style_differences(["a", "b"], ["c"])


def test_without_style_differences_the_controlled_rate_is_the_raw_rate():
    """Same style on both sides (every difference 0): an intercept-only fit, sigmoid(b0) = the mean
    outcome, on the data and on each bootstrap resample, so the interval is the raw one too."""
    same = ["We open at 9am."] * 4
    o = outcomes([3, 2, 1, 2], [1, 2, 3, 1])  # win, tie, loss, win: (2 + 0.5) / 4
    raw = win_rate_with_ci([3, 2, 1, 2], [1, 2, 3, 1], n_boot=500, seed=3)
    s = style_controlled_win_rate(same, same, o, n_boot=500, seed=3)
    assert raw["win_rate"] == 0.625 and s["win_rate"] == pytest.approx(0.625, abs=1e-6)
    assert s["coefficients"]["intercept"] == pytest.approx(math.log(0.625 / 0.375), abs=1e-5)
    assert s["ci_low"] == pytest.approx(raw["ci_low"], abs=1e-6)
    assert s["ci_high"] == pytest.approx(raw["ci_high"], abs=1e-5)  # 1 - 3e-6: a resample A wins throughout
    assert {f: s["coefficients"][f] for f in FEATURES} == dict.fromkeys(FEATURES)  # never differ: n/a
    assert s["n"] == 4 and s["mean_difference"] == dict.fromkeys(FEATURES, 0.0)


def test_hand_checkable_fit_with_one_covariate():
    """Half the prompts A is styled (x = +1) and wins 9 of 10, half B is (x = -1) and A wins 5 of
    10. Unpenalised: b0 + b = log 9, b0 - b = 0, so b0 = b = log 3 and the controlled rate is
    sigmoid(log 3) = 0.75 while the raw rate is 0.7."""
    x = np.zeros((20, 4))
    x[:10, 1], x[10:, 1] = 1.0, -1.0
    y = np.array([1.0] * 9 + [0.0] + [1.0] * 5 + [0.0] * 5)
    s = style_controlled(x, y, n_boot=200, seed=0, l2=1e-9)
    assert y.mean() == 0.7
    assert s["win_rate"] == pytest.approx(0.75, abs=1e-6)
    assert s["coefficients"]["intercept"] == pytest.approx(math.log(3), abs=1e-5)
    assert s["coefficients"]["opener"] == pytest.approx(math.log(3), abs=1e-5)
    assert s["coefficients"]["log_length"] is None and s["coefficient_ci"]["opener"][0] > 0
    # the penalty shrinks the style coefficient toward 0 (and the controlled rate toward the raw one)
    shrunk = style_controlled(x, y, n_boot=200, seed=0, l2=5.0)
    assert 0 < shrunk["coefficients"]["opener"] < math.log(3) and 0.7 < shrunk["win_rate"] < 0.75
    # a tie is half a win and half a loss: 20 ties and no style effect give exactly 0.5
    assert style_controlled(x, np.full(20, 0.5), n_boot=50)["win_rate"] == pytest.approx(0.5, abs=1e-9)


def test_no_prompts_or_no_resamples_give_nan_and_bad_shapes_are_refused():
    empty = style_controlled_win_rate([], [], [], n_boot=100)
    assert math.isnan(empty["win_rate"]) and math.isnan(empty["ci_low"]) and empty["n"] == 0
    assert empty["coefficients"]["opener"] is None
    s = style_controlled_win_rate(["Hi! Yes.", "Yes."], ["Yes.", "Yes."], [1.0, 0.5], n_boot=0)
    assert 0.5 < s["win_rate"] < 0.75 and math.isnan(s["ci_low"]) and s["coefficient_ci"]["opener"] == [
        pytest.approx(float("nan"), nan_ok=True)] * 2
    with pytest.raises(ValueError, match=r"shape \(2, 3\) for 2 outcomes and 4 features"):
        style_controlled(np.zeros((2, 3)), [1.0, 0.0])


def _pairs(n: int, seed: int, policy_opener: float = 0.0, sft_opener: float = 0.0):
    """n prompts: the policy's answer pads the same fact with more filler sentences than SFT's on
    average; openers with the given probabilities."""
    rng = np.random.default_rng(seed)
    a = [_answer(rng, int(rng.integers(1, 5)), opener=rng.random() < policy_opener) for _ in range(n)]
    b = [_answer(rng, int(rng.integers(0, 3)), opener=rng.random() < sft_opener) for _ in range(n)]
    return rng, a, b


def test_a_judge_that_only_likes_length_is_controlled_to_a_coin_flip():
    """Same fact, more filler: a judge rewarding length only. Noisy, P(A wins) = sigmoid(3 * log(len
    A / len B)), the model the fit assumes; and strict, always the longer (a tie at equal length),
    separable data whose slope only the penalty keeps finite. (Seed 1; seeds 1-5 all pass.)"""
    rng, a, b = _pairs(N, seed=1)
    x = style_differences(a, b)
    noisy = (rng.random(N) < expit(3 * x[:, 0])).astype(float)
    s = style_controlled_win_rate(a, b, noisy, n_boot=1000, seed=0)
    raw = win_rate_with_ci(noisy, 1 - noisy, n_boot=1000, seed=0)
    assert raw["win_rate"] == pytest.approx(0.749) and raw["ci_low"] > 0.7  # A is longer, so A "wins"
    assert s["win_rate"] == pytest.approx(0.5, abs=0.05) and s["ci_low"] < 0.5 < s["ci_high"]
    assert s["coefficients"]["log_length"] == pytest.approx(3.0, abs=0.5)
    assert s["mean_difference"]["log_length"] == pytest.approx(0.52, abs=0.01)

    strict = outcomes(x[:, 0], np.zeros(N))
    s = style_controlled_win_rate(a, b, strict, n_boot=1000, seed=0)
    assert strict.mean() == pytest.approx(0.827)
    assert s["win_rate"] == pytest.approx(0.5, abs=0.06) and s["coefficients"]["log_length"] > 5


def test_a_judge_of_content_keeps_its_raw_rate():
    """A is longer and usually greets, but the judge only checks a hidden fact: A is right 75% of
    the time, B 40%; both right or both wrong is a tie."""
    rng, a, b = _pairs(N, seed=1, policy_opener=0.8, sft_opener=0.2)
    right_a, right_b = rng.random(N) < 0.75, rng.random(N) < 0.4
    y = outcomes(right_a.astype(float), right_b.astype(float))
    s = style_controlled_win_rate(a, b, y, n_boot=1000, seed=0)
    assert y.mean() == pytest.approx(0.675, abs=0.03)  # 0.5 + (0.75 - 0.4) / 2
    assert s["mean_difference"]["opener"] == pytest.approx(0.6, abs=0.05)  # A differs in style...
    assert s["win_rate"] == pytest.approx(y.mean(), abs=0.03)  # ...which the judge ignores
    assert abs(s["coefficients"]["log_length"]) < 0.3 and abs(s["coefficients"]["opener"]) < 0.3


def test_a_judge_of_openers_has_a_large_opener_coefficient_and_a_coin_flip_controlled_rate():
    """The judge picks the answer with the opener 90% of the time when only one has it, and
    calls a tie otherwise; A greets on 80% of prompts, B on 20%."""
    rng, a, b = _pairs(N, seed=1, policy_opener=0.8, sft_opener=0.2)
    x = style_differences(a, b)
    y = np.where(x[:, 1] == 0, 0.5, np.where(rng.random(N) < 0.9, x[:, 1] > 0, x[:, 1] < 0).astype(float))
    s = style_controlled_win_rate(a, b, y, n_boot=1000, seed=0)
    assert y.mean() == pytest.approx(0.74, abs=0.03)  # 0.5 + 0.5 * 0.8 * (0.64 - 0.04)
    assert s["win_rate"] == pytest.approx(0.5, abs=0.04) and s["ci_low"] < 0.5 < s["ci_high"]
    assert s["coefficients"]["opener"] == pytest.approx(math.log(9), abs=0.4)  # logit 0.9
    assert s["coefficient_ci"]["opener"][0] > 1.5
    assert abs(s["coefficients"]["log_length"]) < 0.3


def test_every_win_rate_of_the_eval_carries_its_style_controlled_rate():
    """eval.stage's win rates: dpo's answers are sft's plus a closing pleasantry on half the
    prompts, and the gold judge prefers exactly those (a tie elsewhere): raw 0.75, a closing
    coefficient the penalty keeps finite, and a controlled rate near 0.5. The reward model scored
    only the greedy answers, so it has no sampled entry."""
    from eval.stage import _win_rates

    plain = [f"We open at {k % 12 + 1}am on day {k}." for k in range(40)]
    dpo = [t + (" Hope this helps!" if k % 2 else "") for k, t in enumerate(plain)]
    gold = [3.0 + (k % 2) for k in range(40)]
    rows = {"sft": {"response": plain, "overall": [3.0] * 40, "rm_score": [0.0] * 40},
            "dpo": {"response": dpo, "overall": gold, "rm_score": [float(k % 2) for k in range(40)]}}
    results = {name: {"greedy": r, "sampled": {**r, "rm_score": [None] * 40}} for name, r in rows.items()}
    out = _win_rates(results, n_boot=200, seed=5)
    assert [(w["a"], w["b"], w["judge"], w["decoding"]) for w in out] == [
        ("dpo", "sft", "gold", "greedy"), ("dpo", "sft", "reward", "greedy"), ("dpo", "sft", "gold", "sampled")]
    for w in out:
        assert (w["win_rate"], w["wins"], w["ties"], w["losses"], w["n"]) == (0.75, 20, 20, 0, 40)
        assert w["style_controlled"] == style_controlled_win_rate(dpo, plain, outcomes(gold, [3.0] * 40),
                                                                  n_boot=200, seed=5)
    s = out[0]["style_controlled"]
    assert s["mean_difference"]["closing"] == 0.5 and s["coefficients"]["closing"] > 1
    assert s["coefficients"]["opener"] is None and s["win_rate"] < 0.6 < 0.75


def test_the_printed_table_shows_raw_and_style_controlled_side_by_side():
    from eval.stage import format_table

    style = {"win_rate": 0.4271, "ci_low": 0.3124, "ci_high": 0.5449, "n": 100,
             "coefficients": {"intercept": -0.3, "log_length": 2.371, "opener": 2.27, "closing": 1.92, "list": None}}
    m = {"policies": {}, "win_rates": [
        {"a": "dpo", "b": "sft", "judge": "gold", "decoding": "greedy", "win_rate": 0.71, "ci_low": 0.63,
         "ci_high": 0.785, "n": 100, "style_controlled": style},
        {"a": "dpo", "b": "sft", "judge": "human", "decoding": "sampled", "win_rate": 0.6, "ci_low": 0.4,
         "ci_high": 0.8, "n": 12}]}  # written before style control: n/a
    head, gold_row, human_row = format_table(m).splitlines()[1:]
    assert head.split() == ["win", "rate", "(ties", "count", "half)", "raw", "[95%", "CI]", "style-controlled",
                            "log_length", "opener", "closing", "list", "n"]
    assert gold_row.split() == ["dpo", "vs", "sft", "(gold,", "greedy)", "0.710", "[0.630,", "0.785]", "0.427",
                                "[0.312,", "0.545]", "+2.37", "+2.27", "+1.92", "n/a", "100"]
    assert human_row.split()[5:] == ["0.600", "[0.400,", "0.800]", "n/a", "n/a", "n/a", "n/a", "n/a", "12"]
