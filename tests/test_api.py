"""Img2GPS: load a saved model, predict from every accepted input type, EXIF position for display only."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps import Img2GPS, ModelError, PhotoError
from img2gps.geo import haversine_m
from img2gps.predictors.base import Neighbour, Prediction
from synth import assert_same_prediction


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.fixture(scope="module")
def model(model_dir):
    return Img2GPS.load(model_dir)


def test_load_is_fast_and_does_not_re_embed(model_dir, monkeypatch):
    import img2gps.features.cache as cache
    import img2gps.predictors.knn as knn

    def boom(*a, **k):
        raise AssertionError("load must use the saved embeddings")

    monkeypatch.setattr(knn, "embed_dataset", boom)
    monkeypatch.setattr(cache, "embed_dataset", boom)
    t = time.perf_counter()
    m = Img2GPS.load(model_dir)
    assert time.perf_counter() - t < 5.0
    assert m.spec == "knn:k=2" and len(m.gallery) == 12 and m.runtime == "torch"


def test_model_json_is_parsed_once_per_load(model_dir, monkeypatch):
    from pathlib import Path

    from img2gps.predictors import load_model

    reads = []
    real = Path.read_text

    def counting(self, *a, **k):
        if self.name == "model.json":
            reads.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", counting)
    assert Img2GPS.load(model_dir).manifest["spec"] == "knn:k=2"
    assert len(reads) == 1
    load_model(model_dir)
    assert len(reads) == 2


def test_predict_returns_typed_prediction_near_the_right_place(model):
    for place in range(4):
        pred = model.predict(jpeg_bytes(place_image(place, seed=900 + place)), top_k=3)
        assert isinstance(pred, Prediction)
        assert isinstance(pred.latitude, float) and isinstance(pred.longitude, float)
        assert pred.radius_m > 0 and 0.0 <= pred.confidence <= 1.0
        assert pred.recognised is False and pred.method == "knn:k=2"
        assert pred.source == "model" and pred.heading_deg is None  # k-NN estimates no camera pose
        assert len(pred.neighbours) == 3 and all(isinstance(n, Neighbour) for n in pred.neighbours)
        assert all(n.image_id.startswith(f"place{place}_") for n in pred.neighbours)
        assert haversine_m(pred.latitude, pred.longitude, *place_latlon(place)) < 10.0
        assert pred.photo_exif_position is None


def test_every_input_type_gives_the_same_answer(model, tmp_path):
    data = jpeg_bytes(place_image(3, seed=77))
    path = tmp_path / "q.jpg"
    path.write_bytes(data)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    preds = [model.predict(x, top_k=2) for x in (str(path), path, data, bytearray(data),
                                                 Image.open(io.BytesIO(data)), pixels)]
    for p in preds[1:]:
        assert_same_prediction(p, preds[0])  # the whole Prediction (decoded pixels carry no EXIF position)


def test_exif_gps_is_shown_but_never_used(model):
    pixels = place_image(1, seed=5)
    elsewhere = place_latlon(2)  # EXIF claims another place: the prediction must not move
    plain, tagged = jpeg_bytes(pixels), jpeg_bytes(pixels, gps=elsewhere)
    a, b = model.predict(plain), model.predict(tagged)
    assert_same_prediction(a, b, abs_tol=0.0)  # everything but the display-only EXIF position
    assert a.photo_exif_position is None
    assert b.photo_exif_position == pytest.approx(elsewhere, abs=1e-6)
    assert b.to_dict()["photo_exif_position"] == pytest.approx(list(elsewhere), abs=1e-6)
    from img2gps.types import prediction_dict

    assert prediction_dict(b)["exif_distance_m"] == pytest.approx(haversine_m(b.latitude, b.longitude,
                                                                              *b.photo_exif_position))


def test_predict_many_keeps_order_and_names_a_bad_file(model, tmp_path):
    imgs = [jpeg_bytes(place_image(p, seed=40 + p)) for p in (2, 0, 3)]
    preds = model.predict_many(imgs, top_k=1)
    assert [p.neighbours[0].image_id[:6] for p in preds] == ["place2", "place0", "place3"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(PhotoError, match="broken.jpg"):
        model.predict_many([imgs[0], bad])
    with pytest.raises(PhotoError, match="missing.jpg: file not found"):
        model.predict(tmp_path / "missing.jpg")
    with pytest.raises(ModelError, match="list"):
        model.predict_many(imgs[0])


def test_bad_arguments(model, model_dir, tmp_path):
    with pytest.raises(ModelError, match="top_k"):
        model.predict(jpeg_bytes(place_image(0, 1)), top_k=0)
    with pytest.raises(PhotoError, match="unsupported input type"):
        model.predict(12345)
    with pytest.raises(ModelError, match="runtime"):
        Img2GPS.load(model_dir, runtime="tpu")
    with pytest.raises(ModelError, match="not found"):
        Img2GPS.load(tmp_path / "nope")


def test_thumbnail_lookup_only_for_gallery_ids(model):
    gid = model.gallery["image"][0]
    assert model.thumbnail_path(gid).is_file()
    assert model.thumbnail_path("../model.json") is None
    assert model.thumbnail_path("model.json") is None
