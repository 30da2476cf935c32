"""Synthetic test data made in code: textured scenes, geotagged JPEGs, small galleries. No real photos."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

ORIGIN = (40.0, -75.0)  # an arbitrary spot; nothing in the code may depend on it


def scene(seed: int, size: int = 160) -> Image.Image:
    """A textured, feature-rich image: random rectangles and circles on a noise background."""
    rng = np.random.default_rng(seed)
    arr = (rng.random((size, size, 3)) * 60 + 90).astype(np.uint8)
    im = Image.fromarray(arr)
    from PIL import ImageDraw

    d = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = rng.integers(0, size - 10, 2)
        w, h = rng.integers(6, size // 3, 2)
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        else:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
    return im


def view(im: Image.Image, seed: int, shift: int = 6) -> Image.Image:
    """Another photo of the same scene: a small crop shift plus sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = im.size
    dx, dy = rng.integers(0, shift + 1, 2)
    out = im.crop((dx, dy, w - shift + dx, h - shift + dy)).resize((w, h))
    arr = np.asarray(out, np.int16) + rng.integers(-8, 9, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _dms(value: float):
    v = abs(value)
    d = int(v)
    m = int((v - d) * 60)
    s = Fraction((v - d - m / 60) * 3600).limit_denominator(10000)
    return (Fraction(d), Fraction(m), s)


def gps_exif(lat: float | None, lon: float | None, orientation: int | None = None, when: str | None = None,
             make: str | None = None, model: str | None = None, raw_gps: dict | None = None) -> Image.Exif:
    ex = Image.Exif()
    if orientation:
        ex[0x0112] = orientation
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    if when:
        ex[0x0132] = when
    gps = raw_gps if raw_gps is not None else {}
    if lat is not None and lon is not None and raw_gps is None:
        gps = {1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W", 4: _dms(lon)}
    if gps:
        ex[0x8825] = gps
    return ex


def write_jpeg(path: Path, im: Image.Image, lat=None, lon=None, **exif_kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ex = gps_exif(lat, lon, **exif_kw)
    im.save(path, "JPEG", quality=92, exif=ex.tobytes())
    return path


def offset(dx_m: float, dy_m: float) -> tuple[float, float]:
    """ORIGIN moved dx metres east, dy metres north."""
    lat = ORIGIN[0] + dy_m / 111_195.0
    lon = ORIGIN[1] + dx_m / (111_195.0 * np.cos(np.radians(ORIGIN[0])))
    return lat, lon


def make_gallery(root: Path, n_places: int = 6, views: int = 3, spacing_m: float = 40.0, size: int = 128,
                 exif: bool = False) -> Path:
    """root/images/*.jpg + root/labels.csv: n_places scenes on a grid, `views` photos of each within ~2 m."""
    rows = ["image,Latitude,Longitude"]
    rng = np.random.default_rng(0)
    for p in range(n_places):
        base = scene(1000 + p, size)
        x, y = (p % 3) * spacing_m, (p // 3) * spacing_m
        for v in range(views):
            lat, lon = offset(x + rng.normal(0, 1), y + rng.normal(0, 1))
            name = f"place{p:02d}_view{v}.jpg"
            im = base if v == 0 else view(base, 10 * p + v)
            write_jpeg(root / "images" / name, im, *( (lat, lon) if exif else (None, None)))
            rows.append(f"{name},{lat:.8f},{lon:.8f}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def assert_same_prediction(a, b, ignore=("photo_exif_position",), abs_tol: float = 1e-9) -> None:
    """The whole Prediction agrees (position, radius, confidence, recognised, method, every neighbour with its
    position and score, heading fields when present), not just the latitude. `ignore`: fields that may differ."""
    import dataclasses

    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    for k in ignore:
        da.pop(k, None), db.pop(k, None)
    assert set(da) == set(db)
    na, nb = da.pop("neighbours"), db.pop("neighbours")
    assert len(na) == len(nb), (na, nb)
    for x, y in [(da, db)] + list(zip(na, nb)):
        for k in x:
            if isinstance(x[k], float) and isinstance(y[k], float):
                assert abs(x[k] - y[k]) <= abs_tol, (k, x[k], y[k])
            else:
                assert x[k] == y[k], (k, x[k], y[k])
