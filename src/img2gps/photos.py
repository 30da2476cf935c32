"""Open any photo safely: format checks, orientation, EXIF GPS/time/device, and metadata stripping."""
from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, PhotoError

try:  # HEIC/HEIF support; registering an opener is idempotent.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - declared dependency
    pillow_heif = None

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".tif", ".tiff"}
# The one pixel limit. Every path (data build, predict, the API, serve) takes its default from here and applies
# it through check_pixels; `--max-megapixels` overrides it per command. 120 MP fits a 108 MP (12000x9000) phone
# photo. Pillow's own decompression-bomb guard (a warning above ~89 MP) is silenced so it cannot refuse first.
MAX_PIXELS = 120_000_000
MAX_BYTES = 60 * 1024 * 1024
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}

_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769


@dataclass
class PhotoMeta:
    latitude: float | None = None
    longitude: float | None = None
    time: str | None = None  # ISO 8601, camera local time (EXIF has no zone unless OffsetTime is set)
    device: str | None = None
    width: int = 0
    height: int = 0  # after orientation
    gps_problem: str | None = None  # why there is no position, when there is none
    heading: float | None = None  # EXIF GPSImgDirection, degrees from true north (magnetic-referenced: None)
    focal35: float | None = None  # 35 mm-equivalent focal length in mm (see focal35_from_exif)
    h_error_m: float | None = None  # EXIF GPSHPositioningError: the phone's own horizontal accuracy, metres

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def readable_name(name: str) -> str:
    """A file name as text that can be written to CSV/JSON. Names that are not UTF-8 on disk (old cameras, zip
    files from Windows) arrive with undecodable bytes as surrogates; they are read as Windows-1252 instead."""
    raw = os.fsencode(str(name))
    for enc in ("utf-8", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def describe(src: ImageInput) -> str:
    if isinstance(src, (str, Path)):
        return readable_name(str(src))
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    if isinstance(src, np.ndarray):
        return f"<array {src.shape}>"
    return "<image>"


def pillow_hard_limit() -> int:
    """Pixels above which Pillow refuses to open any image (2 x Image.MAX_IMAGE_PIXELS): no limit can exceed it."""
    return 2 * int(Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else 2**62


def pixel_limit(megapixels: float | None) -> int:
    """A user's --max-megapixels (None = the default MAX_PIXELS) -> pixels; ValueError when out of range."""
    if megapixels is None:
        return MAX_PIXELS
    px = int(float(megapixels) * 1e6)
    if not (0 < px <= pillow_hard_limit()):
        raise ValueError(f"--max-megapixels must be in (0, {pillow_hard_limit() / 1e6:.0f}] "
                         f"(Pillow refuses larger images), not {megapixels}")
    return px


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Raise ImageTooLarge when width x height exceeds max_pixels."""
    if width * height > max_pixels:
        raise ImageTooLarge(name, f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP; "
                                  f"limit {max_pixels / 1e6:.0f} MP)")


def library_warnings_to(reasons: list[str]):
    """Context manager: warnings raised by Pillow/pillow-heif inside are recorded into `reasons` (one line each,
    no file paths) instead of being printed. Pillow's decompression-bomb warning is dropped: MAX_PIXELS decides."""
    import contextlib

    @contextlib.contextmanager
    def _cm():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
        for w in caught:
            line = " ".join(str(w.message).split())
            if line and line not in reasons:
                reasons.append(line)
    return _cm()


def read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if not p.exists():
        raise PhotoError(str(p), "file not found")
    if p.is_dir():
        raise PhotoError(str(p), "is a folder, not a photo")
    size = p.stat().st_size
    if size == 0:
        raise PhotoError(str(p), "empty file (0 bytes)")
    if size > MAX_BYTES:
        raise PhotoError(str(p), f"file too large ({size / 2**20:.0f} MiB > {MAX_BYTES / 2**20:.0f} MiB)")
    try:
        return p.read_bytes()
    except OSError as e:
        raise PhotoError(str(p), f"cannot read file ({e.strerror or e})") from None


def _open_pil(data: bytes, name: str, max_side: int | None = None, decode: bool = True,
              max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode, mapping every PIL failure to a one-line PhotoError (ImageTooLarge above max_pixels).

    With max_side, JPEGs are decoded at a reduced DCT scale (PIL draft): 4-8x faster for a 12 MP photo.
    Library warnings are never printed (a real failure raises; read_meta turns EXIF damage into reasons)."""
    if not data:
        raise PhotoError(name, "empty file (0 bytes)")
    reasons: list[str] = []
    try:
        with library_warnings_to(reasons):
            im = Image.open(io.BytesIO(data))
            check_pixels(im.width, im.height, name, max_pixels)
            if max_side and im.format in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
                im.draft("RGB", (max_side, max_side))
            if decode:
                im.load()
    except PhotoError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(name, f"image too large (more than {pillow_hard_limit() / 1e6:.0f} MP; "
                                  f"limit {max_pixels / 1e6:.0f} MP)") from None
    except UnidentifiedImageError:
        if pillow_heif is None and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
            raise PhotoError(name, "HEIC/HEIF photo, but pillow-heif is not installed (pip install pillow-heif)") from None
        raise PhotoError(name, "unknown or unsupported image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise PhotoError(name, f"corrupt or truncated image ({' '.join(str(e).split())})") from None
    if im.width < 1 or im.height < 1:
        raise PhotoError(name, "image has no pixels")
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Upright RGB with no metadata attached (so nothing downstream can read the EXIF GPS)."""
    try:
        with library_warnings_to([]):  # a broken EXIF block should not lose the photo, nor print a warning
            im = ImageOps.exif_transpose(im)
    except Exception:  # a broken orientation tag should not lose the photo
        pass
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        im = Image.fromarray((arr / hi * 255).astype(np.uint8))
    rgb = im.convert("RGB")
    return strip_metadata(rgb)


def strip_metadata(im: Image.Image) -> Image.Image:
    """A pixel-identical copy with no EXIF/XMP/ICC info: a predictor must never see the query's GPS."""
    clean = Image.frombytes(im.mode, im.size, im.tobytes())
    return clean


def open_image(src: ImageInput, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Any supported input -> upright RGB PIL image without metadata, optionally downscaled.

    Raises PhotoError (ImageTooLarge above max_pixels) with a one-line reason."""
    name = describe(src)
    if isinstance(src, (str, Path)):
        im = _open_pil(read_bytes(src), name, max_side, max_pixels=max_pixels)
    elif isinstance(src, (bytes, bytearray)):
        im = _open_pil(bytes(src), name, max_side, max_pixels=max_pixels)
    elif isinstance(src, Image.Image):
        im = src
    elif isinstance(src, np.ndarray):
        arr = src
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise PhotoError(name, "array must be HxW or HxWxC and non-empty")
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr)
    else:
        raise PhotoError(name, f"unsupported input type {type(src).__name__}")
    out = _to_rgb(im)
    if max_side and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def _ratio(x) -> float:
    try:
        if isinstance(x, tuple) and len(x) == 2:
            num, den = x
            return float(num) / float(den) if float(den) != 0 else math.nan
        return float(x)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def _dms(value, ref, pos: str, neg: str, limit: float) -> float:
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


def _heading(gps) -> float | None:
    """GPSImgDirection (tag 17) in [0, 360) when referenced to true north (tag 16 'T'); else None."""
    if not gps or 17 not in gps:
        return None
    ref = _clean_str(gps.get(16))
    if ref is not None and ref.upper() != "T":
        return None  # magnetic north: the declination is unknown here, so no usable bearing
    v = _ratio(gps.get(17))
    return float(v % 360.0) if math.isfinite(v) and 0 <= v <= 360 else None


def _h_error(gps) -> float | None:
    """GPSHPositioningError (tag 31, metres) when present and plausible; else None."""
    if not gps or 31 not in gps:
        return None
    v = _ratio(gps.get(31))
    return float(v) if math.isfinite(v) and 0 < v < 100_000 else None


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


def read_focal35(src: ImageInput) -> float | None:
    """The only query metadata a method may read: its 35 mm-equivalent focal length (None when unknown).

    Paths and bytes are read from their EXIF header; a PIL image from its attached EXIF; arrays have none.
    Never raises: a photo that cannot be read is reported when it is opened.
    """
    try:
        if isinstance(src, (str, Path)):
            im = _open_pil(read_bytes(src), describe(src), decode=False)
        elif isinstance(src, (bytes, bytearray)):
            im = _open_pil(bytes(src), describe(src), decode=False)
        elif isinstance(src, Image.Image):
            im = src
        else:
            return None
        with library_warnings_to([]):  # a damaged EXIF block must not print a library warning
            exif = im.getexif()
            return focal35_from_exif(exif.get_ifd(_EXIF_IFD), *im.size) if exif else None
    except Exception:
        return None


def read_meta(src: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> PhotoMeta:
    """EXIF GPS (DMS rationals, N/S/E/W refs; altitude ignored), capture time, device, oriented size.

    Never prints a library warning: a damaged GPS block becomes meta.gps_problem = "EXIF GPS block is corrupt"."""
    name = describe(src)
    data = read_bytes(src) if isinstance(src, (str, Path)) else src
    # header and EXIF only: pixels are checked when the photo is opened
    im = _open_pil(data, name, decode=False, max_pixels=max_pixels)
    reasons: list[str] = []
    with library_warnings_to(reasons):
        return _read_exif(im, reasons)


def _read_exif(im: Image.Image, reasons: list[str]) -> PhotoMeta:
    meta = PhotoMeta()
    try:
        exif = im.getexif()
    except Exception:
        exif = None
    w, h = im.size
    if exif is not None and exif.get(0x0112) in (5, 6, 7, 8):
        w, h = h, w
    meta.width, meta.height = w, h
    if not exif:
        meta.gps_problem = "no EXIF metadata (no GPS position)"
        return meta
    make, model = _clean_str(exif.get(0x010F)), _clean_str(exif.get(0x0110))
    # "Apple" + "iPhone 13" -> "Apple iPhone 13"; "samsung" + "SM-A315F" likewise; no doubled make.
    meta.device = model if (make and model and model.lower().startswith(make.lower())) else (
        " ".join(x for x in (make, model) if x) or None)
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    t = _clean_str(sub.get(0x9003) or exif.get(0x0132))
    if t:
        try:
            meta.time = datetime.strptime(t[:19], "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            meta.time = None
    meta.focal35 = focal35_from_exif(sub, w, h)
    n_before = len(reasons)
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:
        gps = None
    meta.heading = _heading(gps)
    meta.h_error_m = _h_error(gps)
    if _GPS_IFD in exif and (gps is None or len(reasons) > n_before or not gps):
        # a GPS pointer that leads nowhere, or a block Pillow could only read in part
        meta.gps_problem = "EXIF GPS block is corrupt"
        return meta
    if not gps or (gps.get(2) is None and gps.get(4) is None):
        meta.gps_problem = "no GPS position in EXIF" + (" (its GPS block holds no latitude/longitude)" if gps else "")
        return meta
    try:
        lat = _dms(gps.get(2), gps.get(1), "N", "S", 90.0)
        lon = _dms(gps.get(4), gps.get(3), "E", "W", 180.0)
    except ValueError as e:
        meta.gps_problem = f"invalid EXIF GPS ({e})"
        return meta
    if lat == 0.0 and lon == 0.0:
        meta.gps_problem = "EXIF GPS is (0, 0), a placeholder, not a position"
        return meta
    meta.latitude, meta.longitude = lat, lon
    return meta
