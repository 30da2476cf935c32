"""EXIF facts of a photo (GPS, capture time, device, heading, focal length), parsed from a PIL Exif object.

Opening the photo is photos.py's job; this module only reads tags. Source: EXIF 2.32 (CIPA DC-008) tag numbers.
"""
from __future__ import annotations

import math
import plistlib
import re
import struct
from dataclasses import dataclass
from datetime import datetime

GPS_IFD = 0x8825
EXIF_IFD = 0x8769


@dataclass
class PhotoMeta:
    latitude: float | None = None
    longitude: float | None = None
    time: str | None = None  # ISO 8601, camera local time; with its offset ('+02:00') when EXIF OffsetTime says it
    device: str | None = None
    width: int = 0
    height: int = 0  # after orientation
    gps_problem: str | None = None  # why there is no position, when there is none
    heading: float | None = None  # EXIF GPSImgDirection, degrees from true north (magnetic-referenced: None)
    focal35: float | None = None  # 35 mm-equivalent focal length in mm (see focal35_from_exif)
    h_error_m: float | None = None  # EXIF GPSHPositioningError: the phone's own horizontal accuracy, metres
    uptime_s: float | None = None  # an iPhone's seconds since boot, sleep excluded (apple_uptime_s)

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def _ratio(x) -> float:
    try:
        if isinstance(x, tuple) and len(x) == 2:
            num, den = x
            return float(num) / float(den) if float(den) != 0 else math.nan
        return float(x)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def dms(value, ref, pos: str, neg: str, limit: float) -> float:
    if value is None:
        raise ValueError("missing")
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    parts = [_ratio(p) for p in parts] + [0.0, 0.0]
    # EXIF rationals are unsigned, but some writers store signed parts; the ref alone decides the hemisphere.
    deg = abs(parts[0]) + abs(parts[1]) / 60 + abs(parts[2]) / 3600
    if not math.isfinite(deg):
        raise ValueError("zero denominator or non-numeric value")
    ref = (ref.decode(errors="ignore") if isinstance(ref, bytes) else str(ref or "")).strip("\x00 ").upper()
    if ref not in (pos, neg):
        what = "latitude" if pos == "N" else "longitude"
        raise ValueError(f"{what} reference {pos}/{neg} missing" if not ref else
                         f"{what} reference {ref!r} is not {pos} or {neg}")
    if ref == neg:
        deg = -deg
    if abs(deg) > limit:
        raise ValueError(f"out of range ({deg})")
    return deg


def _clean_str(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode(errors="ignore")
    v = str(v).replace("\x00", "").strip()
    return v or None


def _h_error(gps) -> float | None:
    """GPSHPositioningError (tag 31, metres) when present and plausible; else None."""
    if not gps or 31 not in gps:
        return None
    v = _ratio(gps.get(31))
    return float(v) if math.isfinite(v) and 0 < v < 100_000 else None


def _heading(gps) -> float | None:
    """GPSImgDirection (tag 17) in [0, 360) when referenced to true north (tag 16 'T'); else None."""
    if not gps or 17 not in gps:
        return None
    ref = _clean_str(gps.get(16))
    if ref is not None and ref.upper() != "T":
        return None  # magnetic north: the declination is unknown here, so no usable bearing
    v = _ratio(gps.get(17))
    return float(v % 360.0) if math.isfinite(v) and 0 <= v <= 360 else None


def focal35_from_exif(sub, width: int, height: int) -> float | None:
    """35 mm-equivalent focal length (mm) from an EXIF sub-IFD: FocalLengthIn35mmFilm (0xA405), else FocalLength
    (0x920A) scaled by the sensor diagonal that FocalPlaneX/YResolution (0xA20E/0xA20F, unit 0xA210) imply for
    the EXIF pixel size (0xA002/0xA003, else width x height). None when neither is usable."""
    if not sub:
        return None
    f35 = _ratio(sub.get(0xA405)) if sub.get(0xA405) is not None else math.nan
    if math.isfinite(f35) and 1 <= f35 <= 2000:
        return float(f35)
    f = _ratio(sub.get(0x920A)) if sub.get(0x920A) is not None else math.nan
    xres = _ratio(sub.get(0xA20E)) if sub.get(0xA20E) is not None else math.nan
    yres = _ratio(sub.get(0xA20F)) if sub.get(0xA20F) is not None else xres
    unit_mm = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(sub.get(0xA210, 2))
    pw, ph = sub.get(0xA002) or width, sub.get(0xA003) or height
    if not (math.isfinite(f) and f > 0 and math.isfinite(xres) and xres > 0 and math.isfinite(yres) and yres > 0
            and unit_mm and pw and ph):
        return None
    diag_mm = math.hypot(float(pw) / xres * unit_mm, float(ph) / yres * unit_mm)
    f35 = f * 43.27 / diag_mm if diag_mm > 0 else math.nan
    return float(f35) if math.isfinite(f35) and 1 <= f35 <= 2000 else None


def device_name(make: str | None, model: str | None, exif, sub) -> str | None:
    """The device a photo came from, as `data build` writes it (labels.csv `device`) and as drift dates and the
    label check group photos by it: make + model ("Apple" + "iPhone 13" -> "Apple iPhone 13", no doubled make),
    then what tells two cameras of one model apart when the EXIF holds it: the body or lens serial number or the
    owner name (as a short hash: they are personal) and the software version, e.g. "Apple iPhone 13 (software
    17.6.1)". Two phones of one model on one OS version stay one device: their EXIF has nothing else to tell."""
    name = model if (make and model and model.lower().startswith(make.lower())) else (
        " ".join(x for x in (make, model) if x) or None)
    if name is None:
        return None
    personal = [_clean_str(sub.get(tag)) for tag in (0xA431, 0xA435, 0xA430)]  # body serial, lens serial, owner
    extra = []
    if any(personal):
        import hashlib

        extra.append("serial #" + hashlib.sha1("|".join(p or "" for p in personal).encode()).hexdigest()[:6])
    software = _clean_str(exif.get(0x0131))
    if software:
        extra.append(f"software {software}")
    return name + (f" ({', '.join(extra)})" if extra else "")


def apple_uptime_s(makernote) -> float | None:
    """Seconds an iPhone's clock had run since it booted, sleep excluded, when it took the photo: the RunTime entry
    (tag 3, a binary plist {value, timescale}) of Apple's MakerNote IFD ("Apple iOS" header, offsets from the
    note's start). Capture time minus it is constant for one phone between sleeps and reboots and differs between
    phones (capture_time.clocks). None for any other MakerNote or an unreadable one."""
    if not isinstance(makernote, bytes) or not makernote.startswith(b"Apple iOS\0"):
        return None
    try:
        e = ">" if makernote[12:14] == b"MM" else "<"
        (n,) = struct.unpack_from(e + "H", makernote, 14)
        for k in range(n):
            tag, _, count, off = struct.unpack_from(e + "HHII", makernote, 16 + 12 * k)
            if tag == 3:
                d = plistlib.loads(makernote[off:off + count])
                v = float(d["value"]) / float(d["timescale"])
                return v if math.isfinite(v) and v >= 0 else None
    except Exception:  # a foreign or damaged note: no uptime, never an error
        return None
    return None


def meta_from_exif(exif, size: tuple[int, int], reasons: list[str]) -> PhotoMeta:
    """A photo's EXIF (a PIL Exif, or None) and raw (width, height) -> PhotoMeta. `reasons`: the library warnings
    recorded while the EXIF was read (a damaged GPS block adds some)."""
    meta = PhotoMeta()
    w, h = size
    if exif is not None and exif.get(0x0112) in (5, 6, 7, 8):
        w, h = h, w
    meta.width, meta.height = w, h
    if not exif:
        meta.gps_problem = "no EXIF metadata (no GPS position)"
        return meta
    make, model = _clean_str(exif.get(0x010F)), _clean_str(exif.get(0x0110))
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:
        sub = {}
    meta.device = device_name(make, model, exif, sub)
    meta.uptime_s = apple_uptime_s(sub.get(0x927C))
    t = _clean_str(sub.get(0x9003) or exif.get(0x0132))
    if t:
        try:
            meta.time = datetime.strptime(t[:19], "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            meta.time = None
        # OffsetTimeOriginal / OffsetTime (EXIF 2.31, '+02:00'): the zone of that local time, when the camera wrote it
        off = _clean_str(sub.get(0x9011) if sub.get(0x9003) else sub.get(0x9010))
        if meta.time and off and re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", off):
            meta.time += off
    meta.focal35 = focal35_from_exif(sub, w, h)
    n_before = len(reasons)
    try:
        gps = exif.get_ifd(GPS_IFD)
    except Exception:
        gps = None
    meta.heading = _heading(gps)
    meta.h_error_m = _h_error(gps)
    if GPS_IFD in exif and (gps is None or len(reasons) > n_before or not gps):
        # a GPS pointer that leads nowhere, or a block Pillow could only read in part
        meta.gps_problem = "EXIF GPS block is corrupt"
        return meta
    if not gps or (gps.get(2) is None and gps.get(4) is None):
        meta.gps_problem = "no GPS position in EXIF" + (" (its GPS block holds no latitude/longitude)" if gps else "")
        return meta
    try:
        lat = dms(gps.get(2), gps.get(1), "N", "S", 90.0)
        lon = dms(gps.get(4), gps.get(3), "E", "W", 180.0)
    except ValueError as e:
        meta.gps_problem = f"invalid EXIF GPS ({e})"
        return meta
    if lat == 0.0 and lon == 0.0:
        meta.gps_problem = "EXIF GPS is (0, 0), a placeholder, not a position"
        return meta
    meta.latitude, meta.longitude = lat, lon
    return meta
