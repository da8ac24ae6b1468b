"""Inter-annotator agreement: Fleiss' kappa, Krippendorff's alpha, bootstrap intervals,
per-annotator agreement and position bias, as pure functions (numpy in, floats/dicts out).

Equations (Fleiss 1971; Krippendorff 2011; Landis & Koch 1977):
- Fleiss (1971): p_j = sum_i n_ij / (N n); P_i = (sum_j n_ij^2 - n) / (n (n - 1));
  P_bar = mean_i P_i; P_e = sum_j p_j^2; kappa = (P_bar - P_e) / (1 - P_e).
- Krippendorff (2011, "Computing Krippendorff's alpha-reliability"): coincidences
  o_ck = sum_u sum_{i != j} [v_ui = c][v_uj = k] / (m_u - 1), n_c = sum_k o_ck, n = sum_c n_c;
  alpha = 1 - D_o / D_e = 1 - (n - 1) sum_ck o_ck d_ck / sum_ck n_c n_k d_ck.
- Landis & Koch (1977) bands for kappa.

Results are plain dicts so they go straight into metrics.json and the dataset card.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse, stats

LEVELS = ("nominal", "ordinal", "interval", "ratio")

# Above this many unit-by-value cells (32 MB of float64) the coincidences go through a
# sparse unit-by-value matrix instead of a dense one.
_DENSE_CELLS = 1 << 22

# The coincidence matrix is (V, V) in the number V of distinct values; ratings and labels
# have a handful, but raw continuous scores would blow memory up quadratically.
MAX_DISTINCT_VALUES = 2048

# Upper edges of the Landis & Koch bands. The paper prints "0.21-0.40" etc. with two
# decimals, which leaves gaps (0.205?); we close them with half-open intervals
# (0, 0.20], (0.20, 0.40], ... so 0.20 is "slight" and 0.2001 is "fair".
_LANDIS_KOCH = ((0.20, "slight"), (0.40, "fair"), (0.60, "moderate"),
                (0.80, "substantial"), (1.00, "almost perfect"))

Vote = tuple[Hashable, Hashable, Hashable]  # (item_id, annotator, label)


# ----------------------------------------------------------------------------- Fleiss


def fleiss_kappa(counts: Any) -> dict[str, Any]:
    """Fleiss' kappa (Fleiss 1971) from a count table.

    counts: (N items, K categories), counts[i, j] = raters who put item i in category j;
    every row must sum to the same n (raters per item).
    Returns {"kappa", "p_bar", "p_e", "n_items", "n_raters", "defined", "reason"}; kappa is
    nan with defined=False when it has no meaning (no items, one rater, P_e = 1).
    """
    table = np.asarray(counts, dtype=float)  # (N, K)
    if table.ndim != 2:
        raise ValueError(f"counts must be 2-D (items, categories), got shape {table.shape}")
    if np.any(table < 0) or np.any(table != np.round(table)):
        raise ValueError("counts must be non-negative integers")
    n_items = table.shape[0]
    if n_items == 0:
        return _fleiss_undefined(0, 0, "no items")
    # Sums as BLAS mat-vec products: numpy's axis reductions over a short (K = 4) axis are
    # ~10x slower on 100k rows, and sums of integer counts stay exact in float64.
    ones_k = np.ones(table.shape[1])
    row_sums = table @ ones_k  # (N,)
    n = _check_equal_raters(row_sums)
    if n < 2:
        return _fleiss_undefined(n_items, n, "fewer than 2 raters per item")

    p_j = (np.ones(n_items) @ table) / (n_items * n)  # (K,)
    p_i = ((table * table) @ ones_k - n) / (n * (n - 1))  # (N,)
    p_bar = float(p_i.mean())
    p_e = float((p_j**2).sum())
    # P_e = 1 exactly when one category holds every rating; test that directly rather than
    # compare a float sum of squares to 1.
    if np.count_nonzero(p_j) <= 1:
        return _fleiss_undefined(n_items, n, "every rating is in one category (P_e = 1)",
                                 p_bar=p_bar, p_e=1.0)
    kappa = (p_bar - p_e) / (1.0 - p_e)
    return {"kappa": float(kappa), "p_bar": p_bar, "p_e": p_e, "n_items": n_items,
            "n_raters": n, "defined": True, "reason": ""}


def _check_equal_raters(row_sums: np.ndarray) -> int:
    """The common row sum n; else raises naming the rows that differ from the commonest."""
    if np.all(row_sums == row_sums[0]):  # the usual case, without sorting 100k sums
        return int(row_sums[0])
    sums, freq = np.unique(row_sums, return_counts=True)
    n = sums[np.argmax(freq)]
    bad = np.flatnonzero(row_sums != n)
    shown = ", ".join(f"row {i} has {int(row_sums[i])}" for i in bad[:5])
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    raise ValueError(
        f"Fleiss' kappa needs the same number of raters on every item: most rows have "
        f"{int(n)}, but {shown}{more}; use krippendorff_alpha for unequal rater counts")


def _fleiss_undefined(n_items: int, n: int, reason: str, p_bar: float = math.nan,
                      p_e: float = math.nan) -> dict[str, Any]:
    return {"kappa": math.nan, "p_bar": p_bar, "p_e": p_e, "n_items": n_items,
            "n_raters": n, "defined": False, "reason": reason}


def counts_from_labels(labels: Any, categories: Sequence[Hashable]) -> np.ndarray:
    """Count table (N, K) from a label matrix (N items, n raters) or a list of label lists.

    None and float nan are missing ratings and are skipped; any other label not in
    `categories` is an error, so a typo never silently becomes a dropped vote.
    """
    cats = list(categories)
    index = {c: j for j, c in enumerate(cats)}
    if len(index) != len(cats):
        raise ValueError(f"categories contain duplicates: {cats}")
    arr = labels if isinstance(labels, np.ndarray) else None
    if arr is not None and arr.ndim == 2 and arr.dtype.kind in "biufUS":
        rows, codes = _codes_from_array(arr, index)
        n_items = arr.shape[0]
    else:
        rows, codes = _codes_from_lists(labels, index)
        n_items = len(labels)
    k = len(cats)
    flat = np.bincount(rows * k + codes, minlength=n_items * k)
    return flat.reshape(n_items, k)  # (N, K)


def _codes_from_array(arr: np.ndarray, index: dict) -> tuple[np.ndarray, np.ndarray]:
    # Map each distinct value once instead of every cell: 500k cells, ~5 distinct labels.
    flat = arr.ravel()
    rows = np.repeat(np.arange(arr.shape[0]), arr.shape[1])
    if arr.dtype.kind == "f":
        keep = ~np.isnan(flat)
        flat, rows = flat[keep], rows[keep]
    uniq, inverse = np.unique(flat, return_inverse=True)
    code_of = np.empty(len(uniq), dtype=np.int64)
    for u, value in enumerate(uniq.tolist()):
        if value not in index:
            raise ValueError(f"label {value!r} is not one of the categories {list(index)}")
        code_of[u] = index[value]
    return rows, code_of[inverse]


def _codes_from_lists(labels: Iterable, index: dict) -> tuple[np.ndarray, np.ndarray]:
    rows, codes = [], []
    for i, row in enumerate(labels):
        for label in row:
            if label is None or (isinstance(label, float) and math.isnan(label)):
                continue
            if label not in index:
                raise ValueError(f"item row {i}: label {label!r} is not one of the "
                                 f"categories {list(index)}")
            rows.append(i)
            codes.append(index[label])
    return np.asarray(rows, dtype=np.int64), np.asarray(codes, dtype=np.int64)


# ------------------------------------------------------------------------ Krippendorff


def krippendorff_alpha(data: Any, level: str = "nominal") -> float:
    """Krippendorff's alpha from the coincidence matrix (Krippendorff 2011).

    data: (raters, units) with nan for a missing rating. Units with fewer than 2 ratings
    are not pairable and are dropped. Returns nan when alpha is undefined: no pairable
    unit, or a single value overall (D_e = 0).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    x = np.asarray(data, dtype=float)  # (R, U)
    if x.ndim != 2:
        raise ValueError(f"data must be 2-D (raters, units), got shape {x.shape}")
    present = ~np.isnan(x)  # (R, U)
    pairable = present.sum(axis=0) >= 2  # (U,)
    x, present = x[:, pairable], present[:, pairable]
    if x.shape[1] == 0:
        return math.nan
    # Walk units in column order: transpose so nonzero() yields (unit, rater) pairs.
    unit_idx, _ = np.nonzero(present.T)  # (M,) one entry per pairable value
    values = x.T[present.T]  # (M,)
    # Hash-based unique of the few distinct values, then a binary search, is ~2x faster
    # than np.unique(return_inverse=True), which sorts all M values.
    uniq = np.sort(np.unique(values, sorted=False))  # (V,)
    codes = np.searchsorted(uniq, values)  # (M,)
    if len(uniq) > MAX_DISTINCT_VALUES:
        raise ValueError(f"{len(uniq)} distinct values: the coincidence matrix would be "
                         f"{len(uniq)}^2; bin or round the values first")
    if level == "ratio" and uniq[0] < 0:
        raise ValueError("ratio level needs non-negative values")

    o = coincidence_matrix(unit_idx, codes, len(uniq))  # (V, V)
    n_c = np.bincount(codes, minlength=len(uniq)).astype(float)  # (V,) = o.sum(1)
    n = n_c.sum()
    d = _delta2(uniq, n_c, level)  # (V, V)
    d_e = float(n_c @ d @ n_c)
    if d_e == 0.0:
        return math.nan
    return float(1.0 - (n - 1.0) * float((o * d).sum()) / d_e)


def coincidence_matrix(unit_idx: np.ndarray, codes: np.ndarray, n_values: int) -> np.ndarray:
    """o_ck = sum_u (C_uc C_uk - [c = k] C_uc) / (m_u - 1) for a unit-by-value count C.

    unit_idx, codes: (M,) unit and value index of every pairable rating (m_u >= 2).
    Written as C^T W C minus the self-pairs on the diagonal: one matrix product for all units.
    """
    n_units = int(unit_idx.max()) + 1
    m_u = np.bincount(unit_idx, minlength=n_units)  # (U,)
    w = 1.0 / (m_u - 1.0)  # (U,)
    if n_units * n_values <= _DENSE_CELLS:
        # Few distinct values (labels, 1-5 ratings): a dense C is ~10x faster than sparse.
        c = np.bincount(unit_idx * n_values + codes, minlength=n_units * n_values)
        c = c.reshape(n_units, n_values).astype(float)  # (U, V)
        o = c.T @ (w[:, None] * c)  # (V, V)
    else:
        c = sparse.csr_matrix((np.ones(len(codes)), (unit_idx, codes)),
                              shape=(n_units, n_values))  # (U, V); duplicates are summed
        o = (c.T @ sparse.diags(w) @ c).toarray()  # (V, V)
    o[np.diag_indices(n_values)] -= np.bincount(codes, weights=w[unit_idx],
                                                minlength=n_values)
    return o


def _delta2(v: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2_ck over the sorted distinct values v (V,)."""
    if level == "nominal":
        return 1.0 - np.eye(len(v))
    if level == "interval":
        return (v[:, None] - v[None, :]) ** 2
    if level == "ratio":
        total = v[:, None] + v[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((v[:, None] - v[None, :]) / total) ** 2
        return np.where(total == 0, 0.0, d)
    # ordinal: (sum_{g=c..k} n_g - (n_c + n_k)/2)^2 equals (mid_k - mid_c)^2 with
    # mid_c = cumsum(n)_c - n_c/2, the rank midpoint of value c among all pairable values.
    mid = np.cumsum(n_c) - n_c / 2.0
    return (mid[:, None] - mid[None, :]) ** 2


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(stat_fn: Callable[[np.ndarray], float], data_by_item: Any,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Percentile bootstrap interval, resampling items (axis 0) with replacement.

    data_by_item: array-like whose first axis is items (a Fleiss count table (N, K), or
    Krippendorff data transposed to (units, raters)). Resamples where the statistic is
    undefined (nan) are left out of the percentiles and counted in "n_undefined".
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    data = np.asarray(data_by_item)
    estimate = float(stat_fn(data))
    n_items = data.shape[0]
    if n_items == 0 or n_boot < 1:
        return _ci(estimate, math.nan, math.nan, alpha, n_boot, n_boot)
    rng = np.random.default_rng(seed)
    # One draw per resample (not one (n_boot, N) block) keeps memory at O(N) for 100k items.
    boots = np.array([stat_fn(data[rng.integers(0, n_items, size=n_items)])
                      for _ in range(n_boot)], dtype=float)
    ok = boots[np.isfinite(boots)]
    if ok.size == 0:
        return _ci(estimate, math.nan, math.nan, alpha, n_boot, n_boot)
    low, high = np.quantile(ok, [alpha / 2.0, 1.0 - alpha / 2.0])
    return _ci(estimate, float(low), float(high), alpha, n_boot, n_boot - ok.size)


def _ci(estimate, low, high, alpha, n_boot, n_undefined) -> dict[str, Any]:
    return {"estimate": estimate, "low": low, "high": high, "alpha": alpha,
            "n_boot": n_boot, "n_undefined": int(n_undefined)}


def landis_koch(kappa: float) -> str:
    """Landis & Koch (1977) band; intervals are (0, 0.20], (0.20, 0.40], ... (see above)."""
    if kappa is None or math.isnan(kappa):
        return "undefined"
    if kappa < 0:
        return "poor"
    if kappa > 1.0 + 1e-9:
        raise ValueError(f"kappa cannot exceed 1, got {kappa}")
    for upper, name in _LANDIS_KOCH:
        if kappa <= upper:
            return name
    return "almost perfect"  # 1 < kappa <= 1 + 1e-9: float noise on a perfect score


# --------------------------------------------------------------------- per annotator


def _encode_votes(votes: Iterable[Vote]) -> dict[str, Any]:
    """Integer codes for items, annotators and labels; rejects a repeated (item, annotator)."""
    item_ix: dict = {}
    ann_ix: dict = {}
    label_ix: dict = {}
    items, anns, labels = [], [], []
    seen = set()
    for row, (item, ann, label) in enumerate(votes):
        if (item, ann) in seen:
            raise ValueError(f"vote {row}: annotator {ann!r} voted twice on item {item!r}")
        seen.add((item, ann))
        items.append(item_ix.setdefault(item, len(item_ix)))
        anns.append(ann_ix.setdefault(ann, len(ann_ix)))
        labels.append(label_ix.setdefault(label, len(label_ix)))
    return {"item": np.asarray(items, dtype=np.int64), "ann": np.asarray(anns, dtype=np.int64),
            "label": np.asarray(labels, dtype=np.int64), "items": list(item_ix),
            "annotators": list(ann_ix), "labels": list(label_ix)}


def annotator_agreement(votes: Iterable[Vote]) -> dict[Hashable, dict[str, Any]]:
    """Per annotator: share of their labels equal to the majority of the OTHER annotators.

    votes: (item_id, annotator, label) triples. Items where the others tie, or where nobody
    else voted, are skipped for that annotator. Returns {annotator: {"share", "n"}}, share
    nan when n = 0. Leave-one-out keeps an annotator from voting in their own majority.
    """
    enc = _encode_votes(votes)
    item, label = enc["item"], enc["label"]
    n_lab = len(enc["labels"])
    table = np.bincount(item * n_lab + label,
                        minlength=len(enc["items"]) * n_lab).reshape(-1, n_lab)  # (I, L)
    others = table[item]  # (M, L) label counts on each vote's item ...
    others[np.arange(len(label)), label] -= 1  # ... minus the vote itself
    top = others.max(axis=1)  # (M,)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    usable = (top > 0) & unique_top
    agree = usable & (others.argmax(axis=1) == label)
    return _per_annotator(enc, usable, agree)


def gold_accuracy(votes: Iterable[Vote], gold: dict[Hashable, Hashable]
                  ) -> dict[Hashable, dict[str, Any]]:
    """Per annotator: share of their votes on gold items that match the gold label."""
    votes = list(votes)
    enc = _encode_votes(votes)
    usable = np.array([v[0] in gold for v in votes], dtype=bool)
    agree = np.array([v[0] in gold and gold[v[0]] == v[2] for v in votes], dtype=bool)
    return _per_annotator(enc, usable, agree)


def _per_annotator(enc: dict, usable: np.ndarray, agree: np.ndarray) -> dict:
    n_ann = len(enc["annotators"])
    n = np.bincount(enc["ann"], weights=usable, minlength=n_ann)
    hits = np.bincount(enc["ann"], weights=agree, minlength=n_ann)
    return {name: {"share": float(hits[a] / n[a]) if n[a] else math.nan, "n": int(n[a])}
            for a, name in enumerate(enc["annotators"])}


def flag_annotators(per_annotator: dict[Hashable, dict[str, Any]], threshold: float = 0.5,
                    min_items: int = 10) -> list[Hashable]:
    """Annotators whose share is below threshold on at least min_items items.

    Fewer than min_items is too little evidence to single someone out, so they pass.
    """
    return [name for name, s in per_annotator.items()
            if s["n"] >= min_items and s["share"] < threshold]


def position_bias(n_left_wins: int, n_decisive: int) -> dict[str, Any]:
    """Two-sided exact binomial test that the left-shown response wins half the time.

    n_decisive counts votes with a winner (ties and both_bad excluded), n_left_wins those
    where the winner had been shown on the left.
    """
    if not 0 <= n_left_wins <= n_decisive:
        raise ValueError(f"need 0 <= n_left_wins <= n_decisive, got {n_left_wins}, "
                         f"{n_decisive}")
    if n_decisive == 0:
        return {"share": math.nan, "p_value": math.nan, "n_left_wins": 0, "n_decisive": 0}
    test = stats.binomtest(int(n_left_wins), int(n_decisive), p=0.5, alternative="two-sided")
    return {"share": n_left_wins / n_decisive, "p_value": float(test.pvalue),
            "n_left_wins": int(n_left_wins), "n_decisive": int(n_decisive)}


# ---------------------------------------------------------------------------- report


def agreement_report(votes: Iterable[Vote], categories: Sequence[Hashable],
                     levels: Sequence[str] = (), n_boot: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> dict[str, Any]:
    """Agreement on one question (the a/b/tie/both_bad choice, or one 1-5 aspect).

    A label None (or nan) is a missing rating: it is left out and counted in "n_missing", so
    an item counts only the raters who answered. Fleiss' kappa when every item (with >= 2
    answers) has the same number of raters, else Krippendorff's nominal alpha (which allows
    missing ratings); "method" says which. `levels` adds Krippendorff alpha at
    other levels, e.g. ("ordinal", "interval") for aspects: nominal/ordinal use the position
    in `categories` (so list them in order), interval/ratio the label's numeric value.
    "band" is the Landis & Koch label of "value", applied to alpha as well as a rough guide.
    """
    cats = list(categories)
    index = {c: j for j, c in enumerate(cats)}
    votes = list(votes)
    given = [v for v in votes if not _missing(v[2])]
    enc = _encode_votes(given)
    for lab in enc["labels"]:
        if lab not in index:
            raise ValueError(f"label {lab!r} is not one of the categories {cats}")
    cat_code = np.array([index[lab] for lab in enc["labels"]], dtype=np.int64)[enc["label"]]
    counts = np.bincount(enc["item"] * len(cats) + cat_code,
                         minlength=len(enc["items"]) * len(cats)).reshape(-1, len(cats))
    keep = counts.sum(axis=1) >= 2  # (I,) single-vote items carry no agreement information
    raters = np.unique(counts[keep].sum(axis=1))
    report: dict[str, Any] = {"n_votes": int(len(cat_code)), "n_missing": len(votes) - len(given),
                              "n_items": int(keep.sum()), "n_items_dropped": int((~keep).sum())}
    if len(raters) == 1:
        fleiss = fleiss_kappa(counts[keep])
        ci = bootstrap_ci(lambda t: fleiss_kappa(t)["kappa"], counts[keep], n_boot, alpha, seed)
        report.update(method="fleiss_kappa", raters_per_item=int(raters[0]),
                      p_bar=fleiss["p_bar"], p_e=fleiss["p_e"], reason=fleiss["reason"])
    else:
        codes = cat_code.astype(float)
        ci = _alpha_ci(_rater_matrix(enc, codes), "nominal", n_boot, alpha, seed)
        report.update(method="krippendorff_alpha_nominal", raters_per_item=None,
                      reason="" if len(raters) else "no item has 2 or more votes")
    report.update(value=ci["estimate"], ci=[ci["low"], ci["high"]],
                  band=landis_koch(ci["estimate"]))
    report["alpha"] = {}
    for level in levels:
        values = cat_code.astype(float) if level in ("nominal", "ordinal") else \
            _numeric(enc["labels"], level)[enc["label"]]
        ci = _alpha_ci(_rater_matrix(enc, values), level, n_boot, alpha, seed)
        report["alpha"][level] = {"value": ci["estimate"], "ci": [ci["low"], ci["high"]]}
    return report


def _missing(label: Any) -> bool:
    return label is None or (isinstance(label, float) and math.isnan(label))


def _numeric(labels: list, level: str) -> np.ndarray:
    try:
        return np.array([float(lab) for lab in labels])
    except (TypeError, ValueError):
        raise ValueError(f"{level} alpha needs numeric labels, got {labels}") from None


def _rater_matrix(enc: dict, values: np.ndarray) -> np.ndarray:
    """(raters, units) matrix with nan where an annotator did not rate an item."""
    x = np.full((len(enc["annotators"]), len(enc["items"])), np.nan)
    x[enc["ann"], enc["item"]] = values
    return x


def _alpha_ci(x: np.ndarray, level: str, n_boot: int, alpha: float, seed: int) -> dict:
    # bootstrap_ci resamples axis 0, so hand it units as rows and transpose back.
    return bootstrap_ci(lambda d: krippendorff_alpha(d.T, level), x.T, n_boot, alpha, seed)
