"""Pose-based localization on synthetic scenes of exact geometry: a 3D point cloud seen by known cameras."""
from __future__ import annotations

import numpy as np
import pytest

from img2gps.localization.pose import (PoseConfig, angle_diff_deg, bearing_deg, combine_headings, focal_px,
                                       intrinsics, level_rotation, place_camera, relative_pose, view_constraint)

W, H = 1024, 768


def project(X, C, R, K):
    """World points (N, 3) -> pixels (N, 2) and a mask of those in front and inside the image."""
    Xc = (X - C) @ R.T
    uv = Xc @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    ok = (Xc[:, 2] > 1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    return uv, ok


def scene(seed=0, n=600):
    """A building-like cloud: points on a facade block 25-45 m north of the origin, 0-15 m high."""
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-25, 25, n), rng.uniform(25, 45, n), rng.uniform(-1, 15, n)]


def matches(X, cam_a, cam_b, K, noise_px, seed):
    rng = np.random.default_rng(seed)
    ua, oka = project(X, *cam_a, K)
    ub, okb = project(X, *cam_b, K)
    ok = oka & okb
    return (ua[ok] + rng.normal(0, noise_px, (ok.sum(), 2)), ub[ok] + rng.normal(0, noise_px, (ok.sum(), 2)))


def test_focal_px_from_35mm_equivalent():
    # 26 mm equivalent on a 4:3 photo: ~67 deg across the long side
    f = focal_px(4032, 3024, 26.0)
    assert 66 < np.degrees(2 * np.arctan(2016 / f)) < 69
    assert focal_px(4032, 3024, None) == pytest.approx(f)  # the documented default is 26 mm
    K = intrinsics(W, H, 28.0)
    assert K[0, 2] == W / 2 and K[1, 2] == H / 2 and K[0, 0] == K[1, 1]
    with pytest.raises(ValueError):
        focal_px(0, 10)


def test_bearing_and_rotation_conventions():
    assert bearing_deg([0, 1]) == pytest.approx(0) and bearing_deg([1, 0]) == pytest.approx(90)
    assert bearing_deg([-1, 0]) == pytest.approx(270)
    R = level_rotation(90.0)  # facing east: the optical axis (third row) points east
    np.testing.assert_allclose(R[2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(R[1], [0, 0, -1], atol=1e-12)  # image y points down
    assert angle_diff_deg(350, 10) == pytest.approx(20)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relative_pose_recovers_heading_and_places_camera(seed):
    rng = np.random.default_rng(seed)
    X = scene(seed)
    K = intrinsics(W, H, 26.0)
    # Two gallery cameras with GPS-like known positions and compass headings, looking at the facade.
    gal = [(np.array([-12.0, 0.0, 1.5]), 15.0), (np.array([10.0, 2.0, 1.5]), -20.0 % 360)]
    q_pos = np.array([rng.uniform(-4, 4), rng.uniform(-8, -3), 1.5])
    q_head = float(rng.uniform(-15, 15)) % 360
    Rq = level_rotation(q_head, pitch_deg=4.0, roll_deg=-2.0)  # the query need not be level
    views = []
    for gi, (C, h) in enumerate(gal):
        Rg = level_rotation(h)
        pg, pq = matches(X, (C, Rg), (q_pos, Rq), K, 0.5, seed * 10 + gi)
        rel = relative_pose(pg, pq, K, K, seed=0)
        assert rel is not None and rel.inliers > 100
        v = view_constraint(rel, C[:2], h)
        assert angle_diff_deg(v.heading_deg, q_head) < 2.0
        assert v.ray_en is not None
        views.append(v)
    fix = place_camera(views)
    assert fix is not None and fix.n_views == 2
    baseline = np.linalg.norm(gal[0][0][:2] - gal[1][0][:2])
    assert np.linalg.norm(fix.en - q_pos[:2]) < 0.05 * baseline
    assert angle_diff_deg(fix.heading_deg, q_head) < 2.0


def test_same_spot_pair_gives_a_point_not_a_ray():
    X = scene(3)
    K = intrinsics(W, H)
    C = np.array([0.0, 0.0, 1.5])
    pg, pq = matches(X, (C, level_rotation(0.0)), (C + [0.05, 0, 0], level_rotation(12.0)), K, 0.5, 3)
    rel = relative_pose(pg, pq, K, K)
    assert rel is not None and rel.parallax_deg < PoseConfig().min_parallax_deg
    v = view_constraint(rel, C[:2], 0.0)
    assert v.ray_en is None and angle_diff_deg(v.heading_deg, 12.0) < 1.0


def test_place_camera_needs_two_distinct_places_and_rejects_outliers():
    from img2gps.localization.pose import ViewConstraint

    truth = np.array([5.0, -10.0])

    def ray_from(p, w=100.0, off_deg=0.0):
        d = truth - p
        a = np.arctan2(d[1], d[0]) + np.radians(off_deg)
        return ViewConstraint(np.asarray(p, float), 0.0, np.array([np.cos(a), np.sin(a)]), w)

    assert place_camera([ray_from([0.0, 0.0])]) is None
    assert place_camera([ray_from([0.0, 0.0]), ray_from([0.5, 0.5])]) is None  # one place
    views = [ray_from([-20.0, 0.0]), ray_from([20.0, 5.0]), ray_from([0.0, 10.0]), ray_from([30.0, 30.0], 150, 60)]
    fix = place_camera(views)
    assert fix is not None and np.linalg.norm(fix.en - truth) < 0.5 and 3 not in fix.support


def test_combine_headings_is_circular_and_robust():
    h, members = combine_headings([355.0, 5.0, 1.0, 180.0], [1, 1, 1, 2.5])
    assert angle_diff_deg(h, 0.33) < 1.0 and members == [0, 1, 2]


def test_bench_heading_metrics_wrap_around_north():
    from img2gps.evaluate import heading_metrics

    m = heading_metrics([359.0, 10.0, 90.0, np.nan, 200.0], [2.0, 40.0, np.nan, 5.0, 170.0], [5.0, 20.0, 9, 9, 31])
    assert m["heading_truth_n"] == 4 and m["heading_n"] == 3  # truth and an estimate: photos 0, 1 and 4
    assert m["heading_median_deg"] == pytest.approx(30.0)  # errors 3, 30, 30
    assert m["heading_acc_15deg"] == pytest.approx(1 / 3) and m["heading_acc_30deg"] == pytest.approx(1.0)
    assert m["heading_radius_coverage"] == pytest.approx(2 / 3)
    assert heading_metrics([np.nan], [1.0])["heading_median_deg"] is None


def test_copy_focal35_reads_the_field_of_view_of_a_crop_of_a_gallery_photo():
    from img2gps.localization.pose import copy_focal35

    rng = np.random.default_rng(3)
    pj = rng.uniform([0, 0], [768, 1024], (300, 2))  # a 3:4 portrait gallery photo, 26 mm
    # its square tile in a screenshot: the middle 768 px of its height, shown 900 px wide
    s, y0 = 900 / 768, 128
    keep = (pj[:, 1] >= y0) & (pj[:, 1] < y0 + 768)
    pq = (pj[keep] - [0, y0]) * s + rng.normal(0, 0.5, (keep.sum(), 2))
    f = copy_focal35(pq, pj[keep], (900, 900), (768, 1024), 26.0)
    # the same focal length in pixels, read by the square's shorter diagonal: 26 * hypot(768, 1024) / hypot(768, 768)
    assert f == pytest.approx(26.0 * 1280 / (768 * 2 ** 0.5), rel=0.01)
    # another view (a projective warp, not a scaled copy) gives None: its field of view is not read from the pair
    H = np.array([[1.0, 0.08, 5], [0.02, 1.1, -7], [2e-4, 1e-4, 1]])
    ph = np.c_[pj, np.ones(len(pj))] @ H.T
    assert copy_focal35(ph[:, :2] / ph[:, 2:], pj, (768, 1024), (768, 1024), 26.0) is None
