"""Photos as people share them: seeded transformations of a camera file, for the robustness bench.

Each kind turns the bytes of a camera photo into the bytes a user would actually hand over after sharing it
(docs/shared-photos.md lists the kinds and their ranges). Every output is re-encoded from bare pixels, so it
carries no EXIF at all: no GPS, no orientation, no focal length (as after a messaging app or a screenshot).
Severities are drawn per photo from ranges (seeded by the kind, the photo's name and the seed), so a bench over
many photos measures the kind, not one parameter setting.
"""
from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from ..errors import DataError
from ..photos import open_image

if TYPE_CHECKING:  # annotations only: sources imports the photo stack this module needs without it
    from .sources import GeoDataset

ORIGINAL = "original"


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=int(quality))  # no exif= argument: the output has none
    return buf.getvalue()


def _resize_long(im: Image.Image, side: int) -> Image.Image:
    s = side / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)


def reencode(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Social-media re-encode: long side 720-1,400 px, JPEG quality 55-85."""
    return _jpeg(_resize_long(im, int(rng.integers(720, 1401))), int(rng.integers(55, 86)))


def crop(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Square crop anywhere in the frame (side 55-100% of the short side), long side 400-1,080 px, q 65-85."""
    short = min(im.size)
    side = int(short * rng.uniform(0.55, 1.0))
    x0 = int(rng.integers(0, im.width - side + 1))
    y0 = int(rng.integers(0, im.height - side + 1))
    sq = im.crop((x0, y0, x0 + side, y0 + side))
    return _jpeg(_resize_long(sq, int(rng.integers(400, 1081))), int(rng.integers(65, 86)))


def _vignette(w: int, h: int, strength: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2)) / np.sqrt(2)  # 0 centre .. 1 corner
    return (1.0 - strength * r ** 2)[..., None]


def filtered(im: Image.Image, rng: np.random.Generator) -> bytes:
    """An app filter: warm or cool cast, contrast 1.1-1.5x, saturation 0.6-1.5x, vignette 0-50% at the corners,
    long side 720-1,400 px, q 65-85."""
    im = _resize_long(im, int(rng.integers(720, 1401)))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(1.1, 1.5))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.5))
    a = np.asarray(im, np.float32)
    warm = rng.uniform(0.05, 0.2) * (1 if rng.random() < 0.75 else -1)  # mostly warm, sometimes cool
    a = a * np.array([1 + warm, 1 + warm / 3, 1 - warm], np.float32) + rng.uniform(-10, 20)  # cast + lift
    a = a * _vignette(a.shape[1], a.shape[0], rng.uniform(0.0, 0.5))
    return _jpeg(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), int(rng.integers(65, 86)))


def screenshot(im: Image.Image, rng: np.random.Generator) -> bytes:
    """A screenshot of a post: the photo (full width, or with a small margin) inside a tall phone screen with a
    status bar, an account line, and caption/comment text lines; a light or a dark app (half each); screen
    width 720-1,290 px at aspect 2.0-2.2; PNG or JPEG q 70-90 (half each)."""
    dark = rng.random() < 0.5
    bg, ink, mid = ((0, 0, 0), (235, 235, 235), (60, 60, 60)) if dark else ((255, 255, 255), (20, 20, 20), (200, 200, 200))
    if rng.random() < 0.3:  # a dark-grey app (e.g. a dim theme) rather than pure black/white
        bg = (28, 28, 30) if dark else (242, 242, 247)
    w = int(rng.integers(720, 1291))
    h = int(w * rng.uniform(2.0, 2.2))
    screen = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(screen)
    u = w / 100  # layout unit
    margin = int(u * rng.choice([0, 0, 2, 4]))
    top = int(h * rng.uniform(0.08, 0.3))
    pw = w - 2 * margin
    ph = min(int(pw * im.height / im.width), int(h * 0.6))
    if rng.random() < 0.4:  # the app shows it as a square or 4:5 tile
        ph = min(int(pw * rng.choice([1.0, 1.25])), int(h * 0.6))
        s = max(pw / im.width, ph / im.height)
        big = im.resize((max(pw, round(im.width * s)), max(ph, round(im.height * s))), Image.Resampling.LANCZOS)
        ox, oy = (big.width - pw) // 2, (big.height - ph) // 2
        photo = big.crop((ox, oy, ox + pw, oy + ph))
    else:
        photo = im.resize((pw, ph), Image.Resampling.LANCZOS)
    screen.paste(photo, (margin, top))
    d.rectangle((int(3 * u), int(1.5 * u), int(15 * u), int(3.5 * u)), fill=ink)  # status bar: clock, icons
    d.rectangle((int(75 * u), int(1.5 * u), int(96 * u), int(3.5 * u)), fill=ink)
    d.ellipse((int(3 * u), top - int(11 * u), int(11 * u), top - int(3 * u)), fill=mid)  # avatar + name
    d.rectangle((int(14 * u), top - int(8.5 * u), int(14 * u + rng.uniform(20, 45) * u), top - int(5.5 * u)), fill=ink)
    y = top + ph + int(4 * u)
    for _ in range(int(rng.integers(2, 9))):  # icon row, caption and comment lines
        if y > h - 6 * u:
            break
        d.rectangle((int(3 * u), y, int(3 * u + rng.uniform(30, 94) * u), y + int(2.2 * u)), fill=ink)
        y += int(rng.uniform(4, 6) * u)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        screen.save(buf, "PNG", compress_level=1)  # fast; the pixels are the same at any level
        return buf.getvalue()
    return _jpeg(screen, int(rng.integers(70, 91)))


def thumbnail(im: Image.Image, rng: np.random.Generator) -> bytes:
    """A messaging-app thumbnail: long side 400-560 px, JPEG quality 55-70."""
    return _jpeg(_resize_long(im, int(rng.integers(400, 561))), int(rng.integers(55, 71)))


def lowlight(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Dusk / low light: brightness 40-70%, a gamma that crushes shadows (1.0-1.6), bluer (blue gain up to 1.25,
    red down to 0.8), sensor noise (sigma 2-8 levels), slight blur (radius 0.5-2 px at 1,400 px), long side
    720-1,400 px, q 60-85."""
    im = _resize_long(im, int(rng.integers(720, 1401)))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * max(im.size) / 1400))
    a = np.asarray(im, np.float32) / 255.0
    a = a ** rng.uniform(1.0, 1.6) * rng.uniform(0.4, 0.7)
    blue = rng.uniform(0.0, 0.25)
    a = a * np.array([1 - 0.8 * blue, 1 - 0.2 * blue, 1 + blue], np.float32)
    a = a * 255 + rng.normal(0, rng.uniform(2, 8), a.shape)
    return _jpeg(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), int(rng.integers(60, 86)))


def rotated(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Turned by 90 degrees either way (as the sensor stored it) with the EXIF orientation tag lost; long side
    720-1,400 px, q 65-90."""
    im = im.transpose(Image.Transpose.ROTATE_90 if rng.random() < 0.5 else Image.Transpose.ROTATE_270)
    return _jpeg(_resize_long(im, int(rng.integers(720, 1401))), int(rng.integers(65, 91)))


KINDS: dict[str, Callable[[Image.Image, np.random.Generator], bytes]] = {
    "reencode": reencode, "crop": crop, "filter": filtered, "screenshot": screenshot, "thumbnail": thumbnail,
    "lowlight": lowlight, "rotated": rotated,
}


def parse_kinds(value: str | None) -> list[str]:
    """'crop,lowlight' -> ['original', 'crop', 'lowlight'] (the original is always first); 'all' = every kind.
    Raises DataError naming an unknown kind."""
    names = [k.strip() for k in (value or "").split(",") if k.strip()]
    if names == ["all"]:
        names = list(KINDS)
    bad = [k for k in names if k != ORIGINAL and k not in KINDS]
    if bad:
        raise DataError(f"--query-as: unknown kind {bad[0]!r}; known: {', '.join(KINDS)} (or all)")
    return [ORIGINAL] + [k for k in dict.fromkeys(names) if k != ORIGINAL]


def as_shared(data: bytes, kind: str, name: str, seed: int = 0) -> bytes:
    """The photo `data` (camera file bytes) as delivered by `kind`, with severities drawn from a generator seeded
    by (kind, name, seed): the same photo always gets the same transformation. 'original' returns data as is.

    Raises DataError for an unknown kind; PhotoError when data is not a readable photo."""
    if kind == ORIGINAL:
        return data
    if kind not in KINDS:
        raise DataError(f"unknown query kind {kind!r}; known: {', '.join(KINDS)}")
    digest = hashlib.sha256(f"{kind}\0{name}\0{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return KINDS[kind](open_image(data), rng)  # open_image: upright pixels, metadata dropped


class Delivered:
    """The bytes of each held-out photo as delivered by each kind (data.shared_photos), made once per run and
    shared by every method and fold, so all methods see the same transformed photos."""

    def __init__(self, ds: GeoDataset, seed: int = 0):
        self.ds, self.seed, self._memo = ds, seed, {}

    def __call__(self, kind: str) -> Callable[[int], bytes] | None:
        if kind == ORIGINAL:
            return None

        def deliver(i: int) -> bytes:
            if (kind, i) not in self._memo:
                self._memo[kind, i] = as_shared(self.ds.read(i), kind, self.ds.ids[i], self.seed)
            return self._memo[kind, i]
        return deliver


def kind_ratios(results: dict, specs: Sequence[str], kinds: Sequence[str]) -> list[dict]:
    """One row per method and kind: verified share (recognised or scene), recognised share and mean error, each
    also as a ratio to the same photos as taken (the original files, same run; None where the original share is
    0), and the radius coverage, for the robustness targets (issue 29)."""
    rows = []
    for spec in specs:
        base = results.get(spec)
        if base is None:
            continue
        for kind in kinds:
            m = results.get(f"{spec} as {kind}")
            if m is None:
                continue
            vb, vk = base.get("verified_frac") or 0.0, m.get("verified_frac") or 0.0
            rb, rk = base.get("recognised_frac") or 0.0, m.get("recognised_frac") or 0.0
            rows.append({"method": spec, "query as": kind,
                         "verified": vk, "verified ratio": (vk / vb) if vb else None,
                         "recognised": rk, "recognised ratio": (rk / rb) if rb else None,
                         "mean m": m["mean_m"], "mean ratio": m["mean_m"] / base["mean_m"],
                         "radius cover": m["radius_coverage"], "ms p50": m["predict_ms_p50"]})
    return rows
