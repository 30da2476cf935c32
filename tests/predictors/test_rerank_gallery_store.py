"""rerank's stored gallery (issue 31): each photo keeps at most `gallery_keypoints` keypoints, the store and the
VLAD vectors are written compactly, a reloaded model answers exactly as the fitted one, the option is checked."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from img2gps.data import load_dataset
from img2gps.errors import ModelError
from img2gps.modeldir import FORMAT_VERSION
from img2gps.predictors import load_model, make_predictor
from img2gps.predictors.rerank.config import RerankConfig
from img2gps.predictors.spec import config_from_saved
from img2gps.verification.local import GALLERY_FEATURES
from img2gps.verification.store import KeypointStore
from rerank_synth import pil, textured, turned
from synth import assert_same_prediction, offset

CAP = 150
SPEC = f"rerank:max_side=400:features=600:vlad=8:topn=3:max_verify=4:calib=4:gallery_keypoints={CAP}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """4 scenes 40 m apart, two views each fitted (the original and one turned), a third view of each the query;
    the fitted predictor, its saved copy reloaded, the queries and the model folder."""
    root = tmp_path_factory.mktemp("gallery-store")
    (root / "images").mkdir()
    rows = []
    for s in range(4):
        base = textured(300 + s)
        for v in range(3):
            name = f"s{s}_v{v}.jpg"
            pil(base if v == 0 else turned(base, 50 * s + v)).save(root / "images" / name, quality=92)
            rows.append((name, *offset(40.0 * s + 0.3 * v, 0.0)))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"]).to_csv(root / "labels.csv", index=False)
    ds = load_dataset(root)
    queries = [i for i, n in enumerate(ds.ids) if n.endswith("_v2.jpg")]
    p = make_predictor(SPEC)
    p.fit(ds.exclude_ids([ds.ids[i] for i in queries]))
    p.save(root / "model")
    return p, load_model(root / "model"), [ds.read(i) for i in queries], root / "model"


def test_the_stored_gallery_is_capped_and_compact(saved):
    p, _, _, md = saved
    man = json.loads((md / "model.json").read_text())
    assert man["format_version"] == FORMAT_VERSION == 3
    n = len(p.gallery)
    store = KeypointStore.open(md / "keypoints.h5", n, p.config.gallery_key)
    assert list(store.counts) == [CAP] * n  # every textured photo had more (features=600): each keeps CAP
    vlad = np.load(md / "vlad_gallery.npy")
    assert vlad.dtype == np.float16 and vlad.shape == (n, 8 * 128)
    # what the store costs per photo: CAP keypoints at under 120 B each, plus the file's fixed part (a few KB)
    assert (md / "keypoints.h5").stat().st_size / n < CAP * 120 + 8000 / n


def test_a_reloaded_model_answers_exactly_as_the_fitted_one(saved):
    p, q, queries, _ = saved
    a, b = p.predict(queries), q.predict(queries)
    assert sum(x.recognised for x in a) >= 2  # the capped gallery still recognises turned views
    for x, y in zip(a, b):  # gallery.csv keeps 9 decimals: positions to well under a centimetre
        assert_same_prediction(x, y, abs_tol=1e-6)
    assert np.array_equal(p.state.vlad, q.state.vlad)  # fit holds the float16-rounded vectors the file keeps
    for j in range(len(p.gallery)):
        assert np.array_equal(p.state.store.get(j).xy, q.state.store.get(j).xy)


def test_gallery_keypoints_is_validated():
    assert make_predictor("rerank:gallery_keypoints=0").config.gallery_keypoints == 0  # 0 = keep all
    with pytest.raises(ModelError, match="gallery_keypoints must be >= 0, not -5"):
        make_predictor("rerank:gallery_keypoints=-5")
    with pytest.raises(ModelError, match="gallery_keypoints='many' is not a valid int"):
        make_predictor("rerank:gallery_keypoints=many")


def test_a_saved_model_keeps_its_detection_size_whatever_the_default():
    """The detection size is the lever on fit time (docs/scale.md, issue 31): a saved model's config carries the
    value it was fitted with, so when the default moves its stored keypoints still match what it expects and its
    queries are detected at the same size."""
    assert RerankConfig().feature_config == GALLERY_FEATURES  # one owner of the default
    other = 896 if GALLERY_FEATURES.max_side != 896 else 1024
    saved = dataclasses.asdict(RerankConfig()) | {"max_side": other}
    cfg = config_from_saved(RerankConfig, saved, "model.json config")
    assert cfg.feature_config.max_side == other
    assert cfg.gallery_key.startswith(f"siftroot-{other}-")  # what its keypoints.h5 was written with
