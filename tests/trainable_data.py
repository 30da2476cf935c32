"""Tiny synthetic geotagged photos for the trainable-model tests: 12 striped, coloured 64x64 images on a 4 x 3 grid
40 m apart, whose colour follows east and stripe frequency follows north, so a model can learn position."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

LAT0, LON0 = 39.9515, -75.1913
M_PER_DEG = 111_195.0


def grid_image(i: int, size: int = 64, rng=None) -> Image.Image:
    """Photo of grid place i (0..11): stripes whose frequency follows north, colour following east, sensor noise."""
    rng = rng if rng is not None else np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size]
    col_i, row_i = i % 4, i // 4
    freq = 2 + 3 * row_i
    stripes = (np.sin(2 * np.pi * freq * (xx + 0.3 * col_i * yy) / size) > 0).astype(float)[..., None]
    colour = np.array([60 + 60 * col_i, 200 - 50 * row_i, 120], float)
    img = stripes * colour + (1 - stripes) * (255 - colour) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def grid_latlon(i: int) -> tuple[float, float]:
    col_i, row_i = i % 4, i // 4
    return (LAT0 + 40.0 * row_i / M_PER_DEG, LON0 + 40.0 * col_i / (M_PER_DEG * np.cos(np.radians(LAT0))))


def make_grid_dataset(root: Path, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(12):
        name = f"p{i:02d}.jpg"
        grid_image(i, size, rng).save(root / "images" / name, quality=95)
        rows.append((name, *grid_latlon(i)))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"]).to_csv(root / "labels.csv", index=False)
    return root


def held_out_queries(seed: int = 123) -> list[tuple[bytes, float, float]]:
    """A fresh photo of every grid place (new sensor noise, re-encoded): not a gallery photo, with its true position."""
    import io

    rng = np.random.default_rng(seed)
    out = []
    for i in range(12):
        buf = io.BytesIO()
        grid_image(i, 64, rng).save(buf, "JPEG", quality=90)
        out.append((buf.getvalue(), *grid_latlon(i)))
    return out


def held_out_errors(predictor, seed: int = 123) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(errors of the predictor, errors of predicting the gallery centre, predicted radii), metres, on
    held_out_queries: a trained model must beat the centre by a clear margin, not merely return finite numbers."""
    from img2gps.geo import haversine_m, weighted_centre

    g = predictor.gallery
    c = weighted_centre(g["Latitude"].to_numpy(float), g["Longitude"].to_numpy(float))
    errs, base, radii = [], [], []
    for data, lat, lon in held_out_queries(seed):
        p = predictor.predict([data])[0]
        errs.append(float(haversine_m(lat, lon, p.latitude, p.longitude)))
        base.append(float(haversine_m(lat, lon, *c)))
        radii.append(p.radius_m)
    return np.array(errs), np.array(base), np.array(radii)
