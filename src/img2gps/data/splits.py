"""Train/validation splits and bench protocols. Every split is seeded; location-aware ones use a metric buffer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..outputs import counted
from ..geo import LocalFrame, pairwise_m, spatial_clusters

SEED = 42


@dataclass
class Fold:
    train: np.ndarray  # indices into the dataset
    val: np.ndarray
    dropped: int = 0  # training photos removed by the spatial buffer
    info: dict | None = None  # how the protocol chose the folds (knndm: clusters, distance match), for the bench


def _en(lat, lon) -> np.ndarray:
    return LocalFrame.around(lat, lon).to_en(lat, lon)


def buffer_train(train: np.ndarray, val: np.ndarray, en: np.ndarray, radius_m: float) -> tuple[np.ndarray, int]:
    """Drop every training photo within radius_m of any validation photo (location-disjoint with a buffer)."""
    if radius_m <= 0 or len(val) == 0 or len(train) == 0:
        return train, 0
    d = pairwise_m(en[train], en[val]).min(axis=1)
    keep = train[d > radius_m]
    return keep, int(len(train) - len(keep))


def loo_folds(n: int) -> list[Fold]:
    idx = np.arange(n)
    return [Fold(np.delete(idx, i), np.array([i])) for i in range(n)]


def kfold_folds(n: int, k: int, seed: int = SEED) -> list[Fold]:
    if k < 2 or k > n:
        raise DataError(f"kfold:{k} needs 2 <= K <= number of photos ({n})")
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, k)
    return [Fold(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i])) for i in range(k)]


def kfold_geo_folds(lat, lon, k: int, radius_m: float = 10.0, seed: int = SEED) -> list[Fold]:
    """K spatial folds (k-means on east/north metres) with a buffer of radius_m around each validation fold."""
    n = len(lat)
    if k < 2 or k > n:
        raise DataError(f"kfold-geo:{k} needs 2 <= K <= number of photos ({n})")
    en = _en(lat, lon)
    labels = spatial_clusters(en, k, seed)
    folds = []
    for c in range(k):
        val = np.flatnonzero(labels == c)
        train, dropped = buffer_train(np.flatnonzero(labels != c), val, en, radius_m)
        folds.append(Fold(train, val, dropped))
    return folds


KNNDM_CANDIDATES = 24  # cluster counts tried between K and N (geometric grid)


def knndm_folds(lat, lon, k: int, seed: int = SEED, n_points: int = 2000) -> list[Fold]:
    """kNNDM cross-validation (Linnenbrink, Milà, Ludwig & Meyer, "kNNDM CV", Geosci. Model Dev. 2024): K folds
    whose held-out photos stand as far from the remaining gallery as points spread over the gallery's area do.

    The photos are grouped by k-means into q clusters, the clusters dealt to K folds of about equal size (seeded
    order, each to the smallest fold), and each photo's distance to the nearest photo of another fold compared
    with the distances from n_points points drawn uniformly over the gallery's area (area.Area.sample) to the
    nearest gallery photo (Wasserstein distance of the two distributions). The q from K to N (random folds) with
    the smallest distance is used; Fold.info records q, the distance and both medians."""
    from scipy.stats import wasserstein_distance

    from ..area import area_point_distances_m

    n = len(lat)
    if k < 2 or k > n:
        raise DataError(f"knndm:{k} needs 2 <= K <= number of photos ({n})")
    en = _en(lat, lon)
    target = area_point_distances_m(lat, lon, n_points, seed)
    rng = np.random.default_rng(seed)
    best = None
    for q in sorted(set(np.geomspace(k, n, KNNDM_CANDIDATES).round().astype(int).tolist())):
        labels = spatial_clusters(en, q, seed) if q < n else rng.permutation(n)
        fold_of = _deal(labels, k, np.random.default_rng(seed))
        nnd = np.array([pairwise_m(en[fold_of == f], en[fold_of != f]).min(1) for f in range(k)], dtype=object)
        nnd = np.concatenate(list(nnd))
        w = float(wasserstein_distance(nnd, target))
        if best is None or w < best[0]:
            best = (w, q, fold_of, nnd)
    w, q, fold_of, nnd = best
    info = {"clusters": int(q), "wasserstein_m": w, "heldout_nnd_median_m": float(np.median(nnd)),
            "area_nnd_median_m": float(np.median(target)), "area_nnd_p90_m": float(np.quantile(target, 0.9)),
            "heldout_nnd_p90_m": float(np.quantile(nnd, 0.9))}
    idx = np.arange(n)
    return [Fold(idx[fold_of != f], idx[fold_of == f], 0, info) for f in range(k)]


def _deal(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each photo: clusters in a seeded order, each to the fold with the fewest photos so far."""
    sizes = np.zeros(k, int)
    fold_of = np.zeros(len(labels), int)
    for c in rng.permutation(np.unique(labels)):
        f = int(np.argmin(sizes))
        m = labels == c
        fold_of[m] = f
        sizes[f] += int(m.sum())
    return fold_of


def random_split(n: int, val_frac: float = 0.2, seed: int = SEED) -> Fold:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_frac)))
    return Fold(np.sort(perm[n_val:]), np.sort(perm[:n_val]))


def location_disjoint_split(lat, lon, val_frac: float = 0.2, radius_m: float = 10.0, seed: int = SEED,
                            n_clusters: int | None = None) -> Fold:
    """Whole spatial clusters go to validation until ~val_frac of photos are there; then buffer the train side."""
    n = len(lat)
    en = _en(lat, lon)
    k = n_clusters or max(5, min(n // 4, 25))
    labels = spatial_clusters(en, k, seed)
    order = np.random.default_rng(seed).permutation(np.unique(labels))
    val_mask = np.zeros(n, bool)
    for c in order:
        if val_mask.sum() >= val_frac * n:
            break
        val_mask |= labels == c
    val = np.flatnonzero(val_mask)
    train, dropped = buffer_train(np.flatnonzero(~val_mask), val, en, radius_m)
    return Fold(train, val, dropped)


def folds_for_protocol(protocol: str, ds) -> list[Fold]:
    """'loo' | 'kfold:K' | 'kfold-geo:K[:R]' | 'knndm:K' | 'split:DIR' (DIR/train.csv + DIR/val.csv naming images
    of ds)."""
    name, *args = protocol.split(":")
    n = len(ds)
    try:
        if name == "loo" and not args:
            return loo_folds(n)
        if name == "kfold" and len(args) == 1:
            return kfold_folds(n, int(args[0]))
        if name == "knndm" and len(args) == 1:
            return knndm_folds(ds.lat, ds.lon, int(args[0]))
        if name == "kfold-geo" and len(args) in (1, 2):
            return kfold_geo_folds(ds.lat, ds.lon, int(args[0]), float(args[1]) if len(args) == 2 else 10.0)
    except ValueError:
        raise DataError(f"protocol {protocol!r}: K and R must be numbers") from None
    if name == "split" and args:
        return [split_from_dir(Path(":".join(args)), ds)]
    raise DataError(f"unknown protocol {protocol!r}; use loo, kfold:K, kfold-geo:K[:R], knndm:K or split:DIR")


def split_rows(csv: Path, ds) -> np.ndarray:
    """Indices in ds of the photos a split CSV names (image column; `data split` writes train.csv and val.csv),
    in the CSV's order. DataError (one line naming the file) when it cannot be read, names no photo, or names
    photos that ds does not hold."""
    from .sources import read_labels_csv

    pos = {name: i for i, name in enumerate(ds.ids)}
    names = read_labels_csv(Path(csv))["image"].astype(str).tolist()
    if not names:
        raise DataError(f"{csv}: names no photo")
    missing = [x for x in names if x not in pos]
    if missing:
        raise DataError(f"{csv}: {counted(len(missing), 'image')} not in {ds.name}, e.g. {missing[0]}")
    return np.array([pos[x] for x in names], int)


def split_from_dir(d: Path, ds) -> Fold:
    parts = [split_rows(d / f"{part}.csv", ds) for part in ("train", "val")]
    if set(parts[0]) & set(parts[1]):
        raise DataError(f"{d}: train.csv and val.csv share images")
    return Fold(parts[0], parts[1])
