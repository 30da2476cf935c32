"""Mondrian split-conformal radii from near and far hold-outs (localization/conformal.py, answers.py)."""
import numpy as np
import pytest

from img2gps.answer_kinds import radius_words, status_words
from img2gps.localization.answers import at_gallery_spot, candidate, choose
from img2gps.localization.calibration import coverage
from img2gps.localization.conformal import MondrianRadius, bands, mixture_weights, weighted_quantile
from img2gps.localization.holdout import HoldoutPlan


def test_weighted_quantile_equals_plain_conformal_rank_for_equal_weights():
    s = np.arange(1, 101, dtype=float)
    # (n + 1) q = 80.8 -> the 81st smallest
    assert weighted_quantile(s, np.ones(100), 0.8) == 81.0
    assert weighted_quantile(s[:3], np.ones(3), 0.8) == np.inf  # too few points for 80%


def test_mixture_weights_give_each_holdout_its_share():
    h = ["near"] * 30 + ["far"] * 10
    w = mixture_weights(h, {"near": 0.5, "far": 0.5})
    assert w[:30].sum() == pytest.approx(0.5) and w[30:].sum() == pytest.approx(0.5)
    only_near = mixture_weights(["near"] * 4, {"near": 0.5, "far": 0.5})
    assert only_near.sum() == pytest.approx(1.0)
    assert mixture_weights(["self", "near"], {"near": 1.0})[0] == 0.0


def test_mondrian_radius_holds_per_kind_on_a_near_far_mixture():
    """Two kinds with very different errors, each seen near and far: every kind reaches its coverage on fresh
    draws of the same mixture, which one pooled radius does not."""
    rng = np.random.default_rng(0)

    def draw(n):
        kind = rng.choice(["tight", "wide"], n)
        hold = rng.choice(["near", "block"], n)
        scale = np.where(kind == "tight", 5.0, 40.0) * np.where(hold == "block", 1.6, 1.0)
        return kind, hold, np.abs(rng.normal(0, 1, n)) * scale

    k, h, e = draw(4000)
    m = MondrianRadius.fit(k, h, e, coverage=0.8, offset_m=1.0, floor_m=0.1)
    k2, h2, e2 = draw(4000)
    r = np.array([m.radius(x) for x in k2])
    for kind in ("tight", "wide"):
        sel = k2 == kind
        assert 0.76 <= coverage(e2[sel], r[sel]) <= 0.84
    pooled = np.full(len(e2), m.pooled.radius())
    assert coverage(e2[k2 == "wide"], pooled[k2 == "wide"]) < 0.7  # the pooled radius misses the wide kind
    assert m.summary["tight"]["near"] + m.summary["tight"]["block"] == int((k == "tight").sum())
    back = MondrianRadius.from_dict(m.to_dict())
    assert back.radius("wide", 3.0) == pytest.approx(m.radius("wide", 3.0))


def test_a_rare_kind_borrows_the_pooled_scale():
    e = np.r_[np.linspace(1, 50, 200), [3.0, 4.0]]
    k = ["common"] * 200 + ["rare"] * 2
    m = MondrianRadius.fit(k, ["near"] * 202, e, coverage=0.8, offset_m=10.0)
    assert m.model("rare").scale == pytest.approx(m.pooled.scale)
    assert m.radius("never seen") == m.pooled.radius()


def test_old_single_radius_state_loads_as_pooled():
    m = MondrianRadius.from_dict({"scale": 2.0, "offset_m": 10.0, "floor_m": 5.0, "area_m": 100.0,
                                  "coverage": 0.8, "n_calibration": 3})
    assert m.radius("anything", 5.0) == 30.0


def test_bands_and_holdout_radii():
    from img2gps.geo import LocalFrame

    assert list(bands([0.1, 0.5, 0.9], [0.3, 0.7])) == ["b0", "b1", "b2"]
    rng = np.random.default_rng(0)
    en = rng.uniform(0, 200, (60, 2))
    plan = HoldoutPlan(en, LocalFrame(40.0, -75.0))
    rows = np.arange(10)
    assert np.all(plan.radii("near", rows) == plan.spot_m) and np.all(plan.radii("block", rows) == plan.block_m)
    area = plan.radii("area", rows)
    assert np.all(area >= 0) and np.all(area <= plan.area_m.max()) and np.array_equal(area, plan.radii("area", rows))
    # a fifth of a 200 m x 200 m square is a disc of ~50 m radius
    assert 40 < plan.block_m < 55 and plan.fold_radius("area") == pytest.approx(np.median(plan.area_m))
    with pytest.raises(ValueError):
        plan.radii("nowhere", rows)
    # block: the photo's whole k-means block (a fifth of the gallery) and every photo within R of it
    ex = plan.excluded("block", rows)
    assert ex[np.arange(10), rows].all() and np.all(ex.sum(1) >= 60 // 5 - 6) and np.all(ex.sum(1) < 40)
    near = plan.excluded("near", rows)
    assert np.all(ex.sum(1) >= near.sum(1))


def test_answer_kind_and_choice_helpers():
    assert at_gallery_spot([0.8, 9.0], [40, 20]) and not at_gallery_spot([6.0], [40]) and not at_gallery_spot([], [])
    assert not at_gallery_spot([float("inf")], [99]) and not at_gallery_spot([0.5], [20])  # too few inliers
    own, knn = (np.array([0.0, 0.0]), 2.0), (np.array([10.0, 0.0]), 4.0)
    pos, spread = candidate("blend", own, knn)
    assert np.allclose(pos, [5, 0]) and spread == pytest.approx(3.0 + 5.0)
    with pytest.raises(ValueError):
        candidate("median", own, knn)
    assert choose({"own": [10, 10], "knn": [5, 30], "blend": [8, 8]}, [0.5, 0.5]) == "blend"
    assert choose({"own": [1.0], "knn": [1.0]}, [1.0]) == "own"  # a tie keeps the method's own answer
    assert choose({"own": [10.0], "knn": [9.7]}, [1.0]) == "own"  # 3% better: within the margin
    assert status_words(True) == "recognised" and status_words(False) == "not recognised"
    assert "within the gallery's area" in radius_words(False) and "area" not in radius_words(True)
