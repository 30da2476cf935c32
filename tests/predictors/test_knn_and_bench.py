import json

import numpy as np
import pytest

from img2gps.data import load_dataset
from img2gps.evaluate import run_bench
from img2gps.geo import haversine_m
from img2gps.predictors import load_model, make_predictor
from img2gps.predictors.base import parse_spec
from img2gps.errors import ModelError
from synth import scene, view, write_jpeg
from synth import assert_same_prediction


def test_spec_parsing_and_validation():
    assert parse_spec("knn:embed=lite0:k=3") == ("knn", {"embed": "lite0", "k": "3"})
    assert make_predictor("knn:k=5").config.k == 5
    with pytest.raises(ModelError, match="unknown option"):
        make_predictor("knn:kk=5")
    with pytest.raises(ModelError, match="not a valid int"):
        make_predictor("knn:k=three")
    with pytest.raises(ModelError, match="unknown method"):
        make_predictor("nope")


def test_knn_finds_the_matching_scene_and_round_trips(gallery_dir, tmp_path):
    ds = load_dataset(gallery_dir)
    held = [i for i, n in enumerate(ds.ids) if n.endswith("view2.jpg")]
    gallery = ds.exclude_ids([ds.ids[i] for i in held])
    p = make_predictor("knn:k=1")
    p.fit(gallery)
    preds = p.predict([ds.read(i) for i in held])
    errs = [haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) for i, q in zip(held, preds)]
    assert np.median(errs) < 10  # same scene, ~1 m GPS jitter; places are 40 m apart
    assert all(q.radius_m > 0 and 0 <= q.confidence <= 1 and not q.recognised for q in preds)
    p.save(tmp_path / "m")
    q = load_model(tmp_path / "m")
    again = q.predict([ds.read(i) for i in held])
    assert [(a.latitude, a.longitude, a.radius_m) for a in preds] == [(b.latitude, b.longitude, b.radius_m) for b in again]
    man = json.loads((tmp_path / "m" / "model.json").read_text())
    assert man["spec"] == "knn:k=1" and man["data_fingerprint"] == gallery.fingerprint()
    thumbs = sorted((tmp_path / "m" / "thumbs").glob("*.jpg"))
    assert len(thumbs) == len(gallery) and not (tmp_path / "m" / "index.faiss").exists()  # exact index: vectors once


def test_thumbnails_are_as_large_as_the_page_needs(tmp_path):
    from PIL import Image

    from img2gps.modeldir import THUMB_SIDE, thumb_name, write_thumbnails
    from img2gps.photos import open_image

    class Two:  # a 1200 x 900 photo and an unreadable one (skipped)
        ids = ["big.jpg", "bad.jpg"]

        def open(self, i, max_side=None):
            return open_image(Image.new("RGB", (1200, 900), (90, 120, 150)) if i == 0 else b"not a photo",
                              max_side=max_side)

    write_thumbnails(Two(), tmp_path / "thumbs")
    with Image.open(tmp_path / "thumbs" / thumb_name("big.jpg")) as im:
        assert im.size == (THUMB_SIDE, THUMB_SIDE * 3 // 4) and THUMB_SIDE <= 200  # the page's card is ~160 px wide
    assert [p.name for p in (tmp_path / "thumbs").iterdir()] == [thumb_name("big.jpg")]


def test_query_exif_gps_never_changes_the_prediction(gallery_dir, tmp_path):
    ds = load_dataset(gallery_dir)
    p = make_predictor("knn:k=3")
    p.fit(ds.subset(range(1, len(ds))))
    im = view(scene(1000), 99)
    plain = write_jpeg(tmp_path / "plain.jpg", im)
    true_gps = write_jpeg(tmp_path / "true.jpg", im, ds.lat[0], ds.lon[0])
    fake_gps = write_jpeg(tmp_path / "fake.jpg", im, -10.0, 100.0)
    a, b, c = p.predict([plain, true_gps, fake_gps])
    assert_same_prediction(a, b, abs_tol=0.0)
    assert_same_prediction(a, c, abs_tol=0.0)


@pytest.mark.slow
def test_bench_json_fields_and_baseline(gallery_dir):
    ds = load_dataset(gallery_dir)
    res, preds = run_bench(ds, "kfold:3", ["knn:k=1"], progress=False)
    assert list(res["results"]) == ["mean-coordinate", "knn:k=1"]
    m = res["results"]["knn:k=1"]
    for k in ("mean_m", "median_m", "p90_m", "acc_10m", "acc_25m", "acc_50m", "mse_norm", "fit_s",
              "predict_ms_p50", "predict_ms_p95", "radius_coverage", "recognised_frac", "recognised_median_m"):
        assert k in m
    assert res["n"] == len(ds) == len(preds) / 2
    # k-NN over the same scenes must beat predicting the centre on this toy set
    assert m["mean_m"] < res["results"]["mean-coordinate"]["mean_m"]
    errs = preds[preds.spec == "knn:k=1"].error_m
    assert abs(errs.mean() - m["mean_m"]) < 1e-9 and 0 <= m["acc_10m"] <= 1
    # k=1 predicts the top-1 retrieved photo's position, so recall@1 is the fraction within 25 m
    assert m["recall_at_1"] == pytest.approx(float(np.mean(errs <= 25)))
    assert 0 < m["recall_at_1"] <= m["recall_at_5"] <= m["recall_at_10"] <= 1
    assert res["results"]["mean-coordinate"]["recall_at_1"] is None  # no retrieval stage


def test_recall_at_n_on_a_hand_built_ranking():
    import pandas as pd
    from img2gps.evaluate import metrics, retrieval_hits

    # gallery: photo 0 at the truth's spot + 10 m north, the rest ~111 m+ away (0.001 deg latitude steps)
    glat = np.array([0.0, 0.00009, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010])
    glon = np.zeros(12)
    far_first = [2, 3, 4, 5, 6, 7, 1, 8, 9, 10]  # the 10 m photo is 7th
    assert retrieval_hits(far_first, 0.0, 0.0, glat, glon) == {"hit_1": 0.0, "hit_5": 0.0, "hit_10": 1.0}
    assert retrieval_hits([1, 2], 0.0, 0.0, glat, glon) == {"hit_1": 1.0, "hit_5": 1.0, "hit_10": 1.0}
    assert retrieval_hits([3, 4, 5, 6, 7], 0.0, 0.0, glat, glon)["hit_10"] == 0.0  # 222 m+: never a positive
    # 26 m away is not a positive (25 m convention), 24 m is
    assert retrieval_hits([0], 0.000234, 0.0, glat, glon)["hit_1"] == 0.0
    assert retrieval_hits([0], 0.000216, 0.0, glat, glon)["hit_1"] == 1.0
    nan = retrieval_hits(None, 0.0, 0.0, glat, glon)
    assert all(np.isnan(v) for v in nan.values())
    rows = pd.DataFrame([{"error_m": 1.0, "radius_m": 5.0, "recognised": False, "z2": 0.0, "predict_ms": 1.0,
                          **retrieval_hits(r, 0.0, 0.0, glat, glon)} for r in ([1], far_first, [3, 4], [0, 2])])
    m = metrics(rows)
    assert (m["recall_at_1"], m["recall_at_5"], m["recall_at_10"]) == (0.5, 0.5, 0.75)


def test_learning_curve_fractions(gallery_dir):
    ds = load_dataset(gallery_dir)
    res, preds = run_bench(ds, "kfold:3", [], fractions=[0.5, 1.0], progress=False)
    assert set(res["by_fraction"]) == {"0.5", "1"}
    assert set(preds.fraction) == {0.5, 1.0}


def test_bench_json_records_its_code_revision_and_fraction(gallery_dir, tmp_path):
    import json
    import re

    from img2gps.bench_outputs import write_outputs

    ds = load_dataset(gallery_dir)
    res, preds = run_bench(ds, "kfold:2", ["mean-coordinate"], fractions=[0.5], progress=False)
    assert res["results_fraction"] == 0.5  # no silent fallback: the JSON says which fraction the headline is
    write_outputs(tmp_path / "r.json", res, preds, plots=False)
    code = json.loads((tmp_path / "r.json").read_text())["code"]
    assert set(code) == {"version", "git_revision", "git_dirty"}
    if code["git_revision"] is not None:  # a git checkout (as in CI): 40 hex digits and a boolean dirty flag
        assert re.fullmatch(r"[0-9a-f]{40}", code["git_revision"]) and isinstance(code["git_dirty"], bool)
    full, _ = run_bench(ds, "kfold:2", ["mean-coordinate"], progress=False)
    assert full["results_fraction"] == 1.0
