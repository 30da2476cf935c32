"""Capture times on one clock: every time becomes seconds since 1970 UTC, and a camera's clock offset against a
GPS track is estimated from the photos that carry both a position and a time.

All time arithmetic of the track/video code goes through `utc_seconds` (parsed by capture_time, the one
capture-time module) (text -> UTC seconds) and `iso_utc` (the
reverse), so one rule decides how a zone-less camera time is read: as if it were UTC, flagged `zoned=False`, and
its zone then lands in the estimated offset of the zone-less times (`Offsets`), kept apart from zoned times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..capture_time import is_zoned, parse_time

ZONE_RANGE_S = 15 * 3600  # the offset search spans every time zone (UTC-12..+14) plus an hour of clock error


def utc_seconds(text) -> tuple[float | None, bool]:
    """A capture time (ISO 8601 with or without a zone, EXIF '2024:09:23 10:00:00', Unix seconds/ms) -> (seconds
    since 1970 UTC, zoned). A time without a zone is read as if it were UTC (zoned False). (None, False) when the
    text is empty or unreadable."""
    dt = parse_time(text)
    if dt is None:
        return None, False
    zoned = is_zoned(dt)
    return (dt if zoned else dt.replace(tzinfo=timezone.utc)).timestamp(), zoned


def iso_utc(seconds: float) -> str:
    """Seconds since 1970 UTC -> '2025-12-22T07:47:11.400000+00:00' (microseconds only when not whole)."""
    dt = datetime.fromtimestamp(round(seconds, 6), tz=timezone.utc)
    return dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")


@dataclass
class OffsetEstimate:
    """t_track = t_camera + offset_s, from `photos` photos with a GPS position and a time; `median_m`: the median
    distance between their own position and the track's position at their corrected time."""
    offset_s: float
    photos: int
    median_m: float

    def to_dict(self) -> dict:
        return {"offset_s": round(self.offset_s, 2), "photos": self.photos, "median_m": round(self.median_m, 2)}


@dataclass
class Offsets:
    """The offset applied to zoned times (and to videos, whose recording time is UTC) and to zone-less times."""
    zoned_s: float = 0.0
    naive_s: float = 0.0

    def of(self, zoned: bool) -> float:
        return self.zoned_s if zoned else self.naive_s


def _score(track, t: np.ndarray, en: np.ndarray, offsets: np.ndarray, min_in: int, trim: float) -> np.ndarray:
    """(K,) robust misfit (metres) of each candidate offset: the mean of the best `trim` share of the photos'
    distances to the track at their shifted times; inf where fewer than `min_in` photos fall on the track."""
    out = np.full(len(offsets), np.inf)
    for a in range(0, len(offsets), 4096):  # bounded memory: 4096 offsets x N photos at a time
        tt = t[None, :] + offsets[a:a + 4096, None]
        d = np.linalg.norm(track.en_at(tt) - en[None, :, :], axis=-1)
        d[~track.covers(tt)] = np.nan
        n_in = np.sum(~np.isnan(d), axis=1)
        d = np.sort(np.where(np.isnan(d), np.inf, d), axis=1)
        keep = np.maximum(1, np.floor(n_in * trim)).astype(int)
        cum = np.cumsum(np.where(np.isfinite(d), d, 0.0), axis=1)
        s = cum[np.arange(len(d)), keep - 1] / keep
        out[a:a + 4096] = np.where(n_in >= min_in, s, np.inf)
    return out


def estimate_offset(track, t: np.ndarray, lat: np.ndarray, lon: np.ndarray, min_photos: int = 3,
                    search_s: float = ZONE_RANGE_S) -> OffsetEstimate | None:
    """The offset (seconds, t_track = t + offset) that best lays photos with known positions on `track`
    (a data.track.Track): a 2 s grid over +-search_s, then a 0.05 s grid around the best. At least half of the
    photos (and `min_photos`) must fall inside the track's span. None with fewer than `min_photos` photos or when
    no offset puts enough of them on the track."""
    t = np.asarray(t, float)
    if len(t) < min_photos:
        return None
    en = track.frame.to_en(np.asarray(lat, float), np.asarray(lon, float))
    min_in = max(min_photos, math.ceil(0.5 * len(t)))
    lo = max(-search_s, track.t[0] - t.max() - 1.0)
    hi = min(search_s, track.t[-1] - t.min() + 1.0)
    if lo > hi:
        return None
    coarse = np.arange(lo, hi + 2.0, 2.0)
    s = _score(track, t, en, coarse, min_in, 0.8)
    if not np.isfinite(s).any():
        return None
    best = coarse[int(np.argmin(s))]
    fine = np.arange(best - 3.0, best + 3.0001, 0.05)
    s = _score(track, t, en, fine, min_in, 0.8)
    off = float(fine[int(np.argmin(s))])
    d = np.linalg.norm(track.en_at(t + off) - en, axis=1)[track.covers(t + off)]
    return OffsetEstimate(offset_s=off, photos=int(len(d)), median_m=float(np.median(d)))
