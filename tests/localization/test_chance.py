"""The calibrated chance within 25 m (localization/chance.py): isotonic in the radius, fitted on the same held-out
records as the radius, shown in words; its calibration error measured as the bench does."""
from __future__ import annotations

import numpy as np
import pytest

from img2gps.localization.chance import CHANCE_M, ece, fit_chance
from img2gps.localization.conformal import MondrianRadius
from img2gps.types import Prediction, prediction_dict


def _records(n, seed):
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["near", "block"], n)
    spread = np.where(kinds == "near", rng.uniform(0, 10, n), rng.uniform(10, 80, n))
    err = rng.exponential(1.0, n) * (5 + spread)  # the error grows with the spread
    return kinds, spread, err


def test_chance_is_calibrated_on_new_answers_like_the_held_out_ones():
    kinds, spread, err = _records(4000, 0)
    rm = MondrianRadius.fit(kinds, kinds, err, spread)  # the hold-out names double as kinds here
    k2, s2, e2 = _records(4000, 1)
    p = np.array([rm.chance(k, rm.radius(k, s)) for k, s in zip(k2, s2)])
    assert ece(p, e2 <= CHANCE_M) < 0.03
    assert p.min() < 0.3 and p.max() > 0.8  # it separates, unlike a constant
    # confidence is the documented alias of the chance
    assert rm.confidence("near", 12.0) == pytest.approx(rm.chance("near", 12.0))


def test_chance_never_rises_with_the_radius_and_needs_records():
    r, p = fit_chance(np.linspace(1, 100, 50), np.linspace(1, 100, 50) * 0.6)
    assert np.all(np.diff(p) <= 1e-12) and np.all(np.diff(r) >= 0)
    assert fit_chance([1, 2], [1, 2]) is None


def test_ece_of_known_cases():
    assert ece([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)
    assert ece([1.0] * 4, [False] * 4) == pytest.approx(1.0)
    assert ece([], []) is None


def test_chance_in_words_on_every_output():
    d = prediction_dict(Prediction(40.0, -75.0, 20.0, 0.83, False, "knn", chance_25m=0.834))
    assert d["chance_note"] == "chance within 25 m: 83%" and d["chance_25m"] == pytest.approx(0.834)
    assert prediction_dict(Prediction(40.0, -75.0, 20.0, 0.5, False, "knn"))["chance_note"] is None


def test_difficulty_bins_pick_the_signal_that_separates_and_keep_30_per_bin():
    from img2gps.localization.difficulty import DifficultyBins, merged_edges

    rng = np.random.default_rng(0)
    n = 400
    inl = rng.uniform(15, 500, n)
    sim = rng.uniform(0.5, 0.9, n)
    score = 50.0 / inl * rng.exponential(1.0, n)  # weak evidence (few inliers): large normalised errors
    bins = DifficultyBins.fit(["scene"] * n, {"inliers": inl, "top_sim": sim}, score, np.ones(n))
    assert bins.kinds["scene"]["signal"] == "inliers" and len(bins.kinds["scene"]["edges"]) == 2
    assert abs(bins.measured["scene"]["inliers"]) > 3 * abs(bins.measured["scene"]["top_sim"])
    g = bins.groups(["scene"] * n, {"inliers": inl, "top_sim": sim})
    assert min(g.count(x) for x in set(g)) >= 30 and len(set(g)) == 3
    assert bins.group("fallback", {"inliers": 3.0}) == "fallback"  # a kind without bins keeps its name
    # 70 values with 3 bins: merged to 2 bins of >= 30
    e = merged_edges(np.arange(70.0))
    assert len(e) == 1 and min(np.bincount(np.searchsorted(e, np.arange(70.0), side="right"))) >= 30
    assert merged_edges(np.arange(50.0)) == []
