"""The knndm:K bench protocol (kNNDM): held-out photos as far from the rest as points spread over the area."""
from __future__ import annotations

import numpy as np
import pytest

from img2gps.area import area_point_distances_m, split_areas
from img2gps.data.splits import folds_for_protocol, knndm_folds
from img2gps.errors import DataError
from img2gps.geo import LocalFrame, pairwise_m


def _clustered(n_spots=16, per=3, seed=0):
    """Photos in tight groups (burst photos at a spot) spread over a 300 m square."""
    rng = np.random.default_rng(seed)
    spots = rng.uniform(0, 300, (n_spots, 2))
    en = np.repeat(spots, per, axis=0) + rng.normal(0, 1.0, (n_spots * per, 2))
    lat, lon = LocalFrame(40.0, -75.0).to_latlon(en)
    return np.asarray(lat), np.asarray(lon), en


@pytest.mark.slow  # ~20 k-means fits
def test_knndm_matches_the_area_distances_where_random_folds_do_not():
    lat, lon, en = _clustered()
    folds = knndm_folds(lat, lon, 5)
    assert sorted(np.concatenate([f.val for f in folds]).tolist()) == list(range(len(lat)))
    assert all(not set(f.train) & set(f.val) for f in folds)
    info = folds[0].info
    target = np.median(area_point_distances_m(lat, lon))
    assert info["area_nnd_median_m"] == pytest.approx(target, rel=0.05)
    # random 5-fold leaves a same-spot sibling in training (~1 m); kNNDM holds photos out as far as area points
    assert abs(info["heldout_nnd_median_m"] - target) < 0.35 * target
    rnd = folds_for_protocol("kfold:5", type("D", (), {"lat": lat, "lon": lon, "__len__": lambda s: len(lat)})())
    nnd = np.concatenate([pairwise_m(en[f.val], en[f.train]).min(1) for f in rnd])
    assert np.median(nnd) < 0.2 * target


@pytest.mark.slow
def test_knndm_protocol_string_and_errors():
    lat, lon, _ = _clustered(10, 2)
    ds = type("D", (), {"lat": lat, "lon": lon, "__len__": lambda s: len(lat)})()
    assert len(folds_for_protocol("knndm:4", ds)) == 4
    with pytest.raises(DataError):
        folds_for_protocol("knndm:1", ds)


def test_area_sizes_are_additive_facts():
    lat, lon, _ = _clustered()
    a = split_areas(lat, lon)[0]
    assert 0.5 * 300 ** 2 < a.region_m2 <= 300 ** 2
