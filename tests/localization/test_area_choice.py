"""The area of an answer in a gallery of several far-apart areas (issue 30; localization/area_choice.py): chosen by
the evidence of the whole embedding, not by the single most similar photo, which favours the area with more photos."""
from __future__ import annotations

import numpy as np
import sklearn.linear_model  # noqa: F401  (imported once per session, as by the other tests that fit)
import pandas as pd

from img2gps.localization.area_choice import AreaClassifier
from img2gps.localization.knn import KNNState
from img2gps.retrieval.database import CosineIndex

D = 64


def _photos(rng, area: int, n: int) -> np.ndarray:
    """Unit vectors of n photos of an area: the area's own look (one axis) under much larger noise."""
    c = np.zeros(D)
    c[area] = 1.0
    v = c + 0.25 * rng.normal(size=(n, D))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _gallery(rng, n_dense=200, n_sparse=15) -> KNNState:
    v = np.vstack([_photos(rng, 0, n_dense), _photos(rng, 1, n_sparse)])
    lat = np.r_[40.0 + rng.normal(0, 1e-3, n_dense), 31.26 + rng.normal(0, 1e-3, n_sparse)]
    lon = np.r_[-75.0 + rng.normal(0, 1e-3, n_dense), 34.80 + rng.normal(0, 1e-3, n_sparse)]
    return KNNState.build(CosineIndex(v, "flat"), pd.DataFrame({"Latitude": lat, "Longitude": lon}))


def test_a_photo_of_the_sparse_area_is_answered_there_despite_the_dense_areas_near_misses(tmp_path):
    rng = np.random.default_rng(0)
    st = _gallery(rng)
    assert st.plane.n_areas == 2 and st.plane.areas[1].n_photos == 15 and st.areas is not None
    sparse, dense = _photos(rng, 1, 50), _photos(rng, 0, 50)
    top = np.array([st.plane.label[np.argmax(st.index.similarities(q))] for q in sparse])
    assert (top == 1).mean() < 0.8  # the most similar photo is often one of the 200 dense-area ones
    area_of = [lambda q: int(st.plane.area_at(st.locate(q, 3, "mean", 3)[0]))]
    st.save(tmp_path)
    loaded = KNNState.load(tmp_path, "flat", pd.DataFrame({"Latitude": st.plane.to_latlon(st.en)[0],
                                                           "Longitude": st.plane.to_latlon(st.en)[1]}), {})
    assert np.allclose(loaded.areas.weights, st.areas.weights)  # saved beside the index, not refitted
    area_of.append(lambda q: int(loaded.plane.area_at(loaded.locate(q, 3, "mean", 3)[0])))
    area_of.append(lambda q: int(st.plane.area_at(st.locate(15.0 * q, 3, "mean", 3)[0])))  # an encoder's raw scale
    for f in area_of:
        assert np.mean([f(q) == 1 for q in sparse]) >= 0.85
        assert np.mean([f(q) == 0 for q in dense]) >= 0.95  # and the dense area's photos stay in theirs


def test_an_unsure_classifier_keeps_the_top_photos_area_at_any_vector_scale():
    clf = AreaClassifier(np.array([[0.0, 0.0], [2.0, 0.0]], np.float32), np.array([0.0, -1.0], np.float32))
    unsure, sure = np.array([0.3, 0.95]), np.array([1.0, 0.0])
    assert 0.35 < clf.proba(unsure)[1] < 0.65  # not sure of either area ...
    assert clf.choose(unsure, top_area=0) == 0 and clf.choose(unsure, top_area=1) == 1  # ... the top photo decides
    assert clf.choose(sure, top_area=0) == 1  # sure: the classifier's area
    # an encoder's raw vectors are not unit length (lite0: norms 11-21); the choice must not depend on that
    assert clf.choose(15.0 * unsure, top_area=0) == 0 and clf.choose(15.0 * sure, top_area=0) == 1


def test_a_one_area_gallery_has_no_classifier():
    rng = np.random.default_rng(1)
    v = _photos(rng, 0, 20)
    st = KNNState.build(CosineIndex(v, "flat"),
                        pd.DataFrame({"Latitude": 40 + rng.normal(0, 1e-3, 20), "Longitude": -75 + rng.normal(0, 1e-3, 20)}))
    assert st.areas is None and st.choose_area(v[0], st.index.similarities(v[0])) == 0
