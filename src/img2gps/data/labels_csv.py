"""Checks a --labels CSV against the photos it labels: rows that contradict the photo's own EXIF GPS, rows whose
latitude and longitude look swapped, and rows far from every other photo. Pure functions, no I/O.

"Far from every other photo" is the gallery's own definition of an area (area.py): a row alone in an area of its
own, more than AREA_GAP_M from any other photo, while the other photos share areas. A typo'd coordinate or a
photo from another city reads so; a second campus with several photos is an area, not a mistake.

A swapped row (e.g. (-75.19, 39.95) for a photo taken at (39.95, -75.19)) is a real position, in Antarctica, so
range checks cannot catch it; the photo's EXIF GPS, or the rest of the set when a photo has none, can.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..area import AREA_GAP_M, split_areas
from ..geo import format_distance, haversine_m, median_lon


@dataclass
class LabelsCsvConfig:
    max_exif_m: float = 1000.0  # a label this far from the photo's own EXIF GPS contradicts it
    # a label without EXIF this far from the set's median, that would lie within it swapped, is a swapped row
    far_from_set_m: float = 50_000.0
    refuse_swapped_frac: float = 0.5  # refuse the CSV when more than this share of its checked rows look swapped


@dataclass
class LabelRow:
    name: str  # the photo, as the user knows it (path under SRC)
    latitude: float  # from the CSV
    longitude: float
    exif: tuple[float, float] | None  # the photo's own EXIF GPS, if any


@dataclass
class LabelFindings:
    swapped: list[dict] = field(default_factory=list)
    contradicts_exif: list[dict] = field(default_factory=list)
    far_from_set: list[dict] = field(default_factory=list)
    checked: int = 0

    def to_dict(self) -> dict:
        return {"checked": self.checked, "swapped": self.swapped, "contradicts_exif": self.contradicts_exif,
                "far_from_set": self.far_from_set}

    def warnings(self) -> list[str]:
        """One line per flagged row."""
        out = [f"{r['image']}: --labels position ({r['csv'][0]:.6f}, {r['csv'][1]:.6f}) looks like latitude and "
               f"longitude swapped ({r['why']})" for r in self.swapped]
        out += [f"{r['image']}: --labels position is {r['distance_m'] / 1000:.1f} km from the photo's own EXIF GPS "
                f"({r['exif'][0]:.6f}, {r['exif'][1]:.6f})" for r in self.contradicts_exif]
        out += [f"{r['image']}: --labels position ({r['csv'][0]:.6f}, {r['csv'][1]:.6f}) is "
                f"{format_distance(r['distance_m'])} from the nearest other photo, an area of its own (no photo within "
                f"{format_distance(AREA_GAP_M)}); kept: check the row" for r in self.far_from_set]
        return out


def _swappable(lat: float, lon: float) -> bool:
    return abs(lon) <= 90.0


def set_reference(rows: list[LabelRow]) -> tuple[float, float] | None:
    """Where the set is: the median of the photos' EXIF positions, else of the labels themselves."""
    pts = [r.exif for r in rows if r.exif] or [(r.latitude, r.longitude) for r in rows]
    if not pts:
        return None
    lat, lon = np.array(pts, float).T
    return float(np.median(lat)), median_lon(lon)


def check_labels(rows: list[LabelRow], cfg: LabelsCsvConfig | None = None,
                 others: list[tuple[float, float]] = ()) -> LabelFindings:
    """Flag each row; with most rows swapped, the set's own median is swapped too, so EXIF decides first.
    others: (lat, lon) of the set's photos that no row labels (positioned by their EXIF), for isolated_rows."""
    cfg = cfg or LabelsCsvConfig()
    f = LabelFindings(checked=len(rows))
    ref = set_reference(rows)
    for r in rows:
        csv = (r.latitude, r.longitude)
        if r.exif is not None:
            d = float(haversine_m(*csv, *r.exif))
            if d <= cfg.max_exif_m:
                continue
            if _swappable(*csv) and float(haversine_m(csv[1], csv[0], *r.exif)) <= cfg.max_exif_m:
                f.swapped.append({"image": r.name, "csv": list(csv), "exif": list(r.exif),
                                  "why": f"the photo's EXIF GPS is ({r.exif[0]:.6f}, {r.exif[1]:.6f})"})
            else:
                f.contradicts_exif.append({"image": r.name, "csv": list(csv), "exif": list(r.exif), "distance_m": d})
        elif ref is not None:
            d = float(haversine_m(*csv, *ref))
            if d <= cfg.far_from_set_m:
                continue
            if _swappable(*csv) and float(haversine_m(csv[1], csv[0], *ref)) <= cfg.far_from_set_m:
                f.swapped.append({"image": r.name, "csv": list(csv), "exif": None,
                                  "why": f"swapped, it would lie with the rest of the set near "
                                         f"({ref[0]:.4f}, {ref[1]:.4f})"})
    flagged = {x["image"] for x in f.swapped + f.contradicts_exif}
    f.far_from_set = isolated_rows([r for r in rows if r.name not in flagged], rows, others)
    return f


def isolated_rows(candidates: list[LabelRow], rows: list[LabelRow], others=()) -> list[dict]:
    """The candidate rows alone in an area of their own (area.split_areas over every row and the other photos),
    when some area holds several photos; each with distance_m, metres to the nearest other photo."""
    pts = np.array([(r.latitude, r.longitude) for r in rows] + [tuple(o) for o in others], float).reshape(-1, 2)
    if len(pts) < 3:
        return []
    areas = split_areas(pts[:, 0], pts[:, 1])
    if areas[0].n_photos < 2:  # every photo alone: no "rest of the set" to be far from
        return []
    alone = {int(a.rows[0]) for a in areas if a.n_photos == 1}
    index = {id(r): i for i, r in enumerate(rows)}
    out = []
    for r in candidates:
        i = index[id(r)]
        if i in alone:
            d = haversine_m(r.latitude, r.longitude, np.delete(pts[:, 0], i), np.delete(pts[:, 1], i))
            out.append({"image": r.name, "csv": [r.latitude, r.longitude], "distance_m": float(np.min(d))})
    return out


def refuse_if_mostly_swapped(findings: LabelFindings, csv_name: str, cfg: LabelsCsvConfig | None = None) -> None:
    """DataError naming the rows when more than cfg.refuse_swapped_frac of the checked rows look swapped."""
    cfg = cfg or LabelsCsvConfig()
    n, m = len(findings.swapped), findings.checked
    if m and n > cfg.refuse_swapped_frac * m:
        names = ", ".join(r["image"] for r in findings.swapped[:5]) + (" ..." if n > 5 else "")
        raise DataError(f"{csv_name}: {n} of {m} rows look like latitude and longitude swapped ({names}); "
                        "swap the CSV's Latitude/Longitude columns")
