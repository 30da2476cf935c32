"""Open any photo safely: format checks, orientation, EXIF GPS/time/device, and metadata stripping."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, PhotoError, UnsupportedFormat
from .exif import PhotoMeta, meta_from_exif
from .types import Query

try:  # HEIC/HEIF support; registering an opener is idempotent.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - declared dependency
    pillow_heif = None

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".heic", ".heif", ".webp", ".tif", ".tiff"}  # .mpo: multi-picture JPEG
# The one pixel limit. Every path (data build, predict, the API, serve) takes its default from here and applies
# it through check_pixels; `--max-megapixels` overrides it per command. 120 MP fits a 108 MP (12000x9000) phone
# photo. Pillow's own decompression-bomb guard (a warning above ~89 MP) is silenced so it cannot refuse first.
MAX_PIXELS = 120_000_000
MAX_BYTES = 60 * 1024 * 1024
# What decoding makes of a photo's bytes, versioned: part of every per-photo feature cache's key (embeddings,
# keypoints), so features of pixels decoded by older code are never reused. 2: colour profiles converted to sRGB.
DECODE_VERSION = 2
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}



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
    """Open (and with decode, fully decode), mapping every PIL failure to a one-line PhotoError (ImageTooLarge
    above max_pixels). Library warnings are never printed (a real failure raises; read_meta turns EXIF damage
    into reasons)."""
    if not data:
        raise PhotoError(name, "empty file (0 bytes)")
    with _pil_errors(data, name, max_pixels):
        im = Image.open(io.BytesIO(data))
        check_pixels(im.width, im.height, name, max_pixels)
    if decode:
        im = _decode(im, data, name, max_side, max_pixels)
    elif im.width < 1 or im.height < 1:
        raise PhotoError(name, "image has no pixels")
    return im


def _decode(im: Image.Image, data: bytes, name: str, max_side: int | None, max_pixels: int) -> Image.Image:
    """Decode the pixels of an opened photo; returns the decoded image (`im`, or the same photo reopened with its
    end marker restored when that is all it lacks: jpeg_missing_only_end_marker). With max_side, JPEGs are
    decoded at a reduced DCT scale (PIL draft): 4-8x faster for a 12 MP photo."""
    def load(image: Image.Image, b: bytes) -> None:
        with _pil_errors(b, name, max_pixels):
            if max_side and image.format in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
                image.draft("RGB", (max_side, max_side))
            image.load()

    try:
        load(im, data)
    except PhotoError as e:
        fixed = jpeg_missing_only_end_marker(data) if e.problem.startswith("corrupt or truncated") else None
        if fixed is None:
            raise
        im = _open_pil(fixed, name, decode=False, max_pixels=max_pixels)
        load(im, fixed)
    if im.width < 1 or im.height < 1:
        raise PhotoError(name, "image has no pixels")
    return im


@contextlib.contextmanager
def _pil_errors(data: bytes, name: str, max_pixels: int):
    """PIL failures (and warnings) inside the block -> one-line PhotoError naming the photo."""
    try:
        with library_warnings_to([]):
            yield
    except PhotoError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(name, f"image too large (more than {pillow_hard_limit() / 1e6:.0f} MP; "
                                  f"limit {max_pixels / 1e6:.0f} MP)") from None
    except UnidentifiedImageError:
        if pillow_heif is None and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
            raise UnsupportedFormat(name, "HEIC/HEIF photo, but pillow-heif is not installed (pip install "
                                          "pillow-heif)") from None
        raise UnsupportedFormat(name, "unknown or unsupported image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise PhotoError(name, f"corrupt or truncated image ({' '.join(str(e).split())})") from None


_EOI = b"\xff\xd9"
# Entropy-coded fillers with no 0xFF byte (so they hold no marker), decoded as image data if a scan is unfinished.
# Several, because libjpeg pads a scan that ends early with zero-bits and decodes an invalid Huffman code as a zero:
# a single filler can decode like the padding by chance.
_FILLERS = (b"\xfe" * 256, b"\x55" * 256, b"\xaa" * 256, bytes((i * 37 + 11) % 255 for i in range(256)))


def jpeg_missing_only_end_marker(data: bytes) -> bytes | None:
    """`data` with its end-of-image marker restored, when the JPEG lacks only that marker (some cameras, phone
    apps and upload tools drop it; Pillow then says "truncated" though every pixel is there); None otherwise.

    Test: decode with the marker appended, and again with filler bytes before it. Filler after the last complete
    scan is skipped by libjpeg, so the decodes are pixel-identical only when no scan was cut; a file cut in the
    middle decodes the filler as image data and differs (and stays refused). Decoded at a reduced DCT scale."""
    if data[:2] != b"\xff\xd8" or data.endswith(_EOI):
        return None
    # A trailing 0xFF is the first byte of a marker (or half of a stuffed 0xFF00): the filler must not follow it.
    data = data.rstrip(b"\xff")

    def pixels(b: bytes):
        with library_warnings_to([]):
            im = Image.open(io.BytesIO(b))
            if im.format not in ("JPEG", "MPO"):
                return None
            im.draft("RGB", (512, 512))
            return np.asarray(im.convert("RGB"))

    try:
        a = pixels(data + _EOI)
        if a is None:
            return None
        for filler in _FILLERS:
            if not np.array_equal(a, pixels(data + filler + _EOI)):
                return None
    except Exception:  # anything that does not decode cleanly stays refused
        return None
    return data + _EOI


# EXIF Orientation (tag 0x0112) -> the transpose that makes the pixels upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _to_rgb(im: Image.Image, orientation: int | None = None) -> Image.Image:
    """Upright RGB with no metadata attached (so nothing downstream can read the EXIF GPS). `orientation`: the
    EXIF orientation when the caller already read the EXIF (else it is read from the image). Pixels in an embedded
    colour profile are converted to sRGB (to_srgb)."""
    icc = im.info.get("icc_profile")
    if orientation is None:
        try:
            with library_warnings_to([]):  # a broken EXIF block should not lose the photo, nor print a warning
                im = ImageOps.exif_transpose(im)
        except Exception:  # a broken orientation tag should not lose the photo
            pass
    elif orientation in _UPRIGHT:
        im = im.transpose(_UPRIGHT[orientation])
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        im = Image.fromarray((arr / hi * 255).astype(np.uint8))
    if im.mode not in ("RGB", "CMYK"):
        im = im.convert("RGB")
    rgb = to_srgb(im, icc).convert("RGB")  # always a new image object, whose info is a copy of im's
    rgb.info.clear()  # its metadata dropped without copying the pixels: a plain Image keeps its EXIF only there
    return rgb


@functools.lru_cache(maxsize=1)
def _srgb():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """An RGB or CMYK image whose pixels are in colour profile `icc` (ICC bytes: Display P3 from a phone, Adobe RGB,
    a print CMYK profile) converted to sRGB (LittleCMS, perceptual intent), the space the encoders were trained
    on and that a profile-less photo is taken to be in. No profile, an sRGB one, or one LittleCMS cannot apply
    to this image: returned as it is (the photo is kept; its colours may be off)."""
    if not icc:
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower():
            return im
        return ImageCms.profileToProfile(im, src, _srgb(), outputMode="RGB")
    except Exception:  # a damaged or mismatched profile (e.g. a grey profile on an RGB image)
        return im


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
        return _meta_of(im)[0].focal35  # from the upright size, as every reader of the focal length
    except Exception:
        return None


def read_meta(src: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> PhotoMeta:
    """EXIF GPS (DMS rationals, N/S/E/W refs; altitude ignored), capture time, device, oriented size.

    Never prints a library warning: a damaged GPS block becomes meta.gps_problem = "EXIF GPS block is corrupt"."""
    return read_header(src, max_pixels).meta  # header and EXIF only: pixels are checked when the photo is opened


@dataclass
class Header:
    """A photo opened once (read_header): its bytes, its parsed header `im` (pixels not decoded yet), its EXIF
    facts and EXIF orientation, read once. `decode` then turns the same opened photo into pixels."""
    name: str
    data: bytes
    im: Image.Image
    meta: PhotoMeta
    orientation: int
    max_pixels: int = MAX_PIXELS

    def decode(self, max_side: int | None = None) -> Image.Image:
        """Upright RGB pixels in sRGB with no metadata attached, the same pixels open_image gives. max_side: JPEGs
        decode at a reduced DCT scale, then LANCZOS to it. Call once: the parsed header is decoded in place.
        Raises PhotoError with a one-line reason."""
        im = _decode(self.im, self.data, self.name, max_side, self.max_pixels)
        rgb = _to_rgb(im, self.orientation)
        if max_side and max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return rgb


def read_header(src: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Header:
    """Read a photo's bytes once, parse its header once and read its EXIF once (no pixels decoded).

    Raises PhotoError (ImageTooLarge above max_pixels) with a one-line reason naming the photo."""
    name = describe(src)
    data = read_bytes(src) if isinstance(src, (str, Path)) else bytes(src)
    im = _open_pil(data, name, decode=False, max_pixels=max_pixels)
    meta, exif = _meta_of(im)  # before any DCT scaling changes im.size: the focal length uses the upright size
    o = exif.get(0x0112, 1) if exif else 1  # what ImageOps.exif_transpose reads (XMP orientation included)
    return Header(name, data, im, meta, o if isinstance(o, int) else 1, max_pixels)


def _meta_of(im: Image.Image):
    """(PhotoMeta, the Exif object or None) of an opened photo: its EXIF is read here, once."""
    reasons: list[str] = []
    with library_warnings_to(reasons):
        try:
            exif = im.getexif()
        except Exception:
            exif = None
        return meta_from_exif(exif, im.size, reasons), exif


def open_query(src: ImageInput, max_side: int | None = None,
               max_pixels: int = MAX_PIXELS) -> tuple[Query, PhotoMeta | None]:
    """A query photo -> (types.Query, its EXIF facts for display or None), the photo opened once, its EXIF read
    once and its pixels never copied through an array. max_side: the long side the model decodes queries at
    (JPEGs at a reduced DCT scale, then LANCZOS); None = full size. Paths and bytes give PhotoMeta (the query's
    own GPS is for display only: Query never holds it); a PIL image gives its attached focal length and no meta;
    an array neither.

    Raises PhotoError (ImageTooLarge above max_pixels) with a one-line reason naming the photo."""
    if not isinstance(src, (str, Path, bytes, bytearray)):
        focal = read_focal35(src)  # a PIL image's attached EXIF; arrays have none
        return Query(open_image(src, max_side=max_side, max_pixels=max_pixels), focal, describe(src)), None
    head = read_header(src, max_pixels)
    return Query(head.decode(max_side), head.meta.focal35, head.name), head.meta
