"""rerank end to end on a tiny synthetic gallery with known positions, plus radius calibration on synthetic errors."""
import json

import numpy as np
import pandas as pd
import pytest

from img2gps.data import load_dataset
from img2gps.errors import ModelError
from img2gps.geo import haversine_m
from img2gps.predictors import load_model, make_predictor
from img2gps.predictors.rerank import RerankConfig, resolve, shortlist_median, verify_candidates
from rerank_synth import perspective, pil, textured, turned
from synth import offset
from synth import assert_same_prediction

SPEC = "rerank:max_side=400:features=600:vlad=8:topn=4:max_verify=6"
N_SCENES = 8


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """8 scenes 40 m apart, 3 views of each within ~1 m of the scene's position: the original and two with the
    camera turned at the original's spot (view 2 is held out as the query)."""
    root = tmp_path_factory.mktemp("rerank-gallery")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for s in range(N_SCENES):
        base = textured(100 + s)
        for v in range(3):
            img = base if v == 0 else turned(base, 1000 * s + v)
            name = f"scene{s}_view{v}.jpg"
            pil(img).save(root / "images" / name, quality=92)
            lat, lon = offset(40.0 * s + rng.normal(0, 0.7), rng.normal(0, 0.7))
            rows.append((name, lat, lon))
    pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"]).to_csv(root / "labels.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fitted(gallery):
    ds = load_dataset(gallery)
    held = [i for i, n in enumerate(ds.ids) if n.endswith("view2.jpg")]
    p = make_predictor(SPEC)
    p.fit(ds.exclude_ids([ds.ids[i] for i in held]))
    return ds, held, p


@pytest.mark.slow
def test_rerank_recognises_other_views_to_metres(fitted):
    ds, held, p = fitted
    preds = p.predict([ds.read(i) for i in held], top_k=3)
    errs = np.array([haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude) for i, q in zip(held, preds)])
    # the query turned at the original's spot: a pure rotation of a verified view, hence recognised
    assert all(q.recognised and q.source == "consensus" for q in preds)
    assert errs.max() < 5  # the verified views stand within ~2 m; scenes are 40 m apart
    for i, q in zip(held, preds):
        assert q.method == SPEC and 0 <= q.confidence <= 1 and q.radius_m > 0
        scene = ds.ids[i].split("_")[0]
        assert q.neighbours and all(n.image_id.startswith(scene) for n in q.neighbours)
        assert q.neighbours[0].score >= p.config.min_inliers  # neighbours carry inlier counts
    # Calibration holds out each photo alone, with its same-spot siblings (all within 10 m), as far as a point of
    # the area and with a block: only alone can it be recognised (its siblings are turned views from its spot);
    # with them left out nothing of its scene remains, as for a user at a new spot.
    summary = p.state.calibrations[0].summary
    assert summary["n"] == 64 and summary["same_spot_m"] == 10.0  # 16 photos, 4 hold-outs
    kinds = summary["kinds"]
    assert kinds["consensus"]["self"] >= 14 and kinds["consensus"]["near"] == kinds["consensus"]["block"] == 0


def test_a_scene_seen_from_elsewhere_is_verified_but_not_recognised(fitted):
    """A perspective view of a gallery scene is no pure rotation of any gallery photo: it verifies, but the
    geometry says the camera stood elsewhere, so the answer is `scene`, not recognised, with its own radius."""
    ds, held, p = fitted
    preds = p.predict([pil(perspective(textured(100 + s), 500 + s, strength=0.15)) for s in (2, 5)], top_k=3)
    for s, q in zip((2, 5), preds):
        assert q.source == "scene" and not q.recognised
        assert q.neighbours and q.neighbours[0].image_id.startswith(f"scene{s}_")  # the verified photos
        assert q.to_dict()["answer"] == "not recognised"


def test_rerank_exposes_its_query_encoder_and_retrieval_order(fitted):
    ds, held, p = fitted
    enc = p.query_encoder
    assert enc is not None and enc is p.state.encoder and enc.name == p.config.embed  # what ONNX export reads
    (pred, ranked), = p.predict_ranked([ds.read(held[0])], top_k=3, n=5)
    assert len(ranked) == 5 and len(set(ranked.tolist())) == 5
    scene = ds.ids[held[0]].split("_")[0]
    assert p.gallery.at[int(ranked[0]), "image"].startswith(scene)  # the other view is retrieved first
    assert_same_prediction(pred, p.predict([ds.read(held[0])], top_k=3)[0], abs_tol=0.0)  # same answer either way


def test_fallback_supporting_photos_are_ordered_by_the_score_they_show(fitted):
    """An unverified answer shortlists by global + VLAD similarity but shows the cosine similarity: on these
    unknown scenes the shown scores read e.g. 0.874, 0.904, 0.892 under #1, #2, #3 before the fix."""
    ds, held, p = fitted
    preds = p.predict([pil(textured(seed)) for seed in (995, 996, 997)], top_k=5)
    for q in preds:
        assert q.source == "fallback" and len(q.neighbours) == 5
        shown = [round(n.score, 3) for n in q.neighbours]
        assert shown == sorted(shown, reverse=True), shown


def test_each_query_is_compared_with_the_gallery_once(fitted, monkeypatch):
    """One pass over the gallery per query: its global similarities rank the shortlist and give the k-NN
    alternative (no second index search), its VLAD vector is encoded once; verified, scene and fallback answers."""
    from collections import Counter

    from img2gps.retrieval.database import CosineIndex
    from img2gps.retrieval.vlad import VladCodebook

    ds, held, p = fitted
    calls = Counter()
    for cls, names in ((CosineIndex, ("similarities", "search", "dot")), (VladCodebook, ("encode",))):
        for name in names:
            def counting(*a, _real=getattr(cls, name), _name=name, **k):
                calls[_name] += 1
                return _real(*a, **k)
            monkeypatch.setattr(cls, name, counting)
    queries = [ds.read(held[0]), pil(perspective(textured(102), 502, strength=0.15)), pil(textured(995))]
    for q, source in zip(queries, ("consensus", "scene", "fallback")):
        calls.clear()
        assert p.predict([q], top_k=3)[0].source == source
        # similarities calls dot once: one row of N similarities
        assert calls == Counter({"similarities": 1, "dot": 1, "encode": 1}), (source, calls)


def test_queries_are_decoded_at_full_size(fitted):
    """SIFT must see the query at the gallery's resolution: a 640 px default decode lost most verifications."""
    assert fitted[2].query_max_side is None


def test_an_unknown_scene_is_not_recognised_and_gets_a_wider_radius(fitted):
    ds, held, p = fitted
    known = p.predict([ds.read(held[0])])[0]
    unknown = p.predict([pil(textured(999))])[0]
    assert not unknown.recognised
    assert unknown.radius_m > known.radius_m and unknown.confidence < known.confidence
    blank = p.predict([np.full((300, 400, 3), 128, np.uint8)])[0]  # no keypoints at all: a fallback, no crash
    assert not blank.recognised and np.isfinite([blank.latitude, blank.longitude, blank.radius_m]).all()


def test_save_load_round_trip_without_the_photo_folder(fitted, tmp_path):
    ds, held, p = fitted
    p.save(tmp_path / "m")
    man = json.loads((tmp_path / "m" / "model.json").read_text())
    assert man["method"] == "rerank" and "keypoints.h5" in man["checksums"]
    assert man["state"]["areas"][0]["calibration"]["n"] == 64  # 16 held-out photos: alone, near, area and block
    q = load_model(tmp_path / "m")
    queries = [ds.read(i) for i in held[:3]]
    a, b = p.predict(queries), q.predict(queries)
    for x, y in zip(a, b):  # gallery.csv keeps 9 decimals: positions agree to well under a centimetre
        assert haversine_m(x.latitude, x.longitude, y.latitude, y.longitude) < 0.01
        assert x.radius_m == pytest.approx(y.radius_m, rel=1e-9)  # its spread is computed from those positions
        assert (x.recognised, x.source, x.heading_deg, [n.image_id for n in x.neighbours]) == \
               (y.recognised, y.source, y.heading_deg, [n.image_id for n in y.neighbours])


def test_load_reads_what_fit_computed_instead_of_recomputing_it(fitted, tmp_path, monkeypatch):
    import img2gps.predictors.rerank.state as state

    ds, held, p = fitted
    p.save(tmp_path / "m")

    def boom(*a, **k):
        raise AssertionError("load recomputed what fit saved")

    monkeypatch.setattr(state, "pair_stats", boom)
    monkeypatch.setattr(state, "neighbours_within", boom)
    q = load_model(tmp_path / "m")
    assert q.state.zstats == [tuple(z) for z in p.state.zstats] and q.state.near == p.state.near


@pytest.mark.slow
def test_refit_on_a_subset_reuses_cached_features(gallery, monkeypatch, tmp_path):
    """A second fit (a bench fold) must not run SIFT again and must reuse the pair counts of the first fit:
    only the few pairs its slightly different shortlists reach are matched anew."""
    import img2gps.features.rootsift as local
    import img2gps.verification.local as matching

    monkeypatch.setenv("IMG2GPS_CACHE", str(tmp_path))  # a cold cache: the first fit matches everything
    ds = load_dataset(gallery)
    calls = {"n": 0}
    real = matching.mutual_matches

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(matching, "mutual_matches", counting)
    make_predictor(SPEC).fit(ds)
    first = calls["n"]
    assert first > 0

    def boom(*a, **k):
        raise AssertionError("SIFT ran again")

    monkeypatch.setattr(local, "extract", boom)
    calls["n"] = 0
    p = make_predictor(SPEC)
    p.fit(ds.subset(range(1, len(ds))))
    assert p.state.calibrations[0].summary["n"] == 4 * (len(ds) - 1)  # each held out alone, near, area, block
    assert calls["n"] <= first // 2  # only pairs that the smaller gallery's shortlists newly reach


def test_a_fit_hashes_each_photo_once(gallery, monkeypatch):
    from collections import Counter

    import img2gps.data.sources as sources

    ds = load_dataset(gallery).subset(range(9))
    photos = {ds.read(i): ds.ids[i] for i in range(len(ds))}
    counts, real = Counter(), sources.hashlib.sha1

    class Hashlib:  # hashlib as the dataset sees it, counting the hashes of each photo's bytes
        def sha1(self, data=b"", *a, **k):
            if data in photos:
                counts[photos[data]] += 1
            return real(data, *a, **k)

    monkeypatch.setattr(sources, "hashlib", Hashlib())
    make_predictor(SPEC).fit(ds)
    assert counts == Counter({n: 1 for n in ds.ids})


def test_spec_validation():
    with pytest.raises(ModelError, match="embed must be one of lite0.*not .nope."):
        make_predictor("rerank:embed=nope")
    with pytest.raises(ModelError, match="topn"):
        make_predictor("rerank:topn=0")
    with pytest.raises(ModelError, match="fallback"):
        make_predictor("rerank:fallback=mean")


# -- the query procedure on hand-made verification results ------------------------------------------------
def test_verification_order_neighbours_and_early_stop():
    en = np.array([[0, 0], [100, 0], [3, 0], [200, 0], [300, 0]], float)
    near = [[2], [], [0], [], []]
    inliers = {0: 10, 1: 80, 2: 25, 3: 5, 4: 5}
    cfg = RerankConfig(topn=5, max_verify=10, stop_inliers=60)
    seen = []

    def verify(j):
        seen.append(j)
        return inliers[j]

    checked = verify_candidates([1, 0, 3, 4, 2], verify, near, cfg)
    assert seen == [1]  # 1 verified strongly and has no neighbours: the shortlist stops there
    seen.clear()
    checked = verify_candidates([0, 2, 3, 1, 4], verify, near, cfg, skip=4)
    assert 4 not in seen and seen[:2] == [0, 2]
    pos, spread, support = resolve(checked, en, cfg)
    assert support[0] == 1  # 80 inliers at (100, 0) outweigh 25 at (3, 0)
    assert np.allclose(pos, [100, 0])
    assert resolve({3: 5}, en, cfg) is None


def test_shortlist_median_resists_one_far_candidate():
    en = np.array([[0, 0], [2, 1], [1, -2], [150, 0]], float)
    score = np.array([1.0, 0.9, 0.8, 1.1])  # the far one ranks first, but alone
    pos, spread, idx = shortlist_median(score, en, k=4, temperature=1.0)
    assert np.linalg.norm(pos) < 5 and spread > 0 and idx[0] == 3


