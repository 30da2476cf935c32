"""`data split`: write seeded train/val CSVs (random and location-disjoint) plus a report of how far apart they are.

The report's key number is each validation photo's distance to the nearest training photo: for a random split of
burst photos it is ~1 m (the model has seen the spot), for the location-disjoint split it is > the buffer radius.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..outputs import counted
from ..geo import LocalFrame, pairwise_m
from .cleaning import quantiles
from .outdir import atomic_dir, check_out
from .sources import GeoDataset, load_dataset
from .splits import SEED, Fold, location_disjoint_split, random_split

KINDS = ("both", "random", "geo")


@dataclass
class SplitConfig:
    kind: str = "both"
    val_frac: float = 0.2
    radius_m: float = 10.0
    seed: int = SEED
    overwrite: bool = False


def val_to_train_m(en: np.ndarray, fold: Fold) -> np.ndarray:
    if len(fold.train) == 0 or len(fold.val) == 0:
        return np.zeros(0)
    return pairwise_m(en[fold.val], en[fold.train]).min(axis=1)


def describe_fold(en: np.ndarray, fold: Fold, radius_m: float, buffered: bool) -> dict:
    d = val_to_train_m(en, fold)
    return {"train": int(len(fold.train)), "val": int(len(fold.val)), "dropped_by_buffer": int(fold.dropped),
            "buffer_m": radius_m if buffered else 0.0,
            "val_to_nearest_train_m": quantiles(d),
            f"val_with_train_within_{radius_m:g}m": int((d <= radius_m).sum())}


def make_folds(ds: GeoDataset, cfg: SplitConfig) -> dict[str, Fold]:
    n = len(ds)
    if n < 2:
        raise DataError(f"{ds.name}: {counted(n, 'photo')}; a split needs at least 2")
    folds = {}
    if cfg.kind in ("both", "random"):
        folds["random"] = random_split(n, cfg.val_frac, cfg.seed)
    if cfg.kind in ("both", "geo"):
        f = location_disjoint_split(ds.lat, ds.lon, cfg.val_frac, cfg.radius_m, cfg.seed)
        if len(f.train) == 0:
            raise DataError(f"{ds.name}: " + _no_train_advice(ds, cfg))
        folds["geo"] = f
    return folds


def _no_train_advice(ds: GeoDataset, cfg: SplitConfig) -> str:
    """Why the location-disjoint split has no training photo, with an option that works: the largest --radius
    that keeps one (whole metres), or --kind random when the photos stand at too few places to split by place."""
    unbuffered = location_disjoint_split(ds.lat, ds.lon, cfg.val_frac, 0.0, cfg.seed)
    what = f"the {cfg.radius_m:g} m buffer leaves no training photo"
    if len(unbuffered.train) and len(unbuffered.val):
        en = LocalFrame.around(ds.lat, ds.lon).to_en(ds.lat, ds.lon)
        room = float(pairwise_m(en[unbuffered.train], en[unbuffered.val]).min(axis=1).max())
        if room >= 1.0:
            return f"{what}; use --radius {max(0, int(np.ceil(room)) - 1)} or less"
    return (f"{what}: the photos stand at too few places for a location-disjoint split; "
            "use --kind random (a random split only)")


def write_split(dataset: str | Path, out: str | Path, cfg: SplitConfig | None = None) -> dict:
    cfg = cfg or SplitConfig()
    if cfg.kind not in KINDS:
        raise DataError(f"--kind {cfg.kind!r}: use one of {', '.join(KINDS)}")
    if not 0 < cfg.val_frac < 1:
        raise DataError(f"--val-frac {cfg.val_frac}: must be between 0 and 1")
    if cfg.radius_m < 0:
        raise DataError(f"--radius {cfg.radius_m}: must be >= 0 metres")
    out = Path(out)
    ds = load_dataset(dataset)
    src = Path(str(dataset))
    # Never inside (or around) the dataset: a dataset folder may be read-only or shared.
    check_out(out, [src] if src.exists() else [], cfg.overwrite, marker="split_report.json")
    folds = make_folds(ds, cfg)
    en = LocalFrame.around(ds.lat, ds.lon).to_en(ds.lat, ds.lon)
    report = {"tool": "img2gps data split", "dataset": str(dataset), "n": len(ds), "seed": cfg.seed,
              "val_frac": cfg.val_frac, "radius_m": cfg.radius_m, "skipped_rows": len(ds.skipped), "splits": {}}
    with atomic_dir(out) as tmp:
        for kind, fold in folds.items():
            d = tmp / kind if cfg.kind == "both" else tmp
            d.mkdir(exist_ok=True)
            ds.table.iloc[fold.train].to_csv(d / "train.csv", index=False)
            ds.table.iloc[fold.val].to_csv(d / "val.csv", index=False)
            info = describe_fold(en, fold, cfg.radius_m, buffered=kind == "geo")
            info["files"] = {"train": str(Path(kind if cfg.kind == "both" else ".") / "train.csv"),
                             "val": str(Path(kind if cfg.kind == "both" else ".") / "val.csv")}
            report["splits"][kind] = info
        (tmp / "split_report.json").write_text(json.dumps(report, indent=1))
    return report
