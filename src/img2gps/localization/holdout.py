"""Held-out calibration that looks like a new user's photo: three ways to hold a gallery photo out.

- **near**: the photo *and its same-spot siblings* (every gallery photo within R). Leave-one-out inside a gallery
  nearly always leaves a sibling from the same spot behind (penn91: nearest other photo median 1.3 m; bgu-west
  0.7 m), so a radius calibrated that way promises metres that a photo taken a few steps off never gets. R comes
  from the gallery's own spacing: the 90th percentile of nearest-neighbour distances, but at least the phone-GPS
  noise (10 m) and at most 25 m.
- **area**: a photo taken anywhere in the gallery's area. Each held-out photo leaves out every gallery photo within
  a radius drawn from the distances between points spread over the gallery's area (area.area_point_distances_m)
  and their nearest gallery photo, so the held-out photos stand as far from the rest as such points do (the
  exclusion idea of NNDM / kNNDM cross-validation: Milà et al., Methods Ecol. Evol. 2022; Linnenbrink et al.,
  GMD 2024).
- **block**: a photo where the gallery has a hole: its whole spatial block is left out, as kfold-geo does (the
  gallery cut by k-means on east/north metres into round(1 / BLOCK_SHARE) blocks, plus every photo within R of
  the block), so the weak-evidence answers are calibrated on photos that really stood far from the gallery.
  (Trained methods, which calibrate on inner folds, use a disc holding BLOCK_SHARE of the area instead.)
"""
from __future__ import annotations

import numpy as np

from ..geo import pairwise_m

MIN_SPOT_M = 10.0  # phone GPS noise: two photos labelled closer than this may have been taken at one spot
MAX_SPOT_M = 25.0  # beyond this the calibration would leave out whole neighbourhoods of a sparse gallery
HOLDOUTS = ("near", "area", "block")  # the hold-outs every method calibrates its radius on
SELF = "self"  # the photo alone held out (a user at a gallery spot): the chance's other half (conformal.CHANCE_SHARES)
BLOCK_SHARE = 0.2  # block hold-out: a disc holding this share of the gallery's area (one fold of five)


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


def excluded_rows(en: np.ndarray, rows, radius_m) -> np.ndarray:
    """(len(rows), N) bool: row r marks the photos left out when photo rows[r] is held out (itself and every
    photo within radius_m of it; radius_m a number or one per row, (len(rows),))."""
    en = np.asarray(en, float).reshape(-1, 2)
    rows = np.asarray(rows, int).reshape(-1)
    m = pairwise_m(en[rows], en) <= np.broadcast_to(np.asarray(radius_m, float), (len(rows),))[:, None]
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


class HoldoutPlan:
    """The exclusion radii of one gallery's hold-outs (see module doc). en: (N, 2) east/north metres of `frame`
    (geo.LocalFrame). radii(h, rows) -> (len(rows),) metres; the area radius of each photo is drawn once, seeded."""

    def __init__(self, en: np.ndarray, frame, seed: int = 0):
        from ..area import area_point_distances_m, split_areas

        en = np.asarray(en, float).reshape(-1, 2)
        self.spot_m = same_spot_radius_m(en)
        lat, lon = frame.to_latlon(en)
        lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
        self.area_m = area_point_distances_m(lat, lon, seed=seed) if len(en) else np.zeros(1)
        region = split_areas(lat, lon)[0].region_m2 if len(en) else 0.0
        self.block_m = float(max(np.sqrt(BLOCK_SHARE * region / np.pi), 2 * self.spot_m))
        self._area_r = np.random.default_rng(seed).choice(self.area_m, len(en)) if len(en) else np.zeros(0)
        self._en = en
        self._blocks = None  # (labels (N,), per block the (N,) mask it leaves out), made on first use

    def _block_masks(self) -> tuple[np.ndarray, np.ndarray]:
        if self._blocks is None:
            from scipy.spatial import cKDTree

            from ..geo import spatial_clusters

            labels = spatial_clusters(self._en, int(round(1 / BLOCK_SHARE)), seed=42)
            masks = np.stack([cKDTree(self._en[labels == b]).query(self._en)[0] <= self.spot_m
                              for b in range(int(labels.max()) + 1)])
            self._blocks = (labels, masks)
        return self._blocks

    def excluded(self, holdout: str, rows) -> np.ndarray:
        """(len(rows), N) bool: the gallery photos left out when each of rows is held out this way (one of
        HOLDOUTS or SELF; itself always). Raises ValueError for an unknown hold-out."""
        rows = np.asarray(rows, int).reshape(-1)
        if holdout == SELF:
            return excluded_rows(self._en, rows, -1.0)
        if holdout == "block" and len(self._en) >= 2 * round(1 / BLOCK_SHARE):
            labels, masks = self._block_masks()
            m = masks[labels[rows]].copy()
            m[np.arange(len(rows)), rows] = True
            return m
        return excluded_rows(self._en, rows, self.radii(holdout, rows))

    def radii(self, holdout: str, rows) -> np.ndarray:
        """Exclusion radius (m) per held-out photo rows (gallery indices). Raises ValueError for an unknown name."""
        rows = np.asarray(rows, int).reshape(-1)
        if holdout == "near":
            return np.full(len(rows), self.spot_m)
        if holdout == "area":
            return self._area_r[rows]
        if holdout == "block":
            return np.full(len(rows), self.block_m)
        raise ValueError(f"hold-out must be one of {HOLDOUTS}, not {holdout!r}")

    def inner_fold(self, holdout: str, train_idx, val_idx) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) indices of an inner calibration fold (trained methods) held out this way: near and
        area drop every training photo within fold_radius of a validation photo (buffered_train); block keeps as
        validation the whole block (as the block hold-out cuts the gallery) that holds most of val_idx and trains
        on the photos outside it and its same-spot buffer (a buffer of fold_radius("block") around scattered
        validation photos leaves 3-6 of 60 on penn91, and none on bgu-west, where buffered_train then keeps all).
        Raises ValueError for an unknown hold-out."""
        tr, va = np.asarray(train_idx, int), np.asarray(val_idx, int)
        if holdout != "block" or len(self._en) < 2 * round(1 / BLOCK_SHARE) or not len(va):
            return buffered_train(tr, va, self._en, self.fold_radius(holdout)), va
        labels, masks = self._block_masks()
        b = int(np.bincount(labels[va]).argmax())
        return np.flatnonzero(~masks[b]), np.flatnonzero(labels == b)

    def fold_radius(self, holdout: str) -> float:
        """One exclusion radius for a whole inner fold (trained methods); the area hold-out's median draw."""
        if holdout not in HOLDOUTS:
            raise ValueError(f"hold-out must be one of {HOLDOUTS}, not {holdout!r}")
        return {"near": self.spot_m, "area": float(np.median(self.area_m)), "block": self.block_m}[holdout]

    def summary(self) -> dict:
        return {"near_m": self.spot_m, "area_median_m": float(np.median(self.area_m)),
                "area_p90_m": float(np.quantile(self.area_m, 0.9)), "block_m": self.block_m}


class PlaneHoldouts:
    """The hold-outs of a gallery over several areas (area.GalleryPlane): one HoldoutPlan per area, on that
    area's photos in its own frame, so a held-out photo leaves out photos of its own area only, by its own area's
    radii. With one area it is that area's HoldoutPlan."""

    def __init__(self, plane, seed: int = 0):
        self.plane = plane
        self.plans = [HoldoutPlan(plane.area_en(i), a.frame, seed) for i, a in enumerate(plane.areas)]
        self.local = np.zeros(len(plane.label), int)  # each photo's row within its own area
        for i in range(plane.n_areas):
            self.local[plane.rows(i)] = np.arange(len(plane.rows(i)))

    def excluded(self, holdout: str, rows) -> np.ndarray:
        """(len(rows), N) bool over the whole gallery: HoldoutPlan.excluded within each held-out photo's area."""
        rows = np.asarray(rows, int).reshape(-1)
        if self.plane.n_areas == 1:
            return self.plans[0].excluded(holdout, rows)
        out = np.zeros((len(rows), len(self.plane.label)), bool)
        for i, plan in enumerate(self.plans):
            m = np.flatnonzero(self.plane.label[rows] == i)
            if len(m):
                out[np.ix_(m, self.plane.rows(i))] = plan.excluded(holdout, self.local[rows[m]])
        return out
