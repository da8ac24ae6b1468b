"""Agreement speed: our fleiss_kappa against statsmodels' on one seeded table, same process.

Usage: python bench/agreement_speed.py [--items 100000] [--raters 5] [--categories 4]
Prints each timing (best of --repeats), the ratio, whether the kappas agree, the time of
krippendorff_alpha (nominal) on the same ratings, and a one-line JSON summary last.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from collect.agreement import counts_from_labels, fleiss_kappa, krippendorff_alpha  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` calls: the minimum is the least noisy estimate."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--raters", type=int, default=5)
    ap.add_argument("--categories", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    # Correlated raters (a true label, kept with prob 0.7) so kappa is far from 0 and a
    # wrong formula would show up as a disagreement, not hide in noise around 0.
    truth = rng.integers(0, args.categories, size=(args.items, 1))
    noise = rng.integers(0, args.categories, size=(args.items, args.raters))
    labels = np.where(rng.random((args.items, args.raters)) < 0.7, truth, noise)  # (N, n)
    table = counts_from_labels(labels, range(args.categories))  # (N, K)
    ratings = labels.T.astype(float)  # (n raters, N units) for Krippendorff

    t_ours, ours = best_of(lambda: fleiss_kappa(table)["kappa"], args.repeats)
    t_counts, _ = best_of(lambda: counts_from_labels(labels, range(args.categories)),
                          args.repeats)
    t_alpha, alpha = best_of(lambda: krippendorff_alpha(ratings, "nominal"), args.repeats)
    # Complete data: alpha = 1 - (Nn - 1)/(Nn) (1 - kappa), an independent check on alpha.
    n_ratings = labels.size
    alpha_ok = bool(abs(alpha - (1 - (n_ratings - 1) / n_ratings * (1 - ours))) < 1e-9)
    summary = {"items": args.items, "raters": args.raters, "categories": args.categories,
               "repeats": args.repeats, "fleiss_ours_s": t_ours, "kappa_ours": ours,
               "counts_from_labels_s": t_counts, "krippendorff_nominal_s": t_alpha,
               "alpha_nominal": alpha, "alpha_matches_kappa_relation": alpha_ok}
    print(f"fleiss_kappa (ours):        {t_ours * 1e3:8.2f} ms  kappa={ours:.10f}")
    try:
        from statsmodels.stats.inter_rater import aggregate_raters
        from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss
    except ImportError:
        print("statsmodels not installed: baseline skipped")
    else:
        t_sm, theirs = best_of(lambda: sm_fleiss(table, method="fleiss"), args.repeats)
        t_agg, _ = best_of(lambda: aggregate_raters(labels, args.categories), args.repeats)
        agree = bool(abs(ours - theirs) < 1e-12)
        print(f"fleiss_kappa (statsmodels): {t_sm * 1e3:8.2f} ms  kappa={theirs:.10f}")
        print(f"ratio ours/statsmodels:     {t_ours / t_sm:8.2f}   kappas agree: {agree}")
        print(f"aggregate_raters (sm):      {t_agg * 1e3:8.2f} ms")
        summary.update(fleiss_statsmodels_s=t_sm, kappa_statsmodels=float(theirs),
                       ratio_ours_over_statsmodels=t_ours / t_sm, kappas_agree=agree,
                       aggregate_raters_statsmodels_s=t_agg)
    print(f"counts_from_labels (ours):  {t_counts * 1e3:8.2f} ms")
    print(f"krippendorff_alpha nominal: {t_alpha * 1e3:8.2f} ms  alpha={alpha:.10f}"
          f"  (matches 1 - (Nn-1)/Nn (1 - kappa): {alpha_ok})")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
