"""Held-out calibration that looks like a new user's photo: leave out a photo *and its same-spot siblings*.

Leave-one-out inside a gallery nearly always leaves a sibling from the same spot behind (penn91: nearest other
photo median 1.3 m; bgu-west 0.7 m), so a radius calibrated that way promises metres that a photo taken a few
steps off any gallery spot never gets. Here every gallery photo within R m of the held-out one is excluded
too. R comes from the gallery's own spacing: the 90th percentile of nearest-neighbour distances, but at least
the phone-GPS noise (10 m: photos closer than that may well be the same spot) and at most 25 m.
"""
from __future__ import annotations

import numpy as np

from ..geo import pairwise_m

MIN_SPOT_M = 10.0  # phone GPS noise: two photos labelled closer than this may have been taken at one spot
MAX_SPOT_M = 25.0  # beyond this the calibration would leave out whole neighbourhoods of a sparse gallery
FAR_FACTOR = 2.0  # far hold-out: every gallery photo within FAR_FACTOR x R of the held-out one is left out
HOLDOUTS = ("near", "far")  # the two hold-outs every method calibrates on


BLOCK = 512  # rows per block: memory stays O(BLOCK x N) for large galleries


def same_spot_radius_m(en: np.ndarray, min_m: float = MIN_SPOT_M, max_m: float = MAX_SPOT_M) -> float:
    """R in metres for a gallery at east/north positions en (N, 2): clip(P90 nearest-neighbour distance)."""
    en = np.asarray(en, float).reshape(-1, 2)
    if len(en) < 2:
        return float(min_m)
    nn = []
    for a in range(0, len(en), BLOCK):
        d = pairwise_m(en[a:a + BLOCK], en)
        d[np.arange(len(d)), np.arange(a, a + len(d))] = np.inf
        nn.append(d.min(1))
    return float(np.clip(np.quantile(np.concatenate(nn), 0.9), min_m, max_m))


def excluded_rows(en: np.ndarray, rows, radius_m: float) -> np.ndarray:
    """(len(rows), N) bool: row r marks the photos left out when photo rows[r] is held out (itself and every
    photo within radius_m of it)."""
    en = np.asarray(en, float).reshape(-1, 2)
    rows = np.asarray(rows, int).reshape(-1)
    m = pairwise_m(en[rows], en) <= radius_m
    m[np.arange(len(rows)), rows] = True
    return m


def excluded_mask(en: np.ndarray, radius_m: float) -> np.ndarray:
    """(N, N) bool: excluded_rows for every photo (small galleries; use excluded_rows in blocks otherwise)."""
    return excluded_rows(en, np.arange(len(np.asarray(en).reshape(-1, 2))), radius_m)


def buffered_train(train_idx, val_idx, en: np.ndarray, radius_m: float) -> np.ndarray:
    """Training indices of an inner calibration fold without every photo within radius_m of a validation photo
    (their same-spot siblings), computed in blocks. Returns train_idx unchanged if the buffer would empty it."""
    en = np.asarray(en, float).reshape(-1, 2)
    tr, va = np.asarray(train_idx, int), np.asarray(val_idx, int)
    if not len(tr) or not len(va):
        return tr
    near = np.zeros(len(tr), bool)
    for a in range(0, len(tr), BLOCK):
        near[a:a + BLOCK] = (pairwise_m(en[tr[a:a + BLOCK]], en[va]) <= radius_m).any(1)
    return tr[~near] if (~near).sum() >= 2 else tr


def holdout_radius_m(spot_m: float, holdout: str) -> float:
    """Exclusion radius in metres of a hold-out: R for "near", FAR_FACTOR x R for "far". Raises ValueError."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"hold-out must be one of {HOLDOUTS}, not {holdout!r}")
    return float(spot_m) * (FAR_FACTOR if holdout == "far" else 1.0)
