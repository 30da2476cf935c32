"""Shared test helpers for the `use` layer (API, CLI predict, server, browser, export): tiny synthetic galleries.

Four "places" ~80-120 m apart, each with its own visual pattern; a few noisy 64x64 photos per place. lite0 tells the
patterns apart, so a new photo of a place should be located near that place.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

ORIGIN = (39.9510, -75.1915)
# north, east offsets in metres of each place
PLACES = [(0.0, 0.0), (90.0, 10.0), (-20.0, 110.0), (70.0, 120.0)]
M_PER_DEG_LAT = 111_195.0

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def place_latlon(p: int) -> tuple[float, float]:
    n, e = PLACES[p]
    lat = ORIGIN[0] + n / M_PER_DEG_LAT
    lon = ORIGIN[1] + e / (M_PER_DEG_LAT * np.cos(np.radians(ORIGIN[0])))
    return float(lat), float(lon)


def place_image(p: int, seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    dx, dy = rng.integers(0, 6, 2)
    if p == 0:  # horizontal red/white stripes
        m = ((y + dy) // 8 % 2)[..., None]
        img = m * np.array([230, 40, 40]) + (1 - m) * np.array([250, 250, 250])
    elif p == 1:  # blue/yellow checkerboard
        m = (((x + dx) // 10 + (y + dy) // 10) % 2)[..., None]
        img = m * np.array([30, 60, 200]) + (1 - m) * np.array([240, 220, 40])
    elif p == 2:  # green rings
        r = np.hypot(x - 32 - dx, y - 32 - dy)
        m = (np.sin(r / 3.0) > 0)[..., None]
        img = m * np.array([20, 160, 60]) + (1 - m) * np.array([200, 240, 200])
    else:  # black/orange diagonals
        m = (((x + y + dx) // 7) % 2)[..., None]
        img = m * np.array([10, 10, 10]) + (1 - m) * np.array([250, 150, 20])
    img = img + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, gps: tuple[float, float] | None = None) -> bytes:
    """JPEG of an array, optionally with an EXIF GPS position (DMS rationals, N/S/E/W refs)."""
    im = Image.fromarray(arr)
    buf = io.BytesIO()
    if gps is None:
        im.save(buf, "JPEG", quality=92)
    else:
        exif = Image.Exif()
        lat, lon = gps

        def dms(v):
            v = abs(v)
            d = int(v)
            m = int((v - d) * 60)
            s = (v - d - m / 60) * 3600
            return (float(d), float(m), round(s, 4))

        exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
        im.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def write_gallery(folder: Path, per_place: int = 3) -> Path:
    """A dataset folder (images/ + labels.csv) with `per_place` photos of each place."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["image,Latitude,Longitude"]
    for p in range(len(PLACES)):
        lat, lon = place_latlon(p)
        for j in range(per_place):
            name = f"place{p}_{j}.jpg"
            (folder / "images" / name).write_bytes(jpeg_bytes(place_image(p, seed=100 * p + j)))
            # a few metres of GPS jitter like a phone
            rows.append(f"{name},{lat + (j - 1) * 2e-5:.7f},{lon + (j - 1) * 2e-5:.7f}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def build_model(tmp: Path, spec: str = "knn:k=2") -> Path:
    """Fit `spec` on the synthetic gallery and save it; returns the model dir."""
    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor

    ds = load_dataset(write_gallery(tmp / "gallery"))
    p = make_predictor(spec)
    p.fit(ds)
    p.save(tmp / "model")
    return tmp / "model"


def penn91_slice(n: int = 15, held_out: int = 1):
    """(dataset of n penn91 photos for the gallery, list of held-out image names) or None when the data is absent.

    Picks the held-out photo first, then its n nearest other photos by position, so the slice covers one area."""
    root = SHARED_DATA / "penn91"
    if not (root / "labels.csv").is_file():
        return None
    from img2gps.data import load_dataset

    ds = load_dataset(root)
    lat, lon = ds.lat, ds.lon
    q = [int(np.argsort(lat)[len(lat) // 2])][:held_out]
    d = np.hypot(lat - lat[q[0]], (lon - lon[q[0]]) * np.cos(np.radians(lat[q[0]])))
    order = [int(i) for i in np.argsort(d) if int(i) not in q][:n]
    return ds.subset(order), [ds.ids[i] for i in q], ds


def model_env(tmp_path_factory, spec: str = "knn:k=2"):
    """Generator body for a module-scoped fixture: a fitted synthetic model, caches in the session's temp dir."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2GPS_CACHE", str(tmp_path_factory.getbasetemp() / "img2gps-cache"))
        tmp = tmp_path_factory.mktemp("usemodel")
        yield build_model(tmp, spec)
