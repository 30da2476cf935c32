"""Tiny synthetic geotagged photos for the trainable-model tests: 12 striped, coloured 64x64 images on a 4 x 3 grid
40 m apart, whose colour follows east and stripe frequency follows north, so a model can learn position."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

LAT0, LON0 = 39.9515, -75.1913
M_PER_DEG = 111_195.0


def make_grid_dataset(root: Path, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    rows = []
    for i in range(12):
        col_i, row_i = i % 4, i // 4
        freq = 2 + 3 * row_i
        stripes = (np.sin(2 * np.pi * freq * (xx + 0.3 * col_i * yy) / size) > 0).astype(float)[..., None]
        colour = np.array([60 + 60 * col_i, 200 - 50 * row_i, 120], float)
        img = stripes * colour + (1 - stripes) * (255 - colour) + rng.normal(0, 8, (size, size, 3))
        name = f"p{i:02d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / name, quality=95)
        lat = LAT0 + 40.0 * row_i / M_PER_DEG
        lon = LON0 + 40.0 * col_i / (M_PER_DEG * np.cos(np.radians(LAT0)))
        rows.append((name, lat, lon))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"]).to_csv(root / "labels.csv", index=False)
    return root
