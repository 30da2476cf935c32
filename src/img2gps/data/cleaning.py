"""The paper's cleaning steps as pure functions on positions, times and hashes (no I/O).

Each function answers "which rows would this step drop, and why", so `data build` can report every step even
when it is switched off. All distances are metres in a local east/north frame (geo.LocalFrame).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from scipy.spatial import cKDTree

from ..capture_time import clocks, consecutive, local_day, parse_time  # parse_time: re-exported
from ..errors import DataError
from ..geo import LocalFrame, lon_in_range, median_lon

# Robust auto-bbox: median +- K robust sigmas (1.4826 * MAD) per axis, never tighter than FLOOR_M either side
# (a phone GPS glitch is hundreds of metres; a floor that size keeps a small but real outlying spot).
AUTO_BBOX_K = 5.0
AUTO_BBOX_FLOOR_M = 250.0


def en_of(lat, lon) -> np.ndarray:
    return LocalFrame.around(lat, lon).to_en(lat, lon)


def nearest_other_m(en: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest *other* point (inf when there is only one)."""
    en = np.asarray(en, float).reshape(-1, 2)
    if len(en) < 2:
        return np.full(len(en), np.inf)
    d, _ = cKDTree(en).query(en, k=2)
    return d[:, 1]


def quantiles(d: np.ndarray) -> dict:
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"n": 0, "min": None, "median": None, "p90": None, "max": None}
    return {"n": int(len(d)), "min": round(float(d.min()), 2), "median": round(float(np.median(d)), 2),
            "p90": round(float(np.quantile(d, 0.9)), 2), "max": round(float(d.max()), 2)}


# ---------------------------------------------------------------- bounding box

def parse_bbox(text: str) -> tuple[float, float, float, float] | str:
    """'auto' or 'LAT_MIN,LON_MIN,LAT_MAX,LON_MAX' (degrees) -> 'auto' or a checked tuple.

    LON_MIN > LON_MAX is a box that crosses the +-180 meridian (the GeoJSON convention), e.g. 179.9 .. -179.9."""
    t = text.strip().lower()
    if t == "auto":
        return "auto"
    try:
        vals = tuple(float(x) for x in t.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise DataError(f"--bbox {text!r}: expected 'auto' or LAT_MIN,LON_MIN,LAT_MAX,LON_MAX in degrees")
    la0, lo0, la1, lo1 = vals
    if not (-90 <= la0 < la1 <= 90 and -180 <= lo0 <= 180 and -180 <= lo1 <= 180 and lo0 != lo1):
        raise DataError(f"--bbox {text!r}: need -90 <= LAT_MIN < LAT_MAX <= 90 and longitudes in -180..180, "
                        "LON_MIN != LON_MAX (LON_MIN > LON_MAX = a box across the +-180 meridian)")
    return vals


def robust_bbox(lat, lon, k: float = AUTO_BBOX_K, floor_m: float = AUTO_BBOX_FLOOR_M):
    """A box that holds the bulk of the photos and excludes far GPS glitches.

    Median and MAD have a 50% breakdown point, so a few wild positions (another city, (0,0)-like glitches)
    cannot stretch the box the way min/max or mean/std would. Returns (lat_min, lon_min, lat_max, lon_max) in
    degrees, longitudes in [-180, 180); lon_min > lon_max when the box crosses the +-180 meridian.
    """
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    frame = LocalFrame(float(np.median(lat)), median_lon(lon))
    en = frame.to_en(lat, lon)
    med = np.median(en, axis=0)
    sigma = 1.4826 * np.median(np.abs(en - med), axis=0)
    half = np.maximum(k * sigma, floor_m)
    la0, lo0 = frame.to_latlon(med - half)
    la1, lo1 = frame.to_latlon(med + half)
    return float(la0), float(lo0), float(la1), float(lo1)


def outside_bbox(lat, lon, bbox) -> np.ndarray:
    """True where a position lies outside (lat_min, lon_min, lat_max, lon_max); wrap-aware in longitude."""
    la0, lo0, la1, lo1 = bbox
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    return ~((lat >= la0) & (lat <= la1) & lon_in_range(lon, lo0, lo1))


# ---------------------------------------------------------------- singleton points

def singleton_mask(en: np.ndarray, radius_m: float) -> np.ndarray:
    """True where a photo has no other photo within radius_m (its 'point' holds one photo)."""
    en = np.asarray(en, float).reshape(-1, 2)
    if len(en) == 0:
        return np.zeros(0, bool)
    counts = cKDTree(en).query_ball_point(en, r=max(float(radius_m), 0.0), return_length=True)
    return np.asarray(counts) <= 1


# ---------------------------------------------------------------- GPS drift dates

@dataclass
class DriftConfig:
    max_speed_mps: float = 3.0  # a brisk walk is ~1.5-2 m/s; faster between two photos means a GPS jump
    min_jump_m: float = 25.0  # ignore small jumps: phone GPS noise alone is 5-10 m


@dataclass
class DriftReport:
    per_date: dict[str, dict] = field(default_factory=dict)  # date -> photos, jumps, max speed, flagged
    flagged: list[str] = field(default_factory=list)
    no_time: int = 0
    unreadable: list[str] = field(default_factory=list)  # photos whose time is given but cannot be read
    unordered: int = 0  # zone-less times on a (date, device) with zoned times of several offsets: not compared


def drift_dates(times, devices, en: np.ndarray, names, cfg: DriftConfig = DriftConfig(),
                uptimes=None) -> DriftReport:
    """Flag capture dates on which consecutive photos of one device imply an impossible walking speed.

    Consecutive photos are taken per (date, device): two people photographing at once in different places
    is normal and must not look like drift. uptimes (per photo, seconds since the camera booted, or None) tell
    two phones of one model and software apart by their clocks (capture_time.clocks): "..., clock 2".
    """
    rep = DriftReport()
    parsed, devs = [], []
    for i, (t, dev) in enumerate(zip(times, devices)):
        dt = parse_time(t)
        parsed.append(dt)
        devs.append(str(dev or "unknown device"))
        if dt is None:
            rep.no_time += 1
            if t is not None and not (isinstance(t, float) and np.isnan(t)) and str(t).strip():
                rep.unreadable.append(str(names[i]))
            continue
        day = local_day(dt).isoformat()  # the local date where the photo was taken, zone or not
        rep.per_date.setdefault(day, {"photos": 0, "jumps": [], "max_speed_mps": 0.0, "flagged": False})
        rep.per_date[day]["photos"] += 1
    if uptimes is not None:
        cams = clocks(parsed, list(uptimes), devs)
        devs = [d if c == 0 else f"{d}, clock {c + 1}" for d, c in zip(devs, cams)]
    # ordered per (device, day) by capture_time's one rule: a zone-less time is never silently compared with a
    # zoned one (it borrows the zone only when all that device's zoned times that day share one)
    steps, not_ordered = consecutive(parsed, devs)
    rep.unordered = len(not_ordered)
    for a, b, secs in steps:
        info = rep.per_date[local_day(parsed[a]).isoformat()]
        dist = float(np.linalg.norm(en[b] - en[a]))
        speed = dist / secs if secs > 0 else (np.inf if dist > 0 else 0.0)
        if np.isfinite(speed):
            info["max_speed_mps"] = max(info["max_speed_mps"], round(speed, 2))
        if dist > cfg.min_jump_m and speed > cfg.max_speed_mps:
            info["jumps"].append({"from": names[a], "to": names[b], "device": devs[a], "distance_m": round(dist, 1),
                                  "seconds": secs, "speed_mps": None if not np.isfinite(speed) else round(speed, 2)})
            info["flagged"] = True
    rep.flagged = sorted(d for d, v in rep.per_date.items() if v["flagged"])
    return rep


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_dates(text: str | None) -> list[str]:
    """'2024-09-23,2024-09-24' -> checked ISO dates."""
    if not text:
        return []
    out = []
    for d in (x.strip() for x in text.split(",")):
        if not d:
            continue
        try:
            if not _DATE.match(d):
                raise ValueError
            date.fromisoformat(d)
        except ValueError:
            raise DataError(f"--drop-dates: {d!r} is not a date (use YYYY-MM-DD, comma-separated)") from None
        out.append(d)
    return out


def date_of(t) -> str | None:
    dt = local_day(parse_time(t))
    return dt.isoformat() if dt else None


# ---------------------------------------------------------------- near-duplicates

def hamming_matrix(hashes, other) -> np.ndarray:
    """Bit differences between 64-bit hashes (rows: hashes, columns: other)."""
    x = np.bitwise_xor(np.asarray(hashes, np.uint64)[:, None], np.asarray(other, np.uint64)[None, :])
    return np.bitwise_count(x).astype(np.int16)


def nearest_hamming(hashes, chunk: int = 1024) -> np.ndarray:
    """Each hash's distance to the closest other hash (64 when alone): shows how far the threshold is from use."""
    h = np.asarray(hashes, np.uint64)
    out = np.full(len(h), 64, np.int16)
    for start in range(0, len(h), chunk):
        block = hamming_matrix(h[start:start + chunk], h)
        block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 64
        if block.size:
            out[start:start + block.shape[0]] = block.min(axis=1)
    return out


def near_duplicates(hashes, max_hamming: int, chunk: int = 512) -> list[tuple[int, int, int]]:
    """(dropped, kept, distance) for each photo whose hash is within max_hamming of an earlier *kept* photo.

    'Keep the first': order is the caller's (source path order), and a photo is compared only with photos
    that stay, so a chain A~B~C with A far from C drops B but keeps C.
    """
    h = np.asarray(hashes, np.uint64)
    n = len(h)
    if n < 2:
        return []
    dup: list[tuple[int, int, int]] = []
    dropped = np.zeros(n, bool)
    for start in range(0, n, chunk):  # chunks keep memory at chunk x n, fine for tens of thousands of photos
        block = hamming_matrix(h[start:start + chunk], h)
        for r in range(block.shape[0]):
            i = start + r
            row = block[r, :i]
            cand = np.flatnonzero((row <= max_hamming) & ~dropped[:i])
            if len(cand):
                j = int(cand[np.argmin(row[cand])])
                dropped[i] = True
                dup.append((i, j, int(row[j])))
    return dup
