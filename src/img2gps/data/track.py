"""A GPS track (GPX, CSV time,lat,lon, Google Takeout JSON, KML) -> times and positions, interpolated in metres.

GPX is read with gpxpy; the others are small, well-specified text formats read with pandas / json / ElementTree.
Every reader returns timed points; `Track` sorts them, merges equal times, and answers where the walker was at
any time inside its span (linear in a local east/north frame), how far they had walked and which way they went.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..geo import LocalFrame
from .clock import iso_utc, utc_seconds
from .sources import csv_encoding, parse_number, sniff_separator

TRACK_SUFFIXES = (".gpx", ".csv", ".txt", ".json", ".kml")
MAX_GAP_S = 300.0  # a stretch this long without a fix is a hole: nothing is placed inside it
TIME_COLS = ("time", "timestamp", "datetime", "date_time", "utc", "date")
LAT_COLS = ("latitude", "lat")
LON_COLS = ("longitude", "lon", "lng", "long")


@dataclass
class Track:
    """Timed positions, sorted by time. t: (N,) seconds since 1970 UTC; lat, lon: (N,) degrees."""
    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    name: str = "track"
    max_gap_s: float = MAX_GAP_S
    frame: LocalFrame = field(init=False)
    en: np.ndarray = field(init=False)  # (N, 2) east/north metres in `frame`
    walked: np.ndarray = field(init=False)  # (N,) metres walked since the first point

    def __post_init__(self):
        self.frame = LocalFrame.around(self.lat, self.lon)
        self.en = self.frame.to_en(self.lat, self.lon)
        step = np.linalg.norm(np.diff(self.en, axis=0), axis=1)
        self.walked = np.concatenate([[0.0], np.cumsum(step)])

    @property
    def span(self) -> tuple[float, float]:
        return float(self.t[0]), float(self.t[-1])

    def describe_span(self) -> str:
        return f"{iso_utc(self.t[0])} .. {iso_utc(self.t[-1])}"

    def covers(self, t) -> np.ndarray:
        """Boolean, shape of t: inside the span and not inside a gap longer than max_gap_s."""
        t = np.asarray(t, float)
        i = np.clip(np.searchsorted(self.t, t), 1, len(self.t) - 1)
        gap = (self.t[i] - self.t[i - 1]) > self.max_gap_s
        return (t >= self.t[0]) & (t <= self.t[-1]) & ~gap

    def en_at(self, t) -> np.ndarray:
        """(..., 2) east/north metres at times t (clamped to the ends outside the span)."""
        t = np.asarray(t, float)
        return np.stack([np.interp(t, self.t, self.en[:, 0]), np.interp(t, self.t, self.en[:, 1])], axis=-1)

    def position(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees at times t, each of t's shape."""
        en = self.en_at(t)
        lat, lon = self.frame.to_latlon(en.reshape(-1, 2))
        return np.reshape(lat, np.shape(t)), np.reshape(lon, np.shape(t))

    def walked_m(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, float), self.t, self.walked)

    def travel_deg(self, t, window_s: float = 2.0, min_move_m: float = 1.0) -> np.ndarray:
        """Direction of travel (compass degrees, 0 = north, clockwise) from the track `window_s` before to
        `window_s` after each time; NaN where the walker moved less than `min_move_m` in that window."""
        d = self.en_at(np.asarray(t, float) + window_s) - self.en_at(np.asarray(t, float) - window_s)
        deg = np.degrees(np.arctan2(d[..., 0], d[..., 1])) % 360.0
        return np.where(np.linalg.norm(d, axis=-1) >= min_move_m, deg, np.nan)


def make_track(t, lat, lon, name: str) -> Track:
    """Points (any order; unreadable or invalid ones dropped, equal times averaged) -> Track; DataError naming
    `name` when fewer than two timed points are left."""
    df = pd.DataFrame({"t": np.asarray(t, float), "lat": np.asarray(lat, float), "lon": np.asarray(lon, float)})
    ok = np.isfinite(df.to_numpy()).all(1) & (df["lat"].abs() <= 90) & (df["lon"].abs() <= 180) \
        & ~((df["lat"] == 0) & (df["lon"] == 0))
    df = df[ok].groupby("t", as_index=False).mean().sort_values("t")
    if len(df) < 2:
        raise DataError(f"{name}: a track needs at least two points with a time and a position (found {len(df)})")
    return Track(df["t"].to_numpy(), df["lat"].to_numpy(), df["lon"].to_numpy(), name=name)


def _times(values) -> np.ndarray:
    return np.array([np.nan if s is None else s for s, _ in map(utc_seconds, values)], float)


def _gpx(path: Path) -> Track:
    import gpxpy
    import gpxpy.gpx

    try:
        g = gpxpy.parse(path.read_text(encoding="utf-8-sig", errors="replace"))
    except (gpxpy.gpx.GPXException, ValueError) as e:
        raise DataError(f"{path}: not a readable GPX file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    pts = [p for tr in g.tracks for s in tr.segments for p in s.points] + [p for r in g.routes for p in r.points]
    pts = pts or list(g.waypoints)
    timed = [p for p in pts if p.time is not None]
    if pts and not timed:
        raise DataError(f"{path}: the GPX points carry no times (a route drawn on a map, not a recorded track)")
    return make_track([p.time.timestamp() if p.time.tzinfo else utc_seconds(p.time.isoformat())[0] for p in timed],
                      [p.latitude for p in timed], [p.longitude for p in timed], str(path))


def _column(cols: dict, names, path: Path, what: str) -> str:
    for n in names:
        if n in cols:
            return cols[n]
    raise DataError(f"{path}: no {what} column (found: {', '.join(cols.values())}; expected time,latitude,longitude)")


def _csv(path: Path) -> Track:
    enc = csv_encoding(path)
    try:
        df = pd.read_csv(path, sep=sniff_separator(path, enc), dtype=str, encoding=enc, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    tc = _column(cols, TIME_COLS, path, "time")
    if "latitudee7" in cols and "longitudee7" in cols:
        lat = [parse_number(v) / 1e7 for v in df[cols["latitudee7"]]]
        lon = [parse_number(v) / 1e7 for v in df[cols["longitudee7"]]]
    else:
        lat = [parse_number(v) for v in df[_column(cols, LAT_COLS, path, "latitude")]]
        lon = [parse_number(v) for v in df[_column(cols, LON_COLS, path, "longitude")]]
    return make_track(_times(df[tc]), lat, lon, str(path))


_LATLNG = re.compile(r"^\s*(-?\d+(?:\.\d+)?)°?\s*,\s*(-?\d+(?:\.\d+)?)°?\s*$")


def _takeout(path: Path) -> Track:
    """Google Takeout location history: Records.json ({"locations": [{latitudeE7, longitudeE7, timestamp |
    timestampMs}]}) or the on-device Timeline export ({"semanticSegments": [{"timelinePath": [{point: "lat°,
    lon°", time}]}], "rawSignals": [{"position": {"LatLng", "timestamp"}}]})."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    rows: list[tuple] = []
    if isinstance(doc, dict) and isinstance(doc.get("locations"), list):
        for r in doc["locations"]:
            when = r.get("timestamp") or r.get("timestampMs")
            rows.append((when, parse_number(r.get("latitudeE7")) / 1e7, parse_number(r.get("longitudeE7")) / 1e7))
    elif isinstance(doc, dict) and ("semanticSegments" in doc or "rawSignals" in doc):
        pairs = [(p.get("time"), p.get("point")) for s in doc.get("semanticSegments", [])
                 for p in s.get("timelinePath", []) or []]
        pairs += [(s["position"].get("timestamp"), s["position"].get("LatLng")) for s in doc.get("rawSignals", [])
                  if isinstance(s.get("position"), dict)]
        for when, point in pairs:
            m = _LATLNG.match(str(point or ""))
            rows.append((when, float(m.group(1)), float(m.group(2))) if m else (when, np.nan, np.nan))
    else:
        raise DataError(f"{path}: JSON without a 'locations' list or Timeline 'semanticSegments' "
                        "(expected a Google Takeout location history)")
    return make_track(_times([r[0] for r in rows]), [r[1] for r in rows], [r[2] for r in rows], str(path))


def _kml(path: Path) -> Track:
    """KML with timed points: <gx:Track> (<when> + <gx:coord> 'lon lat alt') or Placemarks with a <TimeStamp>
    and a <Point>. Namespaces are ignored: exporters spell them differently."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: not readable KML ({e})") from None
    local = lambda el: el.tag.rsplit("}", 1)[-1]  # noqa: E731
    when, lat, lon = [], [], []
    for tr in (el for el in root.iter() if local(el) == "Track"):
        ws = [w.text for w in tr if local(w) == "when"]
        cs = [c.text.split() for c in tr if local(c) == "coord" and c.text]
        for w, c in zip(ws, cs):
            when.append(w)
            lon.append(parse_number(c[0]))
            lat.append(parse_number(c[1]))
    for pm in (el for el in root.iter() if local(el) == "Placemark"):
        w = next((x.text for x in pm.iter() if local(x) == "when"), None)
        pt = next((x for x in pm.iter() if local(x) == "Point"), None)
        c = next((x.text for x in pt.iter() if local(x) == "coordinates"), None) if pt is not None else None
        if w and c and not any(local(x) == "Track" for x in pm.iter()):
            parts = c.strip().split(",")
            when.append(w)
            lon.append(parse_number(parts[0]))
            lat.append(parse_number(parts[1]) if len(parts) > 1 else np.nan)
    if not when:
        raise DataError(f"{path}: no timed points in this KML (expected a <gx:Track> or Placemarks with "
                        "<TimeStamp> and <Point>; a plain LineString has no times)")
    return make_track(_times(when), lat, lon, str(path))


def read_track(path: str | Path) -> Track:
    """GPX, CSV (time,latitude,longitude; also Takeout's latitudeE7), Takeout JSON or KML -> Track.
    DataError (one line naming the file) when it is missing, unreadable or holds fewer than two timed points."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: track file not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    readers = {".gpx": _gpx, ".csv": _csv, ".txt": _csv, ".json": _takeout, ".kml": _kml}
    if suffix not in readers:
        raise DataError(f"{path}: unknown track format '{suffix}' (expected {', '.join(TRACK_SUFFIXES)})")
    return readers[suffix](path)
