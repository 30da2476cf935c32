"""The build report: area summary, report.json, a short report.md, and points.png (positions in local metres)."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .. import __version__
from ..area import describe, split_areas
from ..geo import LocalFrame, bbox_of
from ..outputs import counted
from . import cleaning as cl

STEP_TITLES = {"bbox": "bounding box", "drift_dates": "GPS-drift dates", "singletons": "singleton points",
               "near_duplicates": "near-duplicates"}
STEP_COLOURS = {"bbox": "red", "drift_dates": "darkorange", "singletons": "magenta", "near_duplicates": "black"}


def area_summary(lat: np.ndarray, lon: np.ndarray) -> dict:
    en = cl.en_of(lat, lon)
    ext = en.max(0) - en.min(0)
    la0, lo0, la1, lo1 = bbox_of(lat, lon)  # lon_min > lon_max: the area crosses the +-180 meridian
    return {"bbox": {"lat_min": la0, "lon_min": lo0, "lat_max": la1, "lon_max": lo1},
            "extent_m": {"east_west": round(float(ext[0]), 1), "north_south": round(float(ext[1]), 1)},
            "distinct_positions": int(len({(round(a, 7), round(b, 7)) for a, b in zip(lat, lon)})),
            "nearest_other_photo_m": cl.quantiles(cl.nearest_other_m(en)),
            # far-apart places, each its own area (area.py): one line per area
            "areas": describe(split_areas(lat, lon)) if len(lat) else []}


def write_reports(folder: Path, report: dict, items: list) -> None:
    kept = [it for it in items if it.dropped_by is None]
    lat = np.array([it.latitude for it in kept])
    lon = np.array([it.longitude for it in kept])
    report["area"] = area_summary(lat, lon)
    report["devices"] = dict(Counter(it.device or "unknown" for it in kept).most_common())
    report["dates"] = dict(sorted(Counter((cl.date_of(it.time) or "unknown") for it in kept).items()))
    report["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["img2gps_version"] = __version__
    plot_points(folder / "points.png", items)
    (folder / "report.md").write_text(markdown(report))
    # Written last: its presence marks a complete build (outdir.check_out relies on it).
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))


def _names(xs: list[str], k: int = 8) -> str:
    return ", ".join(xs[:k]) + (f", ... (+{len(xs) - k})" if len(xs) > k else "")


def markdown(r: dict) -> str:
    c, a = r["counts"], r["area"]
    b, sp = a["bbox"], a["nearest_other_photo_m"]
    lines = [f"# Dataset built from `{r['source']}`", "",
             f"- photo files: {c['photo_files']}; skipped (unreadable / no position): {c['skipped']}; "
             f"geotagged: {c['geotagged']}; **kept: {c['kept']}** "
             f"({c['portrait']} portrait, {c['landscape']} landscape)",
             f"- positions from: " + ", ".join(f"{k} {v}" for k, v in c["label_source"].items()),
             f"- area: lat {b['lat_min']:.6f}..{b['lat_max']:.6f}, lon {b['lon_min']:.6f}..{b['lon_max']:.6f} "
             f"({a['extent_m']['east_west']:.0f} m E-W x {a['extent_m']['north_south']:.0f} m N-S); "
             f"{a['distinct_positions']} distinct positions",
             f"- spacing (distance from each photo to the nearest other photo): median {sp['median']} m, "
             f"P90 {sp['p90']} m",
             *[f"- {line}" for line in a.get("areas", [])], "",
             "## Cleaning (each step is off unless asked for; 'would drop' is shown either way)", "",
             "| step | on | would drop | dropped | details |", "|---|---|---|---|---|"]
    for step, s in r["cleaning"].items():
        if step == "bbox":
            det = f"{s['mode']}; box {s['bbox']}"
        elif step == "drift_dates":
            det = (f"flagged dates: {', '.join(s['flagged_dates']) or 'none'} ({counted(s['would_drop_flagged'], 'photo')}); "
                   f"named: {', '.join(s['named_dates']) or 'none'} ({counted(s['would_drop_named'], 'photo')})")
        elif step == "singletons":
            det = f"radius {s['radius_m']:g} m; by radius: " + ", ".join(
                f"{k} m: {v}" for k, v in s["would_drop_by_radius_m"].items())
        else:
            nh = s.get("nearest_hamming") or {}
            det = f"phash hamming <= {s['max_hamming']}" + (
                f"; closest pair differs by {nh['min']:g} bits (median nearest {nh['median']:g})" if nh else "")
        lines.append(f"| {STEP_TITLES[step]} | {'yes' if s['enabled'] else 'no'} | {s['would_drop']} | "
                     f"{s['dropped']} | {det} |")
    for step, s in r["cleaning"].items():
        if s["images"]:
            lines.append(f"\n{STEP_TITLES[step]} {'dropped' if s['enabled'] else 'would drop'}: {_names(s['images'])}")
    if r["skipped"]:
        lines += ["", "## Skipped files", ""] + [f"- `{s['file']}`: {s['reason']}" for s in r["skipped"][:50]]
        if len(r["skipped"]) > 50:
            lines.append(f"- ... and {len(r['skipped']) - 50} more (see report.json)")
    tr = r.get("track")
    if tr:
        est = ", ".join(f"{k}: {v['offset_s']:+.1f} s from {counted(v['photos'], 'photo')} (median misfit {v['median_m']} m)"
                        for k, v in tr["offset_estimate"].items() if v) or "none (no photo with both GPS and a time)"
        lines += ["", f"Track `{tr['file']}`: {tr['points']} points, {tr['span_utc'][0]} .. {tr['span_utc'][1]}, "
                      f"{tr['walked_m']:.0f} m; clock offset estimated {est}; used {tr['offset_used_s']}; "
                      f"{counted(tr['placed_by_time'], 'photo')} placed by time, {tr['refused_outside_track']} outside the track."]
        lines += [f"- `{v}`: {s['frames']} frames of {s['decoded']} ({s['blurred']} blurred, {s['duplicates']} "
                  "near-duplicates skipped)" for v, s in tr["videos"].items()]
    lab = r.get("labels")
    if lab:
        lines += ["", f"Labels CSV `{lab['csv']}`: {counted(lab['rows'], 'row')}, {lab['used']} used, "
                      f"{len(lab['rows_without_photo'])} without a photo, {len(lab['bad_rows'])} invalid."]
    return "\n".join(lines) + "\n"


def plot_points(path: Path, items: list) -> None:
    """Kept photos coloured by how many photos lie within 10 m; dropped ones as crosses, one colour per step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    kept = [it for it in items if it.dropped_by is None]
    frame_lat = np.array([it.latitude for it in kept])
    frame_lon = np.array([it.longitude for it in kept])
    frame = LocalFrame.around(frame_lat, frame_lon)
    en = frame.to_en(frame_lat, frame_lon)
    dens = np.asarray(cKDTree(en).query_ball_point(en, r=10.0, return_length=True))
    fig = Figure(figsize=(7, 6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    sc = ax.scatter(en[:, 0], en[:, 1], c=dens, cmap="viridis", s=28, edgecolors="k", linewidths=0.3,
                    label=f"kept ({len(kept)})")
    fig.colorbar(sc, ax=ax, label="photos within 10 m")
    # The view spans every photo except bbox rejects, which may be kilometres away and would shrink the rest.
    near = [it for it in items if it.dropped_by != "bbox"]
    view = frame.to_en([it.latitude for it in near], [it.longitude for it in near])
    lo, hi = view.min(0), view.max(0)
    pad = np.maximum((hi - lo) * 0.08, 10.0)
    outside = 0
    for step, colour in STEP_COLOURS.items():
        d = [it for it in items if it.dropped_by == step]
        if not d:
            continue
        den = frame.to_en([it.latitude for it in d], [it.longitude for it in d])
        inside = np.all((den >= lo - pad) & (den <= hi + pad), axis=1)
        outside += int((~inside).sum())
        ax.scatter(den[inside, 0], den[inside, 1], marker="x", s=30, c=colour,
                   label=f"dropped: {STEP_TITLES[step]} ({len(d)})")
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    title = f"{counted(len(kept), 'photo')} around {frame.lat0:.5f}, {frame.lon0:.5f}"
    if outside:
        title += f" ({outside} dropped off-view)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path)
