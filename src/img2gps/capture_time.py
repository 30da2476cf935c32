"""Capture times: reading them, and the one rule by which img2gps compares or subtracts two of them.

A photo's capture time comes in two kinds:
* **zoned** (timezone-aware ``datetime``): an instant. EXIF DateTimeOriginal + OffsetTimeOriginal ('+02:00'),
  an ISO time with 'Z' or an offset, a Unix time (UTC).
* **zone-less** (naive ``datetime``): a camera's local wall clock, zone unknown. EXIF DateTimeOriginal without an
  offset, a phone file name such as ``20251222_094711.jpg``, an ISO time without a zone.

The rule (``seconds_between``): two zoned times are compared as instants; two zone-less times as wall-clock
readings (the caller vouches that they come from one clock or one zone, e.g. one device on one day); a zoned and a
zone-less time are **not comparable** (None) unless the caller says in which zone the zone-less one was read
(``naive_zone``). Python would raise "can't compare offset-naive and offset-aware datetimes" there; guessing the
zone instead would silently shift one of them by hours. ``sequences`` orders the photos of each (device, local day)
by the same rule, and lets a device's zone-less times borrow the zone of its zoned ones on that day when all of
those share one offset (a phone that wrote OffsetTime on most photos ran in that zone that day).

Leaf module: standard library only, no other img2gps import. Every capture-time comparison in img2gps goes
through here (labelcheck's capture-time neighbours, data build's GPS-drift dates and its cameras told apart by
their clocks, `clocks`); new uses (clock offsets
between phones, placing photos on a GPS track) should too.
"""
from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo

__all__ = ["parse_time", "time_from_name", "seconds_between", "local_day", "session_of", "is_zoned", "sequences",
           "consecutive", "clocks"]

_EXIF_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH = re.compile(r"\d{10}(\d{3})?(\.\d+)?")
# Phone camera file names that carry the capture time (Android/Samsung, Oppo/Realme/OnePlus, Pixel, iOS exports).
_NAME_TIME = (re.compile(r"(?<!\d)(20\d{6})[_-](\d{6})(?!\d)"),  # 20251222_094711, IMG_20251222_094711, PXL_..
              re.compile(r"^IMG(20\d{6})(\d{6})(?!\d)", re.I))  # IMG20251224101500


def parse_time(t) -> datetime | None:
    """Text -> datetime, or None when absent or unreadable (never raises).

    Reads ISO 8601 with or without a zone ('2024-09-23T10:00:00', '...Z', '...+02:00'; zoned -> aware datetime),
    EXIF's '2024:09:23 10:00:00[+02:00]', and Unix time in seconds or milliseconds (10 or 13 digits; aware, UTC).
    A datetime passes through unchanged."""
    if isinstance(t, datetime):
        return t
    if t is None or (isinstance(t, float) and math.isnan(t)) or str(t).strip() == "":
        return None
    s = str(t).strip()
    if _EPOCH.fullmatch(s):  # GPS loggers, Google Takeout
        v = float(s)
        return datetime.fromtimestamp(v / 1000 if len(s.split(".")[0]) == 13 else v, tz=timezone.utc)
    m = _EXIF_TIME.match(s)
    if m:  # EXIF's own spelling, as exiftool CSV exports keep it
        s = f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}" + (m.group(5) or "")
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


def time_from_name(name: str) -> datetime | None:
    """Zone-less capture time from a phone camera file name (20251222_094711.jpg, IMG20251224101500.jpg), else None."""
    stem = str(name).rsplit("/", 1)[-1]
    for pat in _NAME_TIME:
        m = pat.search(stem)
        if m:
            try:
                return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
            except ValueError:
                return None
    return None


def is_zoned(t: datetime) -> bool:
    """True when `t` is an instant (carries a UTC offset)."""
    return t.tzinfo is not None and t.utcoffset() is not None


def local_day(t: datetime | None) -> date | None:
    """The calendar day on the wall clock where the photo was taken (zoned or not), None for None."""
    return None if t is None else t.date()


def session_of(t: datetime | None, group) -> str | None:
    """A capture session's name, 'YYYY-MM-DD GROUP' (one device on one local day), None without a time."""
    return None if t is None else f"{local_day(t).isoformat()} {group}"


def _as_zone(z) -> tzinfo | None:
    if z is None or isinstance(z, tzinfo):
        return z
    if isinstance(z, timedelta):
        return timezone(z)
    return timezone(timedelta(hours=float(z)))


def seconds_between(a: datetime | None, b: datetime | None, naive_zone=None) -> float | None:
    """b - a in seconds (float; negative when b is earlier), or None when the two cannot be compared.

    Both zoned: the difference of the instants. Both zone-less: the difference of the wall-clock readings.
    One of each: None, unless `naive_zone` (a tzinfo, a timedelta or hours east of UTC, e.g. -4) says in which
    zone zone-less times were read; then they are taken in it. None when either time is None."""
    if a is None or b is None:
        return None
    za, zb = is_zoned(a), is_zoned(b)
    if za != zb:
        zone = _as_zone(naive_zone)
        if zone is None:
            return None
        a, b = (a if za else a.replace(tzinfo=zone)), (b if zb else b.replace(tzinfo=zone))
    return (b - a).total_seconds()


def _shared_offset(ts: list[datetime]) -> timedelta | None:
    offs = {t.utcoffset() for t in ts if is_zoned(t)}
    return offs.pop() if len(offs) == 1 else None


def sequences(times: Sequence[datetime | None], groups: Sequence[Hashable] | None = None,
              borrow_zone: bool = True) -> tuple[list[tuple[list[int], tzinfo | None]], list[int]]:
    """Photos in capture order, per (group, local day): ([(indices, naive_zone), ...], not_ordered).

    times: per photo, a datetime or None (None: left out). groups: per photo, what shares a clock (a device name;
    None: one group). Each sequence lists photo indices earliest first; `seconds_between(times[a], times[b],
    naive_zone)` of two of its photos is defined. Within a (group, day) zoned times form one sequence (instants)
    and zone-less times another (wall clock), except that with `borrow_zone` the zone-less ones take the zoned
    ones' offset when all zoned times of that group and day share one, and join their sequence (naive_zone is
    then that offset). not_ordered: indices of zone-less times left in a sequence apart from zoned ones of their
    group and day (they cannot be placed among them)."""
    groups = list(groups) if groups is not None else [None] * len(times)
    buckets: dict[tuple, list[int]] = {}
    for i, t in enumerate(times):
        if t is not None:
            buckets.setdefault((groups[i], local_day(t)), []).append(i)
    out: list[tuple[list[int], tzinfo | None]] = []
    not_ordered: list[int] = []
    for idx in buckets.values():
        zoned = [i for i in idx if is_zoned(times[i])]
        naive = [i for i in idx if not is_zoned(times[i])]
        off = _shared_offset([times[i] for i in zoned]) if borrow_zone and zoned and naive else None
        if off is not None:
            z = timezone(off)
            key = {i: times[i] if is_zoned(times[i]) else times[i].replace(tzinfo=z) for i in idx}
            out.append((sorted(idx, key=lambda i: (key[i], i)), z))
            continue
        for part in (zoned, naive):
            if part:
                out.append((sorted(part, key=lambda i: (times[i], i)), None))
        if zoned and naive:
            not_ordered.extend(naive)
    return out, not_ordered


def consecutive(times: Sequence[datetime | None], groups: Sequence[Hashable] | None = None,
                borrow_zone: bool = True) -> tuple[list[tuple[int, int, float]], list[int]]:
    """Each photo and the next one in its sequence (see `sequences`): ([(a, b, seconds >= 0), ...], not_ordered)."""
    seqs, not_ordered = sequences(times, groups, borrow_zone)
    steps = []
    for idx, zone in seqs:
        for a, b in zip(idx, idx[1:]):
            steps.append((a, b, seconds_between(times[a], times[b], zone)))
    return steps, not_ordered


def clocks(times: Sequence[datetime | None], uptimes: Sequence[float | None], groups: Sequence[Hashable],
           tol_s: float = 10.0) -> list[int]:
    """Which camera of its group (device name) and day each photo came from, told apart by their clocks: per photo
    0, 1, ... (0 also without a time or uptime). uptimes: seconds since the camera booted, sleep excluded
    (exif.apple_uptime_s). Between two photos of one camera (no reboot) the uptime advances by at least 0 and at
    most the time between them, give or take tol_s (on penn91's iPhone 13, 62 photos of one phone, capture time
    minus uptime wanders by up to 3.4 s between consecutive photos: whole-second times, capture latency); photos in capture order (`sequences`) join the
    first camera whose last photo is consistent with them, else start a new one. Two phones of one model and OS
    version booted at different times become two cameras; a phone rebooted that day also becomes two (fewer photos
    compared, never more)."""
    out = [0] * len(times)
    seqs, _ = sequences(times, groups)
    for idx, zone in seqs:
        last: list[int] = []  # each camera's latest photo
        for j in (i for i in idx if uptimes[i] is not None):
            for c, i in enumerate(last):
                secs = seconds_between(times[i], times[j], zone)
                if secs is not None and -tol_s <= uptimes[j] - uptimes[i] <= secs + tol_s:
                    out[j], last[c] = c, j
                    break
            else:
                out[j] = len(last)
                last.append(j)
    return out
