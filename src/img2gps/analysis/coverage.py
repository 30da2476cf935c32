"""Coverage map: where a gallery is thin and where its photos fail to locate, as square cells in metres, against
the reference paper's collection protocol (a capture point every 5-10 m, 8 directions at each point).

Directions come from the gallery photos' own EXIF compass heading (GPSImgDirection), which many phones write;
photos without it are counted as "no heading" and never guessed. Errors per cell come from a bench predictions CSV
(use a location-disjoint protocol such as kfold-geo for an honest map) or, by default, from a quick leave-one-out
k-NN over the cached gallery embeddings (optimistic where burst photos of one spot find each other)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..geo import LocalFrame
from ..outputs import counted

PROTOCOL_PHOTOS_PER_POINT = 8  # the paper: 8 directions at every capture point
PROTOCOL_SPACING_M = (5.0, 10.0)
NEIGHBOUR_TABLE = "Error against the nearest other photo (any direction, or facing within 45 degrees of its heading)"


@dataclass
class CoverageConfig:
    cell_m: float = 10.0
    error: str = "knn"  # knn (leave-one-out over cached embeddings) | none; ignored when predictions are given
    embed: str = "lite0"
    k: int = 3
    spec: str | None = None  # which method's rows of a predictions CSV (default: the first non-baseline one)
    bad_error_m: float = 25.0  # a cell whose photos are located worse than this on average is a "collect here" spot
    n_spots: int = 8
    min_separation_cells: float = 2.0  # suggested spots at least this many cells apart


def read_heading(data: bytes) -> tuple[float | None, float | None]:
    """(compass heading in degrees, the phone's reported horizontal GPS error in metres) from EXIF, when present."""
    from PIL import Image

    try:
        gps = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    except Exception:
        return None, None

    def num(tag):
        v = gps.get(tag)
        try:
            v = float(v[0]) / float(v[1]) if isinstance(v, tuple) else float(v)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return v if np.isfinite(v) else None

    h = num(17)
    return (h % 360 if h is not None else None), num(31)


def photo_table(ds) -> tuple[pd.DataFrame, LocalFrame]:
    """Per photo: east/north metres, heading sector (0-7, -1 unknown), reported GPS error."""
    frame = LocalFrame.around(ds.lat, ds.lon)
    en = frame.to_en(ds.lat, ds.lon)
    heads = [read_heading(ds.read(i)) for i in range(len(ds))]
    h = np.array([np.nan if a is None else a for a, _ in heads], float)
    sector = np.where(np.isnan(h), -1, np.floor(((np.nan_to_num(h) + 22.5) % 360) / 45)).astype(int)
    return pd.DataFrame({"image": ds.ids, "lat": ds.lat, "lon": ds.lon, "e": en[:, 0], "n": en[:, 1],
                         "heading": h, "sector": sector,
                         "gps_error_m": [np.nan if b is None else b for _, b in heads]}), frame


def loo_knn_errors(ds, embed: str, k: int) -> np.ndarray:
    """Leave-one-out k-NN error of every gallery photo (cached embeddings, the paper's weighted mean)."""
    from ..features.encoders import get_encoder
    from ..features.cache import embed_dataset
    from ..localization.aggregate import aggregate
    from ..retrieval.database import CosineIndex

    vecs = embed_dataset(get_encoder(embed), ds)
    en = LocalFrame.around(ds.lat, ds.lon).to_en(ds.lat, ds.lon)
    sims, idx = CosineIndex(vecs).search_excluding(k)
    return np.array([np.linalg.norm(aggregate(en[idx[r]], sims[r])[0] - en[r]) for r in range(len(ds))])


def errors_from_predictions(path: Path, ids: list[str], spec: str | None) -> tuple[np.ndarray, str]:
    p = pd.read_csv(path)
    need = {"spec", "image", "error_m"}
    if not need <= set(p.columns):
        raise DataError(f"{path}: not a bench predictions CSV (needs columns {', '.join(sorted(need))})")
    if "fraction" in p:
        p = p[p["fraction"] >= p["fraction"].max()]
    specs = [s for s in dict.fromkeys(p["spec"]) if s != "mean-coordinate"]
    spec = spec or (specs[0] if specs else None)
    if spec not in set(p["spec"]):
        raise DataError(f"{path}: no rows for method {spec!r}; it has {', '.join(dict.fromkeys(p['spec']))}")
    e = p[p["spec"] == spec].groupby("image")["error_m"].mean()
    return np.array([e.get(i, np.nan) for i in ids], float), spec


def hull_path(en: np.ndarray):
    """(matplotlib Path of the convex hull of the photo positions, its area in m2); None when collinear or too few."""
    from matplotlib.path import Path as MPath
    from scipy.spatial import ConvexHull, QhullError

    if len(np.unique(np.round(en, 1), axis=0)) < 3:
        return None
    try:
        h = ConvexHull(en)
    except QhullError:
        return None
    return MPath(en[h.vertices]), float(h.volume)


def grid_cells(photos: pd.DataFrame, cfg: CoverageConfig) -> tuple[pd.DataFrame, float]:
    """Cells of the bounding box (+1 cell margin): centre, count, capture points, sectors, error, in-hull; and the
    hull's area in m2."""
    s = cfg.cell_m
    # cells aligned to multiples of the size in the data's frame, one empty cell of margin
    e0, n0 = (np.floor(photos["e"].min() / s) - 1) * s, (np.floor(photos["n"].min() / s) - 1) * s
    ix = np.floor((photos["e"] - e0) / s).astype(int)
    iy = np.floor((photos["n"] - n0) / s).astype(int)
    nx, ny = int(ix.max()) + 2, int(iy.max()) + 2
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    cells = pd.DataFrame({"ix": gx.ravel(), "iy": gy.ravel()})
    cells["ce"], cells["cn"] = e0 + (cells["ix"] + 0.5) * s, n0 + (cells["iy"] + 0.5) * s
    ph = photos.assign(ix=ix, iy=iy, point=list(zip(photos["lat"].round(7), photos["lon"].round(7))))
    g = ph.groupby(["ix", "iy"])
    stats = pd.DataFrame({
        "photos": g.size(),
        "points": g["point"].nunique(),
        "with_heading": g["sector"].apply(lambda x: int((x >= 0).sum())),
        "sectors": g["sector"].apply(lambda x: int(x[x >= 0].nunique())),
        "error_m": g["error_m"].mean(),
    }).reset_index()
    cells = cells.merge(stats, on=["ix", "iy"], how="left")
    counts = ["photos", "points", "with_heading", "sectors"]
    cells[counts] = cells[counts].fillna(0).astype(int)
    en = photos[["e", "n"]].to_numpy(float)
    hp = hull_path(en)
    centres = cells[["ce", "cn"]].to_numpy(float)
    cells["in_hull"] = hp[0].contains_points(centres) | (cells["photos"] > 0) if hp else cells["photos"] > 0
    from scipy.spatial import cKDTree

    cells["gap_m"] = cKDTree(en).query(centres)[0]  # from the cell centre to the nearest gallery photo
    return cells, (hp[1] if hp else 0.0)


def protocol_gap(photos: pd.DataFrame, cells: pd.DataFrame, hull_area: float, cfg: CoverageConfig) -> dict:
    """How far the gallery is from the paper's protocol, in numbers a user can act on."""
    hull = cells[cells["in_hull"]]
    occ = hull[hull["photos"] > 0]
    pts = photos.drop_duplicates(["lat", "lon"])[["e", "n"]].to_numpy(float)
    from scipy.spatial import cKDTree

    nn = cKDTree(pts).query(pts, k=2)[0][:, 1] if len(pts) > 1 else np.array([np.nan])
    with_h = occ[occ["with_heading"] > 0]
    per_point = photos.groupby(["lat", "lon"]).size()
    acc = photos["gps_error_m"].dropna()  # the phone's own accuracy estimate, where it wrote one
    return {
        "cell_m": cfg.cell_m, "photos": int(len(photos)), "capture_points": int(len(pts)),
        "hull_area_m2": round(hull_area, 1), "hull_cells": int(len(hull)), "occupied_hull_cells": int(len(occ)),
        "occupied_fraction": float(len(occ) / max(len(hull), 1)),
        "photos_per_occupied_cell_median": float(occ["photos"].median()) if len(occ) else 0.0,
        "photos_per_occupied_cell_mean": float(occ["photos"].mean()) if len(occ) else 0.0,
        "cells_with_8_or_more_photos": int((occ["photos"] >= PROTOCOL_PHOTOS_PER_POINT).sum()),
        "photos_per_capture_point_median": float(per_point.median()),
        "points_with_several_photos": int((per_point >= 2).sum()),
        "photos_at_shared_points": int(per_point[per_point >= 2].sum()),
        "capture_point_spacing_median_m": float(np.nanmedian(nn)),
        "capture_point_spacing_p90_m": float(np.nanquantile(nn, 0.9)),
        "photos_with_heading": int((photos["sector"] >= 0).sum()),
        "sectors_per_cell_median": float(with_h["sectors"].median()) if len(with_h) else None,
        "gps_error_reported_median_m": float(acc.median()) if len(acc) else None,
        "gps_error_reported_p90_m": float(acc.quantile(0.9)) if len(acc) else None,
        "protocol_photos_needed": int(len(hull) * PROTOCOL_PHOTOS_PER_POINT),
    }


def error_by_neighbour(photos: pd.DataFrame, edges=(0, 5, 10, 20, 40)) -> list[dict]:
    """Per-photo error against the distance to the nearest other photo: any photo, and (for photos with a heading)
    the nearest one facing within 45 degrees. Says how close a similar view must be for a query to find it."""
    if photos["error_m"].isna().all() or len(photos) < 2:
        return []
    en = photos[["e", "n"]].to_numpy(float)
    d = np.linalg.norm(en[:, None] - en[None], axis=-1) if len(en) <= 2500 else None
    if d is None:  # large galleries: skip rather than build a huge matrix
        return []
    np.fill_diagonal(d, np.inf)
    h = photos["heading"].to_numpy(float)
    dh = np.abs((h[:, None] - h[None] + 180) % 360 - 180)  # NaN where either heading is unknown
    same = np.where(dh <= 45, d, np.inf)
    rows = []
    bins = list(edges) + [np.inf]
    for label, near, mask in (("any direction", d.min(1), np.ones(len(en), bool)),
                              ("same direction (+-45 deg)", same.min(1), ~np.isnan(h))):
        for lo, hi in zip(bins[:-1], bins[1:]):
            sel = mask & (near >= lo) & (near < hi) & photos["error_m"].notna().to_numpy()
            if sel.any():
                e = photos["error_m"].to_numpy(float)[sel]
                rows.append({"nearest other photo": label, "distance": f"{lo:g}-{hi:g} m" if np.isfinite(hi) else
                             f">= {lo:g} m or none", "photos": int(sel.sum()), "mean error m": round(float(e.mean()), 1),
                             "median error m": round(float(np.median(e)), 1)})
    return rows


def collect_next(cells: pd.DataFrame, frame: LocalFrame, cfg: CoverageConfig) -> list[dict]:
    """Cells inside the hull where a query would fail, two kinds taken in turn: cells whose photos are located
    badly (highest mean error first) and gaps (farthest from any photo first); spots kept min_separation_cells
    apart. A gap deep inside the hull may be a building: the advice is then the nearest walkable spot."""
    hull = cells[cells["in_hull"]]
    bad = hull[(hull["photos"] > 0) & (hull["error_m"] > cfg.bad_error_m)].sort_values("error_m", ascending=False)
    gaps = hull[(hull["photos"] == 0) & (hull["gap_m"] >= cfg.cell_m / 2)].sort_values("gap_m", ascending=False)
    queues = [list(bad.itertuples()), list(gaps.itertuples())]
    chosen: list[dict] = []
    turn = 0
    while len(chosen) < cfg.n_spots and any(queues):
        q = queues[turn % 2] or queues[(turn + 1) % 2]
        turn += 1
        while q:
            c = q.pop(0)
            if all(np.hypot(c.ce - o["east_m"], c.cn - o["north_m"]) >= cfg.min_separation_cells * cfg.cell_m
                   for o in chosen):
                break
        else:
            continue
        lat, lon = frame.to_latlon(np.array([c.ce, c.cn]))
        if c.photos == 0:
            why = f"gap: no photo within {c.gap_m:.0f} m"
        else:
            dirs = f", {int(c.sectors)}/8 directions" if c.with_heading else ""
            why = f"fails: {counted(int(c.photos), 'photo')}{dirs}, located {c.error_m:.0f} m off on average"
        chosen.append({"spot": len(chosen) + 1, "position": f"{float(lat):.6f}, {float(lon):.6f}",
                       "east_m": round(float(c.ce), 1), "north_m": round(float(c.cn), 1), "why": why})
    return chosen


def plot_coverage(out: Path, photos: pd.DataFrame, cells: pd.DataFrame, spots: list[dict], cfg: CoverageConfig,
                  title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("photos", "photos per cell", "viridis"), ("sectors", "directions per cell (of 8, EXIF heading)", "viridis"),
              ("error_m", "mean error of the cell's photos (m)", "magma_r")]
    if photos["sector"].max() < 0:
        panels.pop(1)
    if photos["error_m"].isna().all():
        panels.pop()
    en = photos[["e", "n"]].to_numpy(float)
    hp = hull_path(en)
    nx, ny, s = int(cells["ix"].max()) + 1, int(cells["iy"].max()) + 1, cfg.cell_m
    x_edges = cells["ce"].min() - s / 2 + s * np.arange(nx + 1)
    y_edges = cells["cn"].min() - s / 2 + s * np.arange(ny + 1)

    def grid(values) -> np.ndarray:  # (ny, nx) array for pcolormesh, NaN where no value
        a = np.full((nx, ny), np.nan)
        a[cells["ix"].to_numpy(), cells["iy"].to_numpy()] = values
        return a.T

    empty = grid(np.where(cells["in_hull"] & (cells["photos"] == 0), 1.0, np.nan))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), dpi=90, sharey=True, squeeze=False)
    for ax, (key, label, cmap) in zip(axes[0], panels):
        vals = np.where(cells["photos"] > 0, cells[key].astype(float), np.nan)
        top = float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0
        vmax = {"photos": max(8.0, top), "sectors": 8.0}.get(key, top)
        m = ax.pcolormesh(x_edges, y_edges, grid(vals), cmap=cmap, vmin=0, vmax=vmax)
        ax.pcolormesh(x_edges, y_edges, empty, cmap="Greys", vmin=0, vmax=5, alpha=0.6)
        fig.colorbar(m, ax=ax, shrink=0.7)
        if hp:
            v = hp[0].vertices
            ax.plot(np.r_[v[:, 0], v[:1, 0]], np.r_[v[:, 1], v[:1, 1]], c="#555", lw=0.8)
        ax.scatter(en[:, 0], en[:, 1], s=3, c="k", zorder=3)
        for sp in spots:
            ax.scatter(sp["east_m"], sp["north_m"], s=90, marker="*", c="#ff7f0e", ec="k", lw=0.5, zorder=4)
            ax.annotate(str(sp["spot"]), (sp["east_m"], sp["north_m"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_title(label, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("east (m)")
    axes[0][0].set_ylabel("north (m)")
    fig.suptitle(f"{title}  ({cfg.cell_m:g} m cells; grey: empty cells inside the hull; stars: collect here next)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def analyse(ds, cfg: CoverageConfig = CoverageConfig(), predictions: Path | None = None) -> dict:
    if cfg.cell_m <= 0:
        raise DataError(f"coverage: cell size must be > 0 m (got {cfg.cell_m:g})")
    photos, frame = photo_table(ds)
    source = None
    if predictions is not None:
        photos["error_m"], spec = errors_from_predictions(Path(predictions), ds.ids, cfg.spec)
        source = f"bench predictions {Path(predictions).name} ({spec})"
    elif cfg.error == "knn" and len(ds) >= 2:
        photos["error_m"] = loo_knn_errors(ds, cfg.embed, cfg.k)
        source = f"leave-one-out knn:embed={cfg.embed}:k={cfg.k} over the gallery"
    elif cfg.error not in ("knn", "none"):
        raise DataError(f"coverage: error must be knn or none (got {cfg.error!r})")
    else:
        photos["error_m"] = np.nan
    cells, area = grid_cells(photos, cfg)
    return {"photos": photos, "cells": cells, "frame": frame, "gap": protocol_gap(photos, cells, area, cfg),
            "spots": collect_next(cells, frame, cfg), "error_source": source, "by_neighbour": error_by_neighbour(photos)}


def write_coverage(out_dir: Path, ds, cfg: CoverageConfig = CoverageConfig(),
                   predictions: Path | None = None) -> list[Path]:
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = analyse(ds, cfg, predictions)
    g = r["gap"]
    title = f"Coverage — {Path(str(ds.name)).name}"
    png = plot_coverage(out_dir / "coverage.png", r["photos"], r["cells"], r["spots"], cfg, title)
    occupied = r["cells"][r["cells"]["photos"] > 0]
    occupied.drop(columns=["ix", "iy"]).to_csv(out_dir / "coverage_cells.csv", index=False, float_format="%.2f")
    lo, hi = PROTOCOL_SPACING_M
    notes = [
        f"Inside the convex hull of the photos ({g['hull_area_m2']:.0f} m2): {g['occupied_hull_cells']} of "
        f"{g['hull_cells']} {cfg.cell_m:g} m cells hold at least one photo ({100 * g['occupied_fraction']:.0f}%); "
        f"the paper's protocol (a point every {lo:g}-{hi:g} m) fills every cell it can reach (cells inside "
        f"buildings cannot be reached, so this share understates coverage of the walkable ground).",
        f"Photos per occupied cell: median {g['photos_per_occupied_cell_median']:.0f}, mean "
        f"{g['photos_per_occupied_cell_mean']:.1f} (protocol: >= {PROTOCOL_PHOTOS_PER_POINT}, one point x 8 directions); "
        f"cells with 8 or more: {g['cells_with_8_or_more_photos']}. Photos per capture point (distinct GPS value): median "
        f"{g['photos_per_capture_point_median']:.0f}; {g['points_with_several_photos']} points hold "
        f"{g['photos_at_shared_points']} photos between them.",
        f"Spacing from each capture point to the nearest other: median {g['capture_point_spacing_median_m']:.1f} m, "
        f"P90 {g['capture_point_spacing_p90_m']:.1f} m.",
        f"The protocol would take about {g['protocol_photos_needed']} photos over this hull at {cfg.cell_m:g} m "
        f"spacing; the gallery has {g['photos']}.",
    ]
    if g["photos_with_heading"]:
        notes.append(f"{g['photos_with_heading']} of {g['photos']} photos carry an EXIF compass heading; among cells "
                     f"with any, the median cell covers {g['sectors_per_cell_median']:.0f} of 8 directions (45 degree "
                     f"sectors). Photos without a heading are not counted as any direction.")
    else:
        notes.append("No photo carries an EXIF compass heading, so directions covered cannot be measured here.")
    if g["gps_error_reported_median_m"] is not None:
        notes.append(f"Phone-reported GPS accuracy (EXIF GPSHPositioningError): median "
                     f"{g['gps_error_reported_median_m']:.1f} m, P90 {g['gps_error_reported_p90_m']:.1f} m.")
    if r["error_source"]:
        notes.append(f"Cell errors: {r['error_source']}.")

    notes.append("Collect here next (table above): cells whose photos fail (more photos there, facing other ways) "
                 "and gaps (a gap deep inside the hull may be a building: photograph it from the nearest path)."
                 if r["spots"] else "Collect here next: nothing stands out.")
    return [png, *write_report(out_dir, "coverage", title, r["spots"], notes, images=[png],
                               extra={"data": str(ds.name), "protocol_gap": g, "error_source": r["error_source"],
                                      "by_neighbour": r["by_neighbour"]},
                               tables={NEIGHBOUR_TABLE: r["by_neighbour"]} if r["by_neighbour"] else None),
            out_dir / "coverage_cells.csv"]
