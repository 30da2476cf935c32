"""The gallery's area (img2gps.area): split into far-apart areas, hull region, distances, uniform points."""
from __future__ import annotations

import numpy as np
import pytest

from img2gps.area import AREA_GAP_M, describe, nearest_area, split_areas
from img2gps.geo import LocalFrame, haversine_m


def _grid(lat0, lon0, n=10, step_m=20.0):
    f = LocalFrame(lat0, lon0)
    e, nn = np.meshgrid(np.arange(n) * step_m, np.arange(n) * step_m)
    lat, lon = f.to_latlon(np.stack([e.ravel(), nn.ravel()], 1))
    return np.asarray(lat), np.asarray(lon)


def test_two_campuses_far_apart_are_two_areas_and_one_campus_is_one():
    la1, lo1 = _grid(39.951, -75.191)           # Penn-like
    la2, lo2 = _grid(31.262, 34.801, n=6)       # Beer Sheva-like, 9,000 km away
    lat, lon = np.r_[la1, la2], np.r_[lo1, lo2]
    areas = split_areas(lat, lon)
    assert [a.n_photos for a in areas] == [100, 36]
    assert sorted(np.r_[areas[0].rows, areas[1].rows].tolist()) == list(range(136))
    assert split_areas(la1, lo1)[0].n_photos == 100 and len(split_areas(la1, lo1)) == 1
    assert len(describe(areas)) == 2 and "100 photos" in describe(areas)[0]


def test_a_chain_of_close_photos_stays_one_area_and_a_gap_splits_it():
    f = LocalFrame(10.0, 20.0)
    chain = np.c_[np.arange(0, 6000, 500.0), np.zeros(12)]          # steps of 500 m: one area 5.5 km long
    lat, lon = f.to_latlon(chain)
    assert len(split_areas(lat, lon)) == 1
    gapped = np.r_[chain, [[6000 + 1.5 * AREA_GAP_M, 0.0]]]       # one photo 3 km past the end
    lat, lon = f.to_latlon(gapped)
    assert [a.n_photos for a in split_areas(lat, lon)] == [12, 1]


def test_region_distance_contains_and_samples():
    lat, lon = _grid(39.951, -75.191, n=11, step_m=10.0)             # a 100 m square
    area = split_areas(lat, lon)[0]
    assert area.size_m == pytest.approx(100 * np.sqrt(2), rel=1e-3)
    c_lat, c_lon = area.centre
    assert float(area.distance_m(c_lat, c_lon)) == 0.0
    out_lat, out_lon = area.frame.to_latlon(np.array([100.0, 0.0]))  # the frame is centred: 50 m east of the edge
    assert float(area.distance_m(out_lat, out_lon)) == pytest.approx(50.0, abs=0.5)
    assert not area.contains(out_lat, out_lon) and area.contains(out_lat, out_lon, margin_m=60)
    s_lat, s_lon = area.sample(2000, seed=1)
    assert area.contains(s_lat, s_lon).all()
    en = area.frame.to_en(s_lat, s_lon)
    # uniform over the square: each quadrant holds about a quarter
    mid = en.mean(0)
    q = ((en[:, 0] > mid[0]) * 2 + (en[:, 1] > mid[1]))
    assert np.bincount(q, minlength=4).min() > 400
    b = area.bounds
    assert b[0] <= lat.min() + 1e-9 and b[2] >= lat.max() - 1e-9


def test_degenerate_areas_a_point_and_a_line():
    one = split_areas([31.0, 31.0], [34.0, 34.0])[0]
    assert one.size_m == 0.0
    la, lo = one.sample(5)
    assert np.allclose(la, 31.0) and np.allclose(lo, 34.0)
    f = LocalFrame(31.0, 34.0)
    lat, lon = f.to_latlon(np.c_[np.arange(5) * 10.0, np.zeros(5)])
    line = split_areas(lat, lon)[0]
    assert line.size_m == pytest.approx(40.0, rel=1e-3)
    assert line.contains(*line.sample(50, seed=3)).all()


def test_nearest_area_and_bad_input():
    la1, lo1 = _grid(39.951, -75.191)
    la2, lo2 = _grid(31.262, 34.801)
    areas = split_areas(np.r_[la1, la2], np.r_[lo1, lo2])
    i = nearest_area(areas, 31.3, 34.8)
    assert haversine_m(*areas[i].centre, 31.262, 34.801) < 1000
    with pytest.raises(ValueError):
        split_areas([], [])
    with pytest.raises(ValueError):
        split_areas([np.nan], [1.0])


def test_area_across_the_antimeridian_is_one():
    f = LocalFrame(-17.0, 179.999)
    lat, lon = f.to_latlon(np.c_[np.arange(-5, 5) * 30.0, np.zeros(10)])
    areas = split_areas(lat, lon)
    assert len(areas) == 1 and areas[0].size_m == pytest.approx(270.0, rel=1e-3)


def test_a_far_point_is_measured_on_the_sphere():
    """A photo from another continent: the flat frame said 10,499 km where the great circle says 9,311 km."""
    lat, lon = _grid(31.262, 34.801, n=8)
    area = split_areas(lat, lon)[0]
    d = float(area.distance_m(39.951648, -75.192245))
    exact = float(haversine_m(*area.centre, 39.951648, -75.192245))
    assert abs(d - exact) <= area.size_m
