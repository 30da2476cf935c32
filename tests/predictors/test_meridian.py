"""A gallery across the +-180 degree meridian behaves exactly like the same gallery far from it.

Every module that averages, subtracts, bins, bounds, clusters or plots longitudes goes through geo's wrap-aware
helpers; these tests rebuild the Taveuni (Fiji) case of issue 14: 8 photos at lat -16.80 within 60 m, half of them
at +179.999x and half at -179.999x.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from img2gps.cli import main
from img2gps.data import cleaning as cl
from img2gps.data.sources import load_dataset
from img2gps.data.splits import kfold_geo_folds
from img2gps.evaluate import metrics
from img2gps.geo import (LocalFrame, bbox_of, haversine_m, latlon_sd, lon_delta, lon_in_range, mean_lon,
                         weighted_centre, wrap_lon, z2_error)
from img2gps.predictors.registry import make_predictor
from synth import scene, write_jpeg

LAT = -16.80
# east offsets in metres of the 8 photos around the meridian (all within 60 m of each other)
EAST_M = np.array([-28.0, -21.0, -13.0, -6.0, 4.0, 11.0, 19.0, 27.0])
M_PER_DEG_LON = 111_195.0 * np.cos(np.radians(LAT))


def fiji_lons(centre_lon: float = 180.0) -> np.ndarray:
    return wrap_lon(centre_lon + EAST_M / M_PER_DEG_LON)


def write_gallery(root: Path, lons, labels: bool = True, exif: bool = False) -> Path:
    rows = ["image,Latitude,Longitude"]
    for i, lon in enumerate(lons):
        name = f"fiji{i}.jpg"
        write_jpeg(root / "images" / name, scene(500 + i, 128), *((LAT, lon) if exif else (None, None)))
        rows.append(f"{name},{LAT:.8f},{lon:.8f}")
    if labels:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_geo_helpers_wrap():
    assert wrap_lon(180.0) == -180.0 and wrap_lon(-180.0) == -180.0 and wrap_lon(359.0) == -1.0
    assert lon_delta(-179.999, 179.999) == pytest.approx(0.002)
    assert abs(lon_delta(mean_lon([179.999, -179.999]), 180.0)) < 1e-9
    lons = fiji_lons()
    assert lons.min() < -179.9 and lons.max() > 179.9  # really on both sides
    la0, lo0, la1, lo1 = bbox_of(np.full(8, LAT), lons)
    assert lo0 > lo1 and lo0 == pytest.approx(lons[lons > 0].min()) and lo1 == pytest.approx(lons[lons < 0].max())
    assert lon_in_range(lons, lo0, lo1).all() and not lon_in_range(np.array([0.0, 179.0, -179.0]), lo0, lo1).any()
    en = LocalFrame.around(np.full(8, LAT), lons).to_en(np.full(8, LAT), lons)
    assert np.allclose(en[:, 0] - en[:, 0].mean(), EAST_M - EAST_M.mean(), atol=0.05)
    c = weighted_centre(np.full(8, LAT), lons)
    assert abs(lon_delta(c[1], 180.0)) * M_PER_DEG_LON < 2.0
    assert latlon_sd(np.full(8, LAT), lons)[1] * M_PER_DEG_LON < 25  # tens of metres, not 1e7
    assert z2_error(LAT, 179.9999, LAT, -179.9999, (1e-3, 1e-3)) == pytest.approx(0.04, rel=1e-3)
    assert haversine_m(LAT, 179.9999, LAT, -179.9999) == pytest.approx(0.0002 * M_PER_DEG_LON, rel=1e-3)


def shifted(pred, dlon: float):
    """The same prediction moved by dlon degrees east (neighbours too), for comparing whole Predictions."""
    neigh = [dataclasses.replace(n, longitude=wrap_lon(n.longitude + dlon)) for n in pred.neighbours]
    return dataclasses.replace(pred, longitude=wrap_lon(pred.longitude + dlon), neighbours=neigh)


def test_knn_across_the_meridian_equals_the_same_gallery_far_from_it(tmp_path):
    answers = {}
    for name, centre in (("fiji", 180.0), ("far", 0.0)):
        root = write_gallery(tmp_path / name, fiji_lons(centre))
        ds = load_dataset(root)
        p = make_predictor("knn")
        p.fit(ds)
        query = tmp_path / f"{name}_q.jpg"
        from PIL import Image

        Image.open(root / "images" / "fiji4.jpg").save(query, "JPEG", quality=80)  # a re-encoded gallery photo
        answers[name] = p.predict([query])[0]
    fiji, far = answers["fiji"], shifted(answers["far"], 180.0)
    assert haversine_m(fiji.latitude, fiji.longitude, far.latitude, far.longitude) < 1.0
    assert fiji.radius_m == pytest.approx(far.radius_m, rel=1e-6) and fiji.radius_m < 100
    assert fiji.confidence == pytest.approx(far.confidence, rel=1e-6)
    assert [n.image_id for n in fiji.neighbours] == [n.image_id for n in far.neighbours]
    for a, b in zip(fiji.neighbours, far.neighbours):
        assert haversine_m(a.latitude, a.longitude, b.latitude, b.longitude) < 0.01
    assert -180 <= fiji.longitude < 180
    # and the answer is near the photo's own place, not 12,000 km away
    assert haversine_m(fiji.latitude, fiji.longitude, LAT, fiji_lons()[4]) < 60


@pytest.mark.parametrize("split", [(6, 2), (4, 4)])
def test_data_build_auto_bbox_keeps_a_gallery_across_the_meridian(tmp_path, split):
    # split[0] photos east of the meridian (+179.999x), split[1] west (-179.999x); all within 60 m
    lons = np.concatenate([np.full(split[0], 179.99975) + np.arange(split[0]) * 1e-5,
                           np.full(split[1], -179.99975) - np.arange(split[1]) * 1e-5])
    src = write_gallery(tmp_path / "src", lons, labels=False, exif=True) / "images"
    out = tmp_path / "out"
    assert main(["data", "build", str(src), str(out), "--bbox", "auto"]) == 0
    kept = pd.read_csv(out / "labels.csv")
    assert len(kept) == 8
    r = json.loads((out / "report.json").read_text())
    la0, lo0, la1, lo1 = cl.robust_bbox(np.full(8, LAT), lons)
    assert all(-180 <= v <= 180 for v in (lo0, lo1)) and lo0 > lo1  # a box across the meridian, GeoJSON-style
    assert not cl.outside_bbox(np.full(8, LAT), lons, (la0, lo0, la1, lo1)).any()
    area = r["area"]["bbox"]
    assert area["lon_min"] > 179.99 and area["lon_max"] < -179.99
    assert r["area"]["extent_m"]["east_west"] < 60


def test_spatial_folds_and_metrics_across_the_meridian():
    lat = np.full(8, LAT)
    a = kfold_geo_folds(lat, fiji_lons(180.0), 2, radius_m=1.0)
    b = kfold_geo_folds(lat, fiji_lons(0.0), 2, radius_m=1.0)
    assert [sorted(f.val) for f in a] == [sorted(f.val) for f in b]


def test_bbox_flag_accepts_a_box_across_the_meridian():
    assert cl.parse_bbox("-17,179.9,-16,-179.9") == (-17.0, 179.9, -16.0, -179.9)
    assert not cl.outside_bbox([-16.8, -16.8], [179.95, -179.95], (-17.0, 179.9, -16.0, -179.9)).any()
    assert cl.outside_bbox([-16.8], [0.0], (-17.0, 179.9, -16.0, -179.9)).all()
