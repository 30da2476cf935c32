"""Leaderboard preprocessing exported by img2gps: prepare_data(csv_path) -> (X, y).

X is the list of image paths (model.py opens each photo itself, exactly as img2gps opens a query: EXIF
orientation, reduced-scale JPEG decoding, resizing), y an (N, 2) float64 array of [latitude, longitude]
(the evaluator re-reads the ground truth from the CSV). Paths are resolved against the CSV's folder first,
then the working directory, then an images/ folder beside the CSV (img2gps's dataset layout).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

IMAGE_COLUMNS = ("image_path", "filepath", "image", "path", "file_name")
LAT_COLUMNS, LON_COLUMNS = ("Latitude", "latitude", "lat"), ("Longitude", "longitude", "lon")


def _column(df, names, what, csv_path):
    for n in names:
        if n in df.columns:
            return n
    raise ValueError(f"{csv_path}: no {what} column (expected one of {', '.join(names)})")


def resolve_path(name: str, base: str) -> str:
    """The first existing of: CSV folder / name, working directory / name, CSV folder / images / name."""
    name = str(name)
    for cand in (os.path.join(base, name), os.path.abspath(name), os.path.join(base, "images", name)):
        if os.path.isfile(cand):
            return cand
    return os.path.join(base, name)  # missing: model.py reports the file by name


def prepare_data(csv_path):
    df = pd.read_csv(csv_path)
    img = _column(df, IMAGE_COLUMNS, "image", csv_path)
    lat = _column(df, LAT_COLUMNS, "latitude", csv_path)
    lon = _column(df, LON_COLUMNS, "longitude", csv_path)
    base = os.path.dirname(os.path.abspath(csv_path))
    X = [resolve_path(n, base) for n in df[img].astype(str)]
    y = df[[lat, lon]].to_numpy(dtype=np.float64)
    return X, y
