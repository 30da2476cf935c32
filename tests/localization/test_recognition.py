"""Recognition at the spot (localization/recognition.py): copies of gallery photos and the degenerate cases of the
parallax test, rules chosen on calibration records by share and precision."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from img2gps.geo import haversine_m
from img2gps.localization.pose import intrinsics, relative_pose
from img2gps.localization.recognition import (COPY_SIM_MAX, PRECISION, RecognitionRule, choose_copy_sim,
                                              choose_spot_rule, share_precision)


def reencoded(data: bytes, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_share_and_precision_are_weighted():
    share, prec = share_precision([True, True, False, False], [1.0, 100.0, 1.0, 1.0], [3, 1, 0, 0])
    assert share == pytest.approx(1.0) and prec == pytest.approx(0.75)
    assert share_precision([False], [1.0], [1.0]) == (0.0, None)


def test_copy_threshold_goes_as_low_as_the_records_allow_and_never_above_the_ceiling():
    rng = np.random.default_rng(0)
    sims = np.r_[rng.uniform(0.95, 0.99, 40), rng.uniform(0.90, 0.95, 40)]
    top_err = np.r_[np.full(40, 1.0), np.full(40, 60.0)]  # above 0.95 the top photo stands at the spot
    own_err = np.full(80, 10.0)
    t, rep = choose_copy_sim(sims, top_err, own_err)
    assert t <= sims[:40].min() and rep["precision"] >= PRECISION  # every good one in, precision kept
    assert np.mean(top_err[sims >= t] > 25) <= 1 - PRECISION
    # records that never reward answering at the top photo: the ceiling stands, so a copy is still one
    t, _ = choose_copy_sim(sims, np.full(80, 60.0), own_err)
    assert t == COPY_SIM_MAX
    assert RecognitionRule(copy_sim=t).is_copy(1.0) and not RecognitionRule(copy_sim=t).is_copy(float("nan"))


def test_spot_rule_takes_the_largest_share_with_enough_precision():
    rng = np.random.default_rng(1)
    n = 300
    par = rng.uniform(0, 6, n)
    inl = rng.integers(15, 400, n)
    err = np.where(par <= 2.0, 3.0, 80.0)  # answers within 2 deg are at the spot, beyond it they are not
    mp, mi, table = choose_spot_rule(par, inl, err, np.ones(n))
    assert mp == 2.0 and mi == 15
    assert all(r["precision"] is None or r["precision"] < PRECISION or r["share"] <= np.mean(par <= 2.0) + 1e-9
               for r in table)
    # nothing precise: the default rule stands
    assert choose_spot_rule(par, inl, np.full(n, 80.0), np.ones(n), (1.0, 30))[:2] == (1.0, 30)


def _rays(seed=0, n=300):
    rng = np.random.default_rng(seed)
    K = intrinsics(1024, 768, 26.0)
    X = np.c_[rng.uniform(-20, 20, n), rng.uniform(-10, 10, n), rng.uniform(20, 60, n)]
    uv = X @ K.T
    return uv[:, :2] / uv[:, 2:3], K


def test_the_same_photo_is_a_pure_rotation_not_a_failed_pose():
    pts, K = _rays()
    rel = relative_pose(pts, pts.copy(), K, K)  # the essential matrix is degenerate for identical points
    assert rel is not None and rel.parallax_deg < 0.05 and rel.inliers >= 250
    # a camera turned at one spot: every match explained by a rotation
    a = np.radians(4.0)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rays = np.c_[np.linalg.solve(K, np.c_[pts, np.ones(len(pts))].T).T]
    uv = (rays @ R.T) @ K.T
    rel = relative_pose(pts, uv[:, :2] / uv[:, 2:3], K, K)
    assert rel is not None and rel.parallax_deg < 0.2


def test_knn_answers_a_copy_of_a_gallery_photo_at_that_photo(gallery_dir):
    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor

    ds = load_dataset(gallery_dir)
    p = make_predictor("knn")  # k=3: without the copy rule the answer is the mean of three photos
    p.fit(ds)
    assert p.state.copy_sim <= COPY_SIM_MAX
    for i in range(0, len(ds), 4):
        q = p.predict([ds.read(i)])[0]
        assert q.neighbours[0].image_id == ds.ids[i] and q.neighbours[0].score > 0.9999
        assert q.difficulty.startswith("model")  # its difficulty bin (or the kind, with too few records)
        assert haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) <= 1.0
        q = p.predict([reencoded(ds.read(i))])[0]  # the synthetic views are near copies of each other too
        assert haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) <= 1.0 or q.neighbours[0].score < 0.99


@pytest.mark.slow
def test_rerank_recognises_a_copy_at_that_photo(tmp_path):
    import pandas as pd

    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor
    from rerank_synth import pil, textured, turned
    from synth import offset

    (tmp_path / "images").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for s in range(6):
        base = textured(200 + s)
        for v in range(2):
            name = f"s{s}_v{v}.jpg"
            pil(base if v == 0 else turned(base, 10 * s + v)).save(tmp_path / "images" / name, quality=92)
            rows.append((name, *offset(40.0 * s + rng.normal(0, 3), rng.normal(0, 3))))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"]).to_csv(tmp_path / "labels.csv", index=False)
    ds = load_dataset(tmp_path)
    p = make_predictor("rerank:max_side=400:features=600:vlad=8:topn=4:max_verify=6")
    p.fit(ds)
    for i in range(len(ds)):
        for data in (ds.read(i), reencoded(ds.read(i))):
            q = p.predict([data])[0]
            assert q.recognised, (ds.ids[i], q.source)
            assert haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) <= 1.0


@pytest.mark.slow
def test_penn91_gallery_photos_and_their_reencodes_are_recognised_at_their_spot(penn91):
    """30 penn91 gallery photos, as stored and re-encoded at JPEG q85, through the default model and knn: every
    one answered within 1 m of its own position (the default model: recognised)."""
    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor
    from img2gps.predictors.registry import DEFAULT_METHOD

    ds = load_dataset(penn91)
    rows = np.linspace(0, len(ds) - 1, 30).astype(int)
    for spec in (DEFAULT_METHOD, "knn"):
        p = make_predictor(spec)
        p.fit(ds)
        bad = []
        for i in rows:
            for how, data in (("identical", ds.read(i)), ("q85", reencoded(ds.read(i)))):
                q = p.predict([data])[0]
                err = haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude)
                if err > 1.0 or (spec == DEFAULT_METHOD and not q.recognised):
                    bad.append((ds.ids[i], how, round(err, 1), q.source))
        assert not bad, (spec, bad)


def test_spot_rule_admits_more_parallax_where_the_records_stay_precise():
    """Verified pairs at 6-9 deg parallax that lie within 25 m widen the rule past 5 deg; the same pairs lying 60 m
    off keep it at or below 5 deg."""
    rng = np.random.default_rng(3)
    par = np.r_[rng.uniform(0, 5, 100), rng.uniform(6, 9, 100), np.full(100, np.inf)]
    inl = np.full(300, 80)
    err = np.r_[np.full(100, 3.0), np.full(100, 8.0), np.full(100, 70.0)]
    w = np.ones(300)
    assert choose_spot_rule(par, inl, err, w)[0] >= 7.0
    err[100:200] = 60.0
    assert choose_spot_rule(par, inl, err, w)[0] <= 5.0
