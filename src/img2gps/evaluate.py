"""Metrics and the bench protocol: fit each method per fold, predict held-out photos one at a time, score."""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .answer_kinds import VERIFIED_SOURCES
from .bench_resume import FoldCheckpoints, run_key
from .data.shared_photos import ORIGINAL, Delivered, kind_ratios
from .data.sources import GeoDataset
from .data.splits import Fold, folds_for_protocol
from .errors import DataError
from .geo import LocalFrame, haversine_m, latlon_sd, spatial_clusters, z2_error
from .outputs import counted
from .photos import open_query
from .predictors.registry import make_predictor
from .provenance import code_revision

BASELINE = "mean-coordinate"
METRIC_KEYS = ("mean_m", "median_m", "p90_m", "acc_10m", "acc_25m", "acc_50m", "mse_norm", "fit_s",
               "predict_ms_p50", "predict_ms_p95", "radius_coverage", "radius_median_m", "recognised_frac",
               "recognised_median_m", "recognised_acc_25m", "chance_ece", "recall_at_1", "recall_at_5", "recall_at_10")
RECALL_N = (1, 5, 10)
RECALL_M = 25.0  # VPR convention: a retrieved gallery photo within 25 m of the truth is a positive
HEADING_KEYS = ("heading_n", "heading_truth_n", "heading_median_deg", "heading_acc_15deg", "heading_acc_30deg",
                "heading_radius_coverage")
COPY_HEADING = "copy-heading"  # baseline: the heading of the best verified gallery photo, copied


def heading_metrics(true_deg, pred_deg, radius_deg=None) -> dict:
    """Compass-heading errors over photos whose truth has a heading and that got one (NaN = none).

    heading_n counts those photos, heading_truth_n the photos with a true heading at all; acc_* are fractions
    of heading_n; heading_radius_coverage: fraction whose error is inside heading_radius_deg (where given)."""
    t = np.asarray(true_deg, float)
    p = np.asarray(pred_deg, float)
    r = np.full_like(t, np.nan) if radius_deg is None else np.asarray(radius_deg, float)
    ok = np.isfinite(t) & np.isfinite(p)
    d = (p[ok] - t[ok]) % 360.0
    err = np.minimum(d, 360.0 - d)
    rok = np.isfinite(r[ok])
    out = {"heading_n": int(ok.sum()), "heading_truth_n": int(np.isfinite(t).sum())}
    if not ok.any():
        return out | {"heading_median_deg": None, "heading_acc_15deg": None, "heading_acc_30deg": None,
                      "heading_radius_coverage": None}
    return out | {"heading_median_deg": float(np.median(err)), "heading_acc_15deg": float(np.mean(err <= 15)),
                  "heading_acc_30deg": float(np.mean(err <= 30)),
                  "heading_radius_coverage": float(np.mean(err[rok] <= r[ok][rok])) if rok.any() else None}


def radius_metrics(e: np.ndarray, r: np.ndarray) -> dict:
    """radius_coverage (share of errors e within their radius r, metres) and radius_median_m over the rows that
    have a radius; both None when no row has one (a baseline that gives no radius covers nothing and misses
    nothing: it has no coverage to show)."""
    ok = np.isfinite(r)
    if not ok.any():
        return {"radius_coverage": None, "radius_median_m": None}
    return {"radius_coverage": float(np.mean(e[ok] <= r[ok])), "radius_median_m": float(np.median(r[ok]))}


def metrics(rows: pd.DataFrame, fit_s: float = float("nan")) -> dict:
    """rows: one per query with error_m, radius_m, recognised, z2 (squared z-error summed over lat/lon), ms.
    With a `source` column also verified_frac (share recognised or a verified scene), sources and by_kind."""
    e = rows["error_m"].to_numpy(float)
    if len(e) == 0:
        return {k: float("nan") for k in METRIC_KEYS} | {"n": 0}
    rec = rows["recognised"].to_numpy(bool)
    ms = rows["predict_ms"].to_numpy(float)
    return {
        "n": int(len(e)),
        "mean_m": float(e.mean()),
        "median_m": float(np.median(e)),
        "p90_m": float(np.quantile(e, 0.9)),
        "acc_10m": float(np.mean(e <= 10)),
        "acc_25m": float(np.mean(e <= 25)),
        "acc_50m": float(np.mean(e <= 50)),
        "mse_norm": float(rows["z2"].mean() / 2),  # mean over both coordinates, as in the paper
        "fit_s": float(fit_s),
        "predict_ms_p50": float(np.median(ms)),
        "predict_ms_p95": float(np.quantile(ms, 0.95)),
        **radius_metrics(e, rows["radius_m"].to_numpy(float)),
        "recognised_frac": float(rec.mean()),
        "recognised_median_m": float(np.median(e[rec])) if rec.any() else None,
        "recognised_acc_25m": float(np.mean(e[rec] <= 25)) if rec.any() else None,
        "chance_ece": _chance_ece(rows),
        **{f"recall_at_{n}": _recall(rows, n) for n in RECALL_N},
    } | ({"verified_frac": float(rows["source"].isin(VERIFIED_SOURCES).mean()),  # recognised or a verified scene
          "sources": {str(k): int(v) for k, v in rows["source"].value_counts().items()},
          "by_kind": by_kind(rows)} if "source" in rows else {}
         ) | (heading_metrics(rows["true_heading"], rows["heading_deg"], rows["heading_radius_deg"])
         if "true_heading" in rows else {})


def by_kind(rows: pd.DataFrame) -> dict[str, dict]:
    """Per answer kind (recognised / not recognised, each `source`) and per difficulty bin (`difficulty`, the
    Mondrian group whose radius applied): count, share of all answers, radius coverage, median radius and error
    (m), share within 25 m (for recognised answers: their precision) and the mean chance within 25 m. The radius
    is a promise per kind and bin, so it is measured per kind and bin."""
    e = rows["error_m"].to_numpy(float)
    r = rows["radius_m"].to_numpy(float)
    rec = rows["recognised"].to_numpy(bool)
    src = rows["source"].astype(str).to_numpy()
    ch = rows["chance_25m"].to_numpy(float) if "chance_25m" in rows else np.full(len(e), np.nan)
    groups = {"recognised": rec, "not recognised": ~rec} | {f"source={s}": src == s for s in sorted(set(src))}
    if "difficulty" in rows:
        dif = rows["difficulty"].fillna("").astype(str).to_numpy()  # missing (a model without bins) stays ""
        groups |= {f"difficulty={d}": dif == d for d in sorted(set(dif)) if ":" in d}
    return {k: {"n": int(m.sum()), "share": float(m.mean()), **radius_metrics(e[m], r[m]),
                "median_m": float(np.median(e[m])),
                "acc_25m": float(np.mean(e[m] <= 25)),
                "chance_mean": float(np.nanmean(ch[m])) if np.isfinite(ch[m]).any() else None}
            for k, m in groups.items() if m.any()}


def _chance_ece(rows: pd.DataFrame) -> float | None:
    """Expected calibration error (10 bins) of the chance within 25 m against the errors; None without chances."""
    from .localization.chance import CHANCE_M, ece

    if "chance_25m" not in rows:
        return None
    c = rows["chance_25m"].to_numpy(float)
    ok = np.isfinite(c)
    return ece(c[ok], rows["error_m"].to_numpy(float)[ok] <= CHANCE_M) if ok.any() else None


def _recall(rows: pd.DataFrame, n: int) -> float | None:
    """Fraction of queries with a positive in the retrieval top n; None for methods without retrieval."""
    col = f"hit_{n}"
    if col not in rows.columns:
        return None
    h = pd.to_numeric(rows[col], errors="coerce").dropna()
    return float(h.mean()) if len(h) else None


def retrieval_hits(ranked: np.ndarray | None, true_lat: float, true_lon: float, gallery_lat: np.ndarray,
                   gallery_lon: np.ndarray, ns=RECALL_N, radius_m: float = RECALL_M) -> dict[str, float]:
    """{'hit_N': 1.0/0.0} for each N: is a gallery photo within radius_m (metres) of the truth among the first N
    retrieved (`ranked`: gallery row indices, best first)? NaN for every N when ranked is None."""
    if ranked is None:
        return {f"hit_{n}": float("nan") for n in ns}
    ranked = np.asarray(ranked, int)
    close = haversine_m(true_lat, true_lon, gallery_lat[ranked], gallery_lon[ranked]) <= radius_m
    return {f"hit_{n}": float(close[:n].any()) for n in ns}


def score_queries(p, ds: GeoDataset, indices, lat_sd: float = 1.0, lon_sd: float = 1.0, top_k: int = 5,
                  progress: bool = False, predictions: list | None = None,
                  deliver: Callable[[int], bytes] | None = None, query_as: str = ORIGINAL) -> list[dict]:
    """The one scoring path (bench, eval, demo): predict each query photo alone, timed from its bytes.

    Returns one row per query: spec, query_as, image, true/pred lat/lon, error_m, radius_m, confidence,
    recognised, z2 (squared z-error over lat/lon with the given standard deviations in degrees, geo.latlon_sd;
    wrap-aware), predict_ms, hit_1/5/10.
    `predictions`, when given, receives each Prediction in order. `deliver(i)`, when given, returns the bytes the
    user hands over for photo i (e.g. data.shared_photos.as_shared; made before the timer starts), labelled
    `query_as` in the rows.
    """
    glat = p.gallery["Latitude"].to_numpy(float)
    glon = p.gallery["Longitude"].to_numpy(float)
    rows = []
    for i in tqdm(list(indices), desc="eval", unit="photo", disable=None if progress else True):  # None: terminal only
        data = ds.read(int(i)) if deliver is None else deliver(int(i))  # bytes: decoding is part of the timed query
        t0 = time.perf_counter()
        query = open_query(data, max_side=p.query_max_side)[0]
        pred, ranked = p.predict_ranked([query], top_k=top_k, n=max(RECALL_N))[0]
        ms = (time.perf_counter() - t0) * 1000
        if predictions is not None:
            predictions.append(pred)
        tlat, tlon = ds.lat[i], ds.lon[i]
        rows.append({
            "spec": p.spec, "query_as": query_as, "image": ds.ids[i], "true_lat": tlat, "true_lon": tlon,
            "pred_lat": pred.latitude, "pred_lon": pred.longitude,
            "error_m": float(haversine_m(tlat, tlon, pred.latitude, pred.longitude)),
            "radius_m": pred.radius_m, "confidence": pred.confidence, "recognised": bool(pred.recognised),
            "chance_25m": np.nan if pred.chance_25m is None else float(pred.chance_25m),
            "z2": z2_error(pred.latitude, pred.longitude, tlat, tlon, (lat_sd, lon_sd)),
            "predict_ms": ms, **retrieval_hits(ranked, tlat, tlon, glat, glon),
            "source": pred.source, "difficulty": pred.difficulty or pred.source,
            "true_heading": float(ds.table.at[int(i), "heading"]) if "heading" in ds.table else np.nan,
            "heading_deg": np.nan if pred.heading_deg is None else float(pred.heading_deg),
            "heading_radius_deg": np.nan if pred.heading_radius_deg is None else float(pred.heading_radius_deg),
            "best_verified": pred.neighbours[0].image_id if pred.recognised and pred.neighbours else None,
            "query_region": "" if pred.query_region is None else " ".join(map(str, pred.query_region)),
            "query_view": pred.query_view or "",
        })
    return rows


def subsample_spatial(train: np.ndarray, lat, lon, fraction: float, seed: int = 42) -> np.ndarray:
    """Keep ~fraction of the training photos, stratified over spatial cells so every fraction covers the area."""
    if fraction >= 1.0:
        return train
    en = LocalFrame.around(lat[train], lon[train]).to_en(lat[train], lon[train])
    n_cells = max(1, min(len(train) // 4, 20))
    labels = spatial_clusters(en, n_cells, seed)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = train[labels == c]
        m = max(1, int(round(fraction * len(members))))
        keep.extend(rng.choice(members, size=min(m, len(members)), replace=False))
    return np.sort(np.array(keep, int))


@dataclass
class MethodRun:
    spec: str
    rows: list[dict] = field(default_factory=list)
    fit_s: float = 0.0


def run_fold(spec: str, ds: GeoDataset, fold: Fold, run: MethodRun, warm: bool, top_k: int = 5,
             kinds: Sequence[str] = (ORIGINAL,), delivered: Delivered | None = None) -> None:
    train = ds.subset(fold.train)
    p = make_predictor(spec)
    t0 = time.perf_counter()
    p.fit(train)
    run.fit_s += time.perf_counter() - t0
    # z-scores use the training fold's spread (the paper's normalised MSE); the mean cancels in the difference
    sd = latlon_sd(train.lat, train.lon)
    gal_heading = dict(zip(train.ids, train.table["heading"])) if "heading" in train.table else {}
    if warm and len(fold.val):  # one untimed query so lazy loading is not counted as latency
        p.predict([open_query(ds.read(int(fold.val[0])), max_side=p.query_max_side)[0]], top_k=top_k)
    delivered = delivered or Delivered(ds)
    rows = [r for kind in kinds
            for r in score_queries(p, ds, fold.val, *sd, top_k, deliver=delivered(kind), query_as=kind)]
    for row in rows:  # the copy-heading baseline: the heading of the best verified gallery photo
        row["copy_heading"] = float(gal_heading.get(row["best_verified"], np.nan))
    run.rows.extend(rows)


def run_bench(ds: GeoDataset, protocol: str, specs: list[str], fractions: list[float] | None = None,
              top_k: int = 5, progress: bool = True, query_as: Sequence[str] | None = None,
              seed: int = 0, only_folds: Sequence[int] | None = None,
              checkpoint: Path | None = None) -> tuple[dict, pd.DataFrame]:
    """Returns (the bench JSON dict, per-photo predictions).

    query_as: kinds of data.shared_photos (the original is always included): each held-out photo is also located
    as delivered by each kind (transformations seeded by `seed`), against the same fitted model; results then
    hold one entry per method and kind ("SPEC as KIND"), and `table` their ratios to the original photos.
    checkpoint: a folder (bench_resume.folder_for) where each finished fold is saved and from which a rerun of the
    same run (same key: data, protocol, methods, kinds, seed, fractions, code) reads it instead of computing it."""
    kinds = [ORIGINAL] + [k for k in dict.fromkeys(query_as or []) if k != ORIGINAL]
    delivered = Delivered(ds, seed)
    specs = list(dict.fromkeys([BASELINE] + [s for s in specs if s]))  # baseline always first, no duplicates
    ds = ds.with_camera_meta()  # true headings for scoring (and gallery headings for methods that use them)
    folds = folds_for_protocol(protocol, ds)
    n_all = len(folds)
    numbers = sorted(set(only_folds)) if only_folds else list(range(1, n_all + 1))  # the protocol's fold numbers
    if only_folds:
        if any(not 1 <= f <= n_all for f in only_folds):
            raise DataError(f"{ds.name}: --folds {','.join(map(str, only_folds))}: protocol {protocol} has folds 1..{n_all}")
        folds = [folds[f - 1] for f in sorted(set(only_folds))]
    if any(len(f.train) == 0 for f in folds) or not folds:
        raise DataError(f"{ds.name}: protocol {protocol} leaves a fold with no training photos "
                        f"({counted(len(ds), 'photo')} in the dataset; the spatial buffer may remove them all)")
    fracs = sorted(set(fractions or [])) or [1.0]
    all_rows = []
    out: dict = {
        "data": ds.name, "protocol": protocol, "n": int(sum(len(f.val) for f in folds)),
        "n_folds": n_all, "train_dropped_by_buffer": int(sum(f.dropped for f in folds)),
        **({"folds_info": folds[0].info} if folds and folds[0].info else {}),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "img2gps " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("img2gps") else None,
        "machine": {"python": platform.python_version(), "cpus": _cpu_count(), "platform": platform.platform()},
        "code": code_revision(),  # at the start: a long run must not record commits made while it ran
        "units": {"*_m": "metres", "acc_*": "fraction 0..1", "fit_s": "seconds, total over folds",
                  "predict_ms_*": "milliseconds per photo, batch 1"},
        "results": {},
    }
    ck = FoldCheckpoints(checkpoint, run_key(ds, protocol, specs, kinds, seed, fracs, out["code"]),
                         lambda m: print(m, file=sys.stderr)) if checkpoint is not None else None
    by_fraction: dict = {}
    gallery_n: dict = {}  # fraction -> {fold: training-gallery size}
    total = len(specs) * len(folds) * len(fracs)
    bar = tqdm(total=total, desc="bench", unit="fit", disable=None if progress else True)  # None: terminal only
    for frac in fracs:
        for spec in specs:
            run, warm = MethodRun(spec), True
            for fi, (fold, number) in enumerate(zip(folds, numbers)):
                bar.set_postfix_str(f"{spec} f={frac:g} fold {fi + 1}/{len(folds)}")
                f = fold if frac >= 1.0 else Fold(subsample_spatial(fold.train, ds.lat, ds.lon, frac), fold.val)
                saved = ck.load(frac, spec, number) if ck else None
                if saved is not None:  # a finished fold of an earlier, stopped run: recorded in the JSON
                    run.rows.extend(saved[0])
                    run.fit_s += saved[1]
                    out["resumed_folds"] = out.get("resumed_folds", 0) + 1
                else:
                    n0, fit0 = len(run.rows), run.fit_s
                    run_fold(spec, ds, f, run, warm=warm, top_k=top_k, kinds=kinds, delivered=delivered)
                    warm = False  # the first fold computed in this process warms up; resumed ones need none
                    if ck:
                        ck.save(frac, spec, number, run.rows[n0:], run.fit_s - fit0)
                gallery_n.setdefault(frac, {})[fi] = len(f.train)  # the learning curve's x axis
                bar.update(1)
            every = pd.DataFrame(run.rows)
            every["fraction"] = frac
            all_rows.append(every)
            rows = every[every["query_as"] == ORIGINAL]
            m = metrics(rows, run.fit_s)
            if frac >= 1.0:
                out["results"][spec] = m
                for kind in kinds[1:]:
                    out["results"][f"{spec} as {kind}"] = {"spec": spec, "query_as": kind} | metrics(
                        every[every["query_as"] == kind], run.fit_s)
                if COPY_HEADING not in out["results"] and rows["recognised"].any():
                    # the first method with verified answers: copy its best verified photo's heading
                    out["results"][COPY_HEADING] = {"based_on": spec, "n": int(len(rows))} | heading_metrics(
                        rows["true_heading"], rows["copy_heading"])
            by_fraction.setdefault(f"{frac:g}", {"results": {}})["results"][spec] = m
            by_fraction[f"{frac:g}"]["gallery_n_mean"] = float(np.mean(list(gallery_n[frac].values())))
    bar.close()
    if only_folds:
        out["folds_run"] = sorted(set(only_folds))
    if len(kinds) > 1:
        out["query_as"] = {"kinds": kinds, "seed": seed, "transformations": "docs/shared-photos.md"}
        out["table"] = kind_ratios(out["results"], specs, kinds[1:])
    out["results_fraction"] = 1.0
    if fractions:
        out["by_fraction"] = by_fraction
        if not out["results"]:
            # no silent fallback: the headline results are those of the largest fraction, and the JSON says so
            out["results_fraction"] = max(fracs)
            out["results"] = by_fraction[f"{max(fracs):g}"]["results"]
    preds = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
    return out, preds


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1
