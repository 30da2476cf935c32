"""The chance that the true spot lies within CHANCE_M of an answer, calibrated on the same held-out records as the
radius (localization/conformal.py).

The answer's calibrated radius already carries every piece of evidence a method reads (its answer kind, the
spread of its neighbours or verified photos, the difficulty bin), so the chance is a non-increasing function of
that radius: a weighted isotonic regression (Zadrozny & Elkan, KDD 2002; Barlow et al. 1972) of "error <= CHANCE_M"
on the radius over the held-out answers of two hold-outs in equal shares (conformal.CHANCE_SHARES): the photo
alone ("self", a user at a gallery spot) and the *area* hold-out (localization/holdout.py: photos held out as far
from the rest as points spread over the area). Measured first on the equal mixture of near / area / block (ECE
0.21-0.27 for knn on bgu-west kfold:5 and knndm:5, the chances too low; bench/results/i28-bgu-*), then on the area
hold-out alone (knn 0.09 / 0.07, rerank on penn91 loo 0.26: still too low wherever a same-spot sibling stays in
the gallery, which no signal the query shows reveals; bench/results/j28-*.notes.md). It is what
`Prediction.chance_25m` reports and what `confidence` (its documented alias) now means. Expected calibration error (10 equal-width bins) is the
bench's measure of it (`ece`).
"""
from __future__ import annotations

import numpy as np

CHANCE_M = 25.0  # the VPR convention: a retrieved photo within 25 m is a positive (evaluate.RECALL_M)
MIN_RECORDS = 10


def fit_chance(radius_m, errors_m, weights=None) -> tuple[list, list] | None:
    """(radius breakpoints ascending, probability at each) from held-out answers: their radius (N,), error (N,)
    in metres and weights (N,); None with fewer than MIN_RECORDS answers of positive weight."""
    from sklearn.isotonic import IsotonicRegression

    r, e = np.asarray(radius_m, float), np.asarray(errors_m, float)
    w = np.ones(len(r)) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(r) & np.isfinite(e) & (w > 0)
    if ok.sum() < MIN_RECORDS:
        return None
    iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(r[ok], (e[ok] <= CHANCE_M).astype(float), sample_weight=w[ok])
    return [float(x) for x in iso.X_thresholds_], [float(y) for y in iso.y_thresholds_]


def ece(prob, hit, bins: int = 10) -> float | None:
    """Expected calibration error of probabilities prob (N,) against outcomes hit (N,) bool: the count-weighted
    mean |mean prob - mean hit| over `bins` equal-width probability bins. None for no data."""
    p, h = np.asarray(prob, float), np.asarray(hit, float)
    ok = np.isfinite(p)
    p, h = p[ok], h[ok]
    if not len(p):
        return None
    b = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[b == i].mean() - h[b == i].mean()) * (b == i).sum() for i in range(bins) if (b == i).any())
                 / len(p))
