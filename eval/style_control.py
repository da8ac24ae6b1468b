"""Style-controlled win rates: how often policy A beats policy B once the judge's taste for style
(length, a friendly opener, a closing pleasantry, list markup) is taken out.

A judge that likes long or polite answers rewards a policy that learned to pad and greet, whether
or not its answers got better. Following Chatbot Arena's style control (Li et al. 2024, "Does
style matter?") and AlpacaEval's length-controlled win rate (Dubois et al. 2024), the judge's
per-prompt outcome (A vs B; 1 win, 0.5 tie, 0 loss) is fitted with a Bradley-Terry / logistic
model on the style differences x = f(A's answer) - f(B's answer):

    P(A beats B | x) = sigmoid(b0 + x . b)

A tie enters the likelihood as half a win and half a loss (a soft label of 0.5, the same as one
win and one loss of weight 0.5). The style-controlled win rate is the model's prediction with the
style differences set to zero, sigmoid(b0): the rate at which A would win if both answers had
the same style. The coefficients b say which style term the judge rewards (per unit of log
length ratio, or for having the opener/closing/list where the other answer has none).

The covariates are scaled to unit root-mean-square (not centred: zero must stay "same style") and
carry a small L2 penalty, which keeps the fit finite when a judge's choices are separable by style
(a judge that always picks the longer answer); the intercept carries a negligible one, so with no
style differences at all the controlled rate is the raw rate. Intervals bootstrap over prompts
with the seeded resampling of eval.metrics.bootstrap_interval, each resample a weighted refit
(all resamples fitted at once by Newton's method).

Features are judge- and domain-independent: plain regular expressions on the text.
"""
from __future__ import annotations

import re

import numpy as np
from scipy.special import expit

FEATURES = ("log_length", "opener", "closing", "list")
L2 = 1.0  # penalty on the scaled style coefficients (the log-likelihood is a sum over prompts)
L2_INTERCEPT = 1e-6  # keeps the intercept finite when A wins (or loses) every prompt

_OPENER_RE = re.compile(
    r"^\W*(hi|hello|hey|greetings|good (morning|afternoon|evening)|happy to help|glad to help|"
    r"thanks|thank you|great question|good question|sure thing|sure|of course|certainly|absolutely)\b",
    re.IGNORECASE)
_CLOSING_RE = re.compile(
    r"\b(have a (great|nice|good|lovely|wonderful) (day|evening|weekend)|hope (this|that|it) helps|"
    r"let me know|anything else|feel free to|happy to help|glad to help|thanks|thank you)\b", re.IGNORECASE)
_LIST_RE = re.compile(r"^[ \t]*([-*+\u2022]|\d{1,3}[.)])[ \t]+\S", re.MULTILINE)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")


def style_features(text: str) -> np.ndarray:
    """[log(1 + characters), opener, closing, list] of one answer; shape (4,).

    opener: the first sentence starts with a greeting or pleasantry ("Hi", "Sure thing!").
    closing: the last sentence is a pleasantry ("Hope this helps!"); a one-sentence answer that is
    already the opener has no separate closing. list: a line starts with a bullet or "1." / "1)".
    """
    text = text.strip()
    sentences = [s for s in _SENTENCE_END_RE.split(text) if s]
    opener = bool(_OPENER_RE.search(text))
    closing = bool(sentences) and bool(_CLOSING_RE.search(sentences[-1])) and (len(sentences) > 1 or not opener)
    return np.array([np.log1p(len(text)), opener, closing, bool(_LIST_RE.search(text))], dtype=float)


def style_differences(texts_a: list[str], texts_b: list[str]) -> np.ndarray:
    """f(A) - f(B) per prompt; shapes (N,), (N,) -> (N, 4), columns FEATURES."""
    if len(texts_a) != len(texts_b):
        raise ValueError(f"{len(texts_a)} answers of A but {len(texts_b)} of B")
    if not texts_a:
        return np.zeros((0, len(FEATURES)))
    return np.stack([style_features(a) - style_features(b) for a, b in zip(texts_a, texts_b)])


def _loss(beta, X, y, w, pen) -> np.ndarray:
    """Penalised soft-label logistic loss per fit: sum_n w (log(1 + e^z) - y z) + pen/2 beta^2.
    beta (B, D), X (N, D), y (N,), w (B, N) -> (B,)."""
    z = beta @ X.T  # (B, N)
    return (w * (np.logaddexp(0.0, z) - y * z)).sum(1) + 0.5 * (pen * beta**2).sum(1)


def fit_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray, pen: np.ndarray,
                 max_iter: int = 100, tol: float = 1e-12) -> np.ndarray:
    """Minimise _loss for B weightings at once by Newton's method with backtracking (the loss is
    strictly convex). X (N, D) with the intercept column, y (N,) in [0, 1], w (B, N) >= 0,
    pen (D,) > 0 -> beta (B, D)."""
    B, D = w.shape[0], X.shape[1]
    beta = np.zeros((B, D))
    for _ in range(max_iter):
        p = expit(beta @ X.T)  # (B, N)
        grad = ((p - y) * w) @ X + pen * beta  # (B, D)
        hess = np.einsum("bn,ni,nj->bij", w * p * (1 - p), X, X) + np.diag(pen)  # (B, D, D)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]  # (B, D)
        decrease = (grad * step).sum(1)  # the squared Newton decrement: twice the predicted drop
        done = decrease < tol
        if done.all():
            break
        f0, t = _loss(beta, X, y, w, pen), np.ones(B)
        for _ in range(40):  # halve each fit's step until the loss drops enough (Armijo)
            ok = done | (_loss(beta - t[:, None] * step, X, y, w, pen) <= f0 - 1e-4 * t * decrease)
            if ok.all():
                break
            t = np.where(ok, t, t / 2)
        beta = beta - np.where(done, 0.0, t)[:, None] * step
    return beta


def _design(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The intercept column and the covariates that vary, each scaled to unit root-mean-square.
    diffs (N, K) -> X (N, 1 + K'), kept column indices (K',), scales (K',)."""
    rms = np.sqrt((diffs**2).mean(0)) if len(diffs) else np.zeros(diffs.shape[1])
    kept = np.flatnonzero(rms > 1e-12)
    X = np.concatenate([np.ones((len(diffs), 1)), diffs[:, kept] / rms[kept]], axis=1)
    return X, kept, rms[kept]


def style_controlled(diffs, outcomes, n_boot: int = 1000, seed: int = 0, l2: float = L2,
                     features: tuple[str, ...] = FEATURES) -> dict:
    """Fit the judge's outcomes (N,) (1 win of A, 0.5 tie, 0 loss) on style differences (N, K).

    Returns {"win_rate": sigmoid(b0), "ci_low", "ci_high" (95% bootstrap over prompts),
    "coefficients": {"intercept", feature: b per original unit, None for a feature that never
    differs}, "coefficient_ci": {feature: [low, high]}, "mean_difference": {feature: mean of
    A - B}, "n"}."""
    x, y = np.asarray(diffs, dtype=float), np.asarray(outcomes, dtype=float)
    if x.shape != (len(y), len(features)):
        raise ValueError(f"style differences of shape {x.shape} for {len(y)} outcomes and {len(features)} features")
    nan, n = float("nan"), len(y)
    mean_diff = {f: float(x[:, j].mean()) if n else nan for j, f in enumerate(features)}
    if n == 0:
        return {"win_rate": nan, "ci_low": nan, "ci_high": nan,
                "coefficients": {"intercept": nan, **dict.fromkeys(features)},
                "coefficient_ci": dict.fromkeys(features), "mean_difference": mean_diff, "n": 0}
    X, kept, scale = _design(x)
    pen = np.r_[L2_INTERCEPT, np.full(len(kept), l2)]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # the resamples eval.metrics.bootstrap_interval draws
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    beta = fit_logistic(X, y, np.vstack([np.ones((1, n)), counts]), pen)  # row 0: the data itself
    beta[:, 1:] /= scale  # back to original units: per unit of each difference
    rates = expit(beta[1:, 0])
    coef, coef_ci = {"intercept": float(beta[0, 0]), **dict.fromkeys(features)}, dict.fromkeys(features)
    for j, k in enumerate(kept):
        coef[features[k]] = float(beta[0, 1 + j])
        coef_ci[features[k]] = _interval(beta[1:, 1 + j])
    lo, hi = _interval(rates)
    return {"win_rate": float(expit(beta[0, 0])), "ci_low": lo, "ci_high": hi, "coefficients": coef,
            "coefficient_ci": coef_ci, "mean_difference": mean_diff, "n": n}


def _interval(values: np.ndarray, alpha: float = 0.05) -> list[float]:
    """Percentile interval of bootstrap estimates; NaN without any (n_boot = 0)."""
    if not len(values):
        return [float("nan"), float("nan")]
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def style_controlled_win_rate(texts_a: list[str], texts_b: list[str], outcomes, n_boot: int = 1000,
                              seed: int = 0) -> dict:
    """style_controlled on the style differences of A's and B's answers to the same prompts."""
    return style_controlled(style_differences(texts_a, texts_b), outcomes, n_boot=n_boot, seed=seed)
