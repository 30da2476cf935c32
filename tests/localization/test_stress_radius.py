"""knn's radius calibrated with the block hold-out at half the mixture (conformal.STRESS_SHARES), bins on the top
similarity or sim_drop, never the top-10 spread (predictors/knn.calibrate_radius)."""
import numpy as np
import pandas as pd

from img2gps.geo import LocalFrame
from img2gps.localization.conformal import STRESS_SHARES, MondrianRadius, mixture_weights
from img2gps.localization.holdout import SELF, PlaneHoldouts
from img2gps.localization.knn import KNNState
from img2gps.predictors.knn import KNNConfig, calibrate_radius, calibration_records
from img2gps.retrieval.database import CosineIndex


def _gallery(n=160, seed=0):
    """A 200 m x 200 m gallery whose embeddings are a smooth function of position plus noise: near answers are
    metres off, answers with a whole block left out tens of metres."""
    rng = np.random.default_rng(seed)
    en = rng.uniform(0, 200, (n, 2))
    w, b = rng.normal(0, 1 / 40, (64, 2)), rng.uniform(0, 2 * np.pi, 64)
    v = np.cos(en @ w.T + b) + rng.normal(0, 0.3, (n, 64))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    lat, lon = LocalFrame(40.0, -75.0).to_latlon(en)
    return KNNState.build(CosineIndex(v, "flat"), pd.DataFrame({"Latitude": lat, "Longitude": lon}))


def test_stress_shares_lift_the_coverage_of_answers_in_a_gallery_hole():
    """Block answers all worse than the rest: an 80% radius on equal thirds covers 40% of them, on
    STRESS_SHARES (block half) 60%, while near and area answers stay covered."""
    rng = np.random.default_rng(1)
    h = np.array(["near"] * 300 + ["area"] * 300 + ["block"] * 300)
    e = np.concatenate([rng.uniform(0, 20, 600), rng.uniform(30, 300, 300)])
    w = mixture_weights(h, STRESS_SHARES)
    assert np.isclose(w[600:].sum() / w.sum(), 0.5) and np.isclose(w[:300].sum() / w.sum(), 0.25)
    for shares, want in ((None, 0.4), (STRESS_SHARES, 0.6)):
        r = MondrianRadius.fit(["model"] * 900, h, e, coverage=0.8, offset_m=1.0, floor_m=0.1,
                               shares=shares).radius("model")
        assert abs(np.mean(e[600:] <= r) - want) < 0.03 and np.all(e[:600] <= r)


def test_knn_radius_covers_most_block_holdouts_and_bins_on_top_similarity():
    """With the block hold-out at half of an 80% mixture, at least 60% of the block answers lie inside their
    radius (the other half can supply at most 50 of the 80 points); the bins use the top similarity or sim_drop."""
    state, cfg = _gallery(), KNNConfig()
    models, bins = calibrate_radius(state, cfg)
    rec = calibration_records(state, cfg)
    groups = [bins[0].group("model", {"top_sim": t, "spread10": s, "sim_drop": d})
              for t, s, d in zip(rec["top_sim"], rec["spread10"], rec["sim_drop"])]
    r = np.array([models[0].radius(g, s) for g, s in zip(groups, rec["spread"])])
    inside = rec["err"] <= r
    block = rec["holdout"] == "block"
    assert inside[block].mean() >= 0.6
    assert np.median(rec["err"][block]) > 2 * np.median(rec["err"][rec["holdout"] == "near"])  # a real stress case
    assert all(b["signal"] in ("top_sim", "sim_drop") for b in bins[0].kinds.values()) and bins[0].kinds
    assert set(bins[0].measured["model"]) == {"top_sim", "sim_drop"}


def test_sim_drop_is_larger_where_the_gallery_has_a_hole():
    """sim_drop: the top photos' own best similarity to the rest minus the query's. A gallery photo asked again
    sits as close to its neighbours as they sit to theirs; block hold-outs (a hole) sit further than near ones;
    photos left out by a hold-out are not counted as anyone's best neighbour."""
    state, cfg = _gallery(), KNNConfig()
    v = state.vectors
    sims, idx = state.index.search(v[:1], 3)
    assert state.sim_drop(sims[0], idx[0], 3) < 0.05  # itself at 1.0 vs its neighbours' best
    left = np.zeros(len(v), bool)
    left[idx[0][1:]] = True  # its next two neighbours left out: the top photo's best other similarity drops
    s0 = np.atleast_2d(state.index.dot(v[idx[0][:1]]))[0]
    s0[idx[0][0]] = -np.inf
    assert state.sim_drop(sims[0], idx[0], 1, left) == np.max(np.where(left, -np.inf, s0)) - sims[0][0]
    assert np.isnan(state.sim_drop([], [], 3))
    rec = calibration_records(state, cfg)
    d = {h: np.median(rec["sim_drop"][rec["holdout"] == h]) for h in ("block", "near", SELF)}
    assert d["block"] > d["near"] > d[SELF]


def test_chance_mixes_self_and_area_in_equal_shares_whatever_their_counts():
    """Self answers all within 25 m, area answers half, near and block none: the chance is 0.75 (self and area
    in equal shares) with 40 self and 400 area records; without self records it is the area's 0.5."""
    rng = np.random.default_rng(2)
    h = np.array(["self"] * 40 + ["area"] * 400 + ["near"] * 100 + ["block"] * 100)
    e = np.concatenate([np.full(40, 5.0), rng.permutation(np.r_[np.full(200, 5.0), np.full(200, 60.0)]),
                        np.full(200, 80.0)])
    m = MondrianRadius.fit(["model"] * len(h), h, e, offset_m=10.0)
    assert abs(m.chance("model", m.radius("model")) - 0.75) < 0.01
    rest = h != "self"
    m = MondrianRadius.fit(["model"] * int(rest.sum()), h[rest], e[rest], offset_m=10.0)
    assert abs(m.chance("model", m.radius("model")) - 0.5) < 0.01


def test_self_holdout_leaves_out_the_photo_alone():
    state = _gallery(40)
    plan = PlaneHoldouts(state.plane)
    m = plan.excluded(SELF, [3, 7])
    assert m.sum() == 2 and m[0, 3] and m[1, 7]
    assert plan.excluded("near", [3]).sum() >= 1


def test_best_other_is_exact_saved_with_the_index_and_read_by_queries(tmp_path, monkeypatch):
    """Each photo's best similarity to another photo is stored at build, saved and loaded with the index, and a
    query's sim_drop reads it without a second pass over the gallery."""
    state = _gallery()
    s = state.vectors @ state.vectors.T
    np.fill_diagonal(s, -np.inf)
    assert np.allclose(state.best_other, s.max(1), atol=1e-5)
    state.save(tmp_path)
    lat, lon = state.plane.to_latlon(state.en)
    loaded = KNNState.load(tmp_path, "flat", pd.DataFrame({"Latitude": lat, "Longitude": lon}), {})
    assert np.array_equal(loaded.best_other, state.best_other)
    sims, idx = state.index.search(state.vectors[5:6] * 0.9 + state.vectors[6:7] * 0.1, 3)
    monkeypatch.setattr(CosineIndex, "dot", lambda *a, **k: (_ for _ in ()).throw(AssertionError("second pass")))
    want = np.mean(state.best_other[idx[0]] - sims[0])
    assert np.isclose(loaded.sim_drop(sims[0], idx[0], 3), want, atol=1e-6)
