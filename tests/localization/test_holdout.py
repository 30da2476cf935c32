"""Same-spot-aware held-out calibration: the held-out photo's siblings are left out too."""
from __future__ import annotations

import numpy as np

from img2gps.localization.holdout import excluded_mask, excluded_rows, same_spot_radius_m


def spots(n_spots=8, per=3, spacing=40.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.c_[np.arange(n_spots) * spacing, np.zeros(n_spots)]
    return np.repeat(centres, per, axis=0) + rng.normal(0, 0.7, (n_spots * per, 2))


def test_radius_from_spacing_is_clipped_to_gps_noise_and_a_cap():
    assert same_spot_radius_m(spots()) == 10.0  # siblings ~1 m apart: the GPS-noise floor
    sparse = np.c_[np.arange(10) * 18.0, np.zeros(10)]
    assert same_spot_radius_m(sparse) == 18.0  # the gallery's own spacing
    assert same_spot_radius_m(np.c_[np.arange(5) * 100.0, np.zeros(5)]) == 25.0
    assert same_spot_radius_m(np.zeros((1, 2))) == 10.0


def test_excluded_rows_mark_self_and_siblings_only():
    en = spots()
    m = excluded_mask(en, 10.0)
    assert m.shape == (24, 24) and m.diagonal().all()
    assert (m.sum(1) == 3).all()  # each photo and its two siblings, nobody from the next spot 40 m away
    np.testing.assert_array_equal(excluded_rows(en, [4, 5], 10.0), m[[4, 5]])


def test_mean_coordinate_radius_is_calibrated_without_siblings(tmp_path):
    from img2gps.data.sources import from_folder
    from img2gps.predictors.registry import make_predictor
    from synth import make_gallery

    ds = from_folder(make_gallery(tmp_path / "g", n_places=6, views=3))
    p = make_predictor("mean-coordinate")
    p.fit(ds)
    # held-out truth: the error of the centre of the photos that are NOT at the held-out photo's spot
    from img2gps.geo import LocalFrame

    frame = LocalFrame(*p.centre)
    xy = frame.to_en(ds.lat, ds.lon)
    keep = ~excluded_mask(xy, same_spot_radius_m(xy))
    errs = [np.linalg.norm(xy[i] - xy[keep[i]].mean(0)) for i in range(len(xy))]
    r = p.predict([ds.read(0)])[0].radius_m
    assert np.mean(np.array(errs) <= r) >= 0.8


def test_buffered_inner_fold_drops_the_validation_photos_siblings():
    from img2gps.localization.holdout import buffered_train

    en = spots()  # 8 spots x 3 photos, 40 m apart
    val = np.array([0, 3])  # one photo of spot 0 and one of spot 1
    train = np.setdiff1d(np.arange(len(en)), val)
    kept = buffered_train(train, val, en, 10.0)
    assert set(kept) == set(range(6, 24))  # spots 0 and 1 are gone entirely, the rest stays
    assert len(buffered_train(np.array([1, 2]), np.array([0]), en, 10.0)) == 2  # never emptied


def test_block_inner_fold_holds_out_one_whole_block():
    """A trained method's block fold validates on one whole spatial block and trains on the photos outside it and
    its same-spot buffer (a block-radius buffer around a random third would leave nothing to train on)."""
    from img2gps.geo import LocalFrame
    from img2gps.localization.holdout import HoldoutPlan, buffered_train

    rng = np.random.default_rng(1)
    en = rng.uniform(0, 200, (150, 2))
    plan = HoldoutPlan(en, LocalFrame(40.0, -75.0))
    val = rng.choice(150, 50, replace=False)
    train = np.setdiff1d(np.arange(150), val)
    assert len(buffered_train(train, val, en, plan.fold_radius("block"))) == len(train)  # the old fold: no buffer
    tr, va = plan.inner_fold("block", train, val)
    assert 15 <= len(va) <= 50 and len(tr) >= 80 and not set(tr) & set(va)
    gap = np.linalg.norm(en[tr][:, None] - en[va][None], axis=2).min()
    assert gap > plan.spot_m  # nothing within a same-spot radius of the block stays in training
    # the block is compact: its photos lie closer to their own centre than the gallery's do to its centre
    assert np.linalg.norm(en[va] - en[va].mean(0), axis=1).mean() < 0.6 * np.linalg.norm(en - en.mean(0), axis=1).mean()
    tr_n, va_n = plan.inner_fold("near", train, val)
    assert np.array_equal(va_n, val) and np.array_equal(tr_n, buffered_train(train, val, en, plan.spot_m))
