"""Files people ask for, made from the one dict form of a prediction (types.prediction_dict): GeoJSON for GIS
tools, KML for Google Earth, and a copy of the photo with the found position in its EXIF GPS tags.

Every file is written atomically (outputs.atomic_write), so a reader never sees half a file and an interrupted
run leaves the old file (if any) as it was. The photo itself is never written: the EXIF
copy goes to a new path, and a path that is the photo is refused.
"""
from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DataError, PhotoError
from .geo import LocalFrame
from .outputs import atomic_write

# Scalar fields of a prediction record that GeoJSON/KML carry as properties (the neighbours go as a list).
PROPERTIES = ("photo", "latitude", "longitude", "radius_m", "confidence", "chance_25m", "recognised", "answer",
              "radius_note", "source", "source_note", "chance_note", "method", "heading_deg", "heading_radius_deg",
              "exif_distance_m", "exif_note")
KML_NS = "http://www.opengis.net/kml/2.2"
# A radius circle is drawn in KML up to this size; a wider "circle" on a flat frame would mislead.
KML_MAX_CIRCLE_M = 100_000.0
EXIF_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".mpo")  # piexif inserts EXIF into JPEG files without re-encoding


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` (text as UTF-8) to `path` atomically through outputs.atomic_write. Returns the path."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(raw))


def geojson(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prediction records (prediction_dict) -> a GeoJSON FeatureCollection (RFC 7946): one Point per photo at
    [longitude, latitude] (degrees, WGS 84), its PROPERTIES and `neighbours` (id, latitude, longitude, score,
    distance_m; best first) as properties."""
    feats = []
    for r in records:
        props = {k: r.get(k) for k in PROPERTIES if k in r}
        props["neighbours"] = [{k: n.get(k) for k in ("image_id", "latitude", "longitude", "score", "distance_m")}
                               for n in r.get("neighbours", [])]
        feats.append({"type": "Feature", "geometry": {"type": "Point",
                                                      "coordinates": [r["longitude"], r["latitude"]]},
                      "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def geojson_text(records: Sequence[dict[str, Any]]) -> str:
    return json.dumps(geojson(records), indent=2) + "\n"


def circle_lonlat(lat: float, lon: float, radius_m: float, n: int = 48) -> list[tuple[float, float]]:
    """(n + 1) (lon, lat) points of a closed circle of radius_m metres around (lat, lon), on a local flat frame."""
    t = np.linspace(0, 2 * np.pi, n + 1)
    en = np.stack([radius_m * np.sin(t), radius_m * np.cos(t)], axis=1)
    la, lo = LocalFrame(float(lat), float(lon)).to_latlon(en)
    la = np.clip(la, -90, 90)
    return [(float(b), float(a)) for a, b in zip(la, lo)]


def kml_text(records: Sequence[dict[str, Any]], name: str = "img2gps predictions") -> str:
    """Prediction records -> a KML 2.2 document (Google Earth): per photo a Placemark with the answer point and,
    up to KML_MAX_CIRCLE_M, its error circle as a polygon; the description says the answer in words."""
    ET.register_namespace("", KML_NS)
    q = lambda tag: f"{{{KML_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("kml"))
    doc = ET.SubElement(root, q("Document"))
    ET.SubElement(doc, q("name")).text = name
    for r in records:
        pm = ET.SubElement(doc, q("Placemark"))
        ET.SubElement(pm, q("name")).text = str(r.get("photo") or "photo")
        ET.SubElement(pm, q("description")).text = (
            f"{r.get('answer', '')}: {r.get('source_note', '')}. Radius {r['radius_m']:.0f} m "
            f"({r.get('radius_note', '')}), {r.get('chance_note') or 'confidence ' + format(r['confidence'], '.2f')}, "
            f"{r.get('method', '')}")
        data = ET.SubElement(pm, q("ExtendedData"))
        for k in PROPERTIES:
            if k in r and r[k] is not None:
                d = ET.SubElement(data, q("Data"), name=k)
                ET.SubElement(d, q("value")).text = json.dumps(r[k]) if isinstance(r[k], bool) else str(r[k])
        geom = ET.SubElement(pm, q("MultiGeometry"))
        ET.SubElement(ET.SubElement(geom, q("Point")), q("coordinates")).text = f"{r['longitude']!r},{r['latitude']!r},0"
        if 0 < r["radius_m"] <= KML_MAX_CIRCLE_M:
            ring = ET.SubElement(ET.SubElement(ET.SubElement(geom, q("Polygon")), q("outerBoundaryIs")),
                                 q("LinearRing"))
            pts = circle_lonlat(r["latitude"], r["longitude"], r["radius_m"])
            ET.SubElement(ring, q("coordinates")).text = " ".join(f"{a:.7f},{b:.7f},0" for a, b in pts)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _rational(x: float, denominator: int) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(denominator)
    return f.numerator, f.denominator


def _dms(deg: float) -> tuple[tuple[int, int], ...]:
    """Degrees (>= 0) -> EXIF degrees, minutes, seconds rationals (seconds to 1/10000, ~3 mm)."""
    t = round(deg * 3600 * 10000)  # whole ten-thousandths of a second, so no 60" ever appears
    return (t // 36_000_000, 1), (t // 600_000 % 60, 1), (t % 600_000, 10000)


def gps_ifd(lat: float, lon: float, radius_m: float | None = None,
            heading_deg: float | None = None) -> dict[int, Any]:
    """EXIF GPS tags (piexif's GPS IFD) for a position in degrees (WGS 84); the radius, when given, as
    GPSHPositioningError (metres) and the heading as GPSImgDirection (degrees from true north)."""
    import piexif

    G = piexif.GPSIFD
    ifd: dict[int, Any] = {G.GPSVersionID: (2, 3, 0, 0), G.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                           G.GPSLatitude: _dms(abs(lat)), G.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                           G.GPSLongitude: _dms(abs(lon)), G.GPSMapDatum: b"WGS-84"}
    if radius_m is not None and np.isfinite(radius_m):
        ifd[G.GPSHPositioningError] = _rational(float(radius_m), 100)
    if heading_deg is not None and np.isfinite(heading_deg):
        ifd[G.GPSImgDirectionRef] = b"T"
        ifd[G.GPSImgDirection] = _rational(float(heading_deg) % 360, 100)
    return ifd


def merged_gps(photo_gps: dict[int, Any], answer: dict[int, Any]) -> dict[int, Any]:
    """The copy's GPS IFD: the answer's tags (gps_ifd) over the photo's own GPS tags, less those that describe the
    photo's own horizontal fix (its position, datum, positioning error and DOP), which would contradict the answer.
    The photo's altitude, time and date stamps, speed, destination and (when the answer has no heading) its own
    image direction are kept."""
    import piexif

    G = piexif.GPSIFD
    fix = {G.GPSLatitude, G.GPSLatitudeRef, G.GPSLongitude, G.GPSLongitudeRef, G.GPSMapDatum,
           G.GPSHPositioningError, G.GPSDOP}
    return {**{t: v for t, v in photo_gps.items() if t not in fix}, **answer}


def _undefined_as_bytes(exif: dict) -> dict:
    """piexif reads some UNDEFINED-type tags (MakerNote, ComponentsConfiguration, SceneType of re-encoded phone
    photos) as ints or tuples of ints but writes them only as bytes: convert them, so every tag survives the copy."""
    import piexif

    for ifd, tags in exif.items():
        if not isinstance(tags, dict) or ifd not in piexif.TAGS:
            continue
        for tag, v in tags.items():
            info = piexif.TAGS[ifd].get(tag)
            v = (v,) if isinstance(v, int) else v
            if info and info["type"] == piexif.TYPES.Undefined and isinstance(v, tuple):
                if all(isinstance(x, int) and 0 <= x < 256 for x in v):
                    tags[tag] = bytes(v)
    return exif


def exif_copy_bytes(photo: bytes, name: str, record: dict[str, Any]) -> bytes:
    """The JPEG `photo` with the record's answer in its EXIF GPS tags (position, WGS-84 datum, radius as the
    positioning error, heading; merged_gps says which of the photo's own GPS tags stay); pixels and every other
    tag unchanged (no re-encoding). Raises PhotoError for a
    file that is not a JPEG or whose EXIF cannot be rewritten."""
    import piexif

    if photo[:2] != b"\xff\xd8":
        raise PhotoError(name, "--write-exif writes JPEG copies only (this file is not a JPEG)")
    try:
        exif = _undefined_as_bytes(piexif.load(photo))
    except Exception:  # unreadable EXIF: the copy gets a fresh block with the position only
        exif = {"0th": {}, "Exif": {}, "1st": {}, "thumbnail": None}
    exif["GPS"] = merged_gps(exif.get("GPS") or {}, gps_ifd(record["latitude"], record["longitude"],
                                                         record.get("radius_m"), record.get("heading_deg")))
    problem = None
    for attempt in (exif, {**exif, "1st": {}, "thumbnail": None}):  # a damaged thumbnail is the one thing dropped
        out = io.BytesIO()
        try:
            piexif.insert(piexif.dump(attempt), photo, out)
            return out.getvalue()
        except Exception as e:
            problem = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise PhotoError(name, f"its EXIF could not be rewritten ({problem})")


def write_exif_copy(photo: str | Path, record: dict[str, Any], out: str | Path) -> Path:
    """Write a copy of `photo` with the found position in its EXIF GPS tags to `out` (atomically). The photo is
    never written: an `out` that is the photo itself (same file, links included) is refused."""
    photo, out = Path(photo), Path(out)
    if out.exists() and photo.exists() and os.path.samefile(out, photo):
        raise DataError(f"{out}: is the photo itself; --write-exif writes a copy, never the original")
    from .photos import read_bytes

    return write_atomic(out, exif_copy_bytes(read_bytes(photo), str(photo), record))
