"""rerank's calibration: held-out gallery photos (a seeded subset) go through the exact query procedure
(query.locate), each held out four ways: alone ("self": a user at a gallery spot), with its same-spot siblings
("near"), as far from the rest as a point spread over the area ("area") and with a block ("block";
localization/holdout.py). Their errors calibrate the recognition rules (localization/recognition.py), one radius
per answer kind (Mondrian split-conformal over the hold-outs in equal shares, localization/conformal.py), the answer given
for scenes seen from elsewhere and for unverified photos (localization/answers.py), the heading radius and the
pose choice. Pair inlier counts and relative poses go to on-disk caches, so re-fitting on a subset of a gallery
(bench folds) matches only new pairs."""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from ...localization.aggregate import aggregate
from ...answer_kinds import CHOICES, CONSENSUS, FALLBACK, POSE, RECOGNISED, RECOGNISED_SOURCES, SCENE
from ...localization.answers import at_gallery_spot, candidate, choose
from ...localization.calibration import RadiusModel
from ...localization.camera import PoseCache
from ...localization.conformal import MondrianRadius, mixture_weights
from ...localization.difficulty import SIGNALS, DifficultyBins
from ...localization.holdout import PlaneHoldouts, same_spot_radius_m
from ...localization.pose import angle_diff_deg
from ...localization.recognition import COPY_FLOOR, RecognitionRule, choose_copy_sim, choose_spot_rule
from ...verification.local import PairCache
from .config import RerankConfig
from .query import camera, locate, parallax, scores, verify_pair
from .state import Calibration, RerankState

MIN_CALIBRATION = 5  # fewer held-out answers than this: no heading radius, no pose choice
# Hold-outs the radii are calibrated on, in equal shares. rerank needs "self" because its recognised kind exists
# only there: with siblings left out, 1 of 300 bgu-west photos passed the pure-rotation test.
CALIB_SHARES = {"self": 0.25, "near": 0.25, "area": 0.25, "block": 0.25}
# The radii's mixture: the block hold-out at half, as for knn (localization/conformal.STRESS_SHARES); the
# recognition rules and the answer choices stay on the equal shares.
RADIUS_SHARES = {"self": 1 / 6, "near": 1 / 6, "area": 1 / 6, "block": 0.5}


def calibrate(state: RerankState, cfg: RerankConfig) -> list[Calibration]:
    """One Calibration per area of the gallery (state.knn.plane), from the held-out answers that fell in that
    area (state.keys: the gallery's content hashes, which order the subset)."""
    en, c, plane = state.en, cfg, state.knn.plane
    n = len(state.store)
    out = []
    records = calibration_records(state, c, tuple(CALIB_SHARES)) if n >= 3 else []
    for a in range(plane.n_areas):
        own = en[plane.rows(a)]
        area = float(np.quantile(np.linalg.norm(own - own.mean(0), axis=1), c.coverage)) if len(own) > 1 else 100.0
        if n < 3:
            rm = RadiusModel(scale=1.0, floor_m=25.0, area_m=max(area, 25.0))
            out.append(Calibration(MondrianRadius(pooled=rm), use_pose=c.pose == "on",
                                   summary={"n": 0, "recognised": 0}))
        else:
            out.append(_decide([g for g in records if g["area"] == a], area, same_spot_radius_m(own), c))
    return out


def calibration_records(state: RerankState, cfg: RerankConfig, holdouts: Sequence[str]) -> list[dict]:
    """One record per (held-out photo, hold-out): its answer kind and area, the strongest verified pair's
    parallax and inliers, the error (m) and spread of each answer choice (own / knn / blend; pose where a camera
    fix exists) and the heading error where known. Hold-outs: "self", "near", "area", "block". Up to cfg.calib
    photos of each area are held out, each with its own area's hold-out radii (PlaneHoldouts). Public so analyses
    can study the
    evidence behind the answer kinds."""
    en, keys, c, plane = state.en, state.keys, cfg, state.knn.plane
    # Deterministic subset by content hash: bench folds of one dataset then share (and cache) the same pairs.
    order = [int(i) for a in range(plane.n_areas)
             for i in sorted(plane.rows(a), key=lambda i: hashlib.sha1(keys[i].encode()).hexdigest())[: c.calib]]
    plan = PlaneHoldouts(plane)
    pairs = PairCache(c.feature_config, c.verify_config, feature_key=c.gallery_key)  # both photos from the store
    poses = PoseCache(state.locator.setting_key(c.gallery_key))
    vectors = state.knn.index.vectors

    def held_out(task: tuple[int, str]) -> dict:
        # The held-out photo queries with its stored embedding and VLAD vector: one row of similarities
        # each, never a gallery x gallery matrix.
        r, h = task
        q = order[r]
        skip = ({q} if h == "self" else
                set(np.flatnonzero(plan.excluded(h, [q])[0]).tolist()))
        matched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        kq, dq = state.store.get(q), state.store.unit_desc(q)
        f = state.cameras.focal35[q]

        def verify(j: int) -> int:
            got = pairs.get(keys[q], keys[j])
            if got is None:
                got = verify_pair(state, c, kq, dq, j, matched)
                pairs.put(keys[q], keys[j], got)
            return got

        def knn_answer(area: int):
            idx = np.array([j for j in np.argsort(-g) if j not in skip and plane.label[j] == area][: c.k], int)
            pos, spread = aggregate(en[idx], g[idx], "mean")
            return pos, spread, idx, g[idx]

        g = state.knn.index.dot(vectors[q])
        v = state.vlad @ state.vlad[q] if state.vlad is not None else None
        score = scores(state, g, v)
        score[list(skip)] = -np.inf
        loc = locate(state, c, score, g, vectors[q], verify, knn_answer, skip=skip,
                     camera_of=lambda ch: camera(state, c, kq, dq, f, ch, matched, poses, keys[q]),
                     parallax_of=lambda ver: parallax(state, c, kq, dq, f, ver, matched, poses, keys[q]))
        ver = sorted((k for k in loc.checked.values() if k >= c.min_inliers), reverse=True)
        out = {**{"sig_" + k: v for k, v in loc.signals.items()},
               "holdout": h, "kind": loc.kind, "area": loc.area, "parallax": (loc.parallax or [np.inf])[0],
               "inliers": ver[0] if ver else 0, "n_verified": len(ver), "top_sim": -np.inf, "top_err": np.inf}
        if loc.top is not None and loc.top[1] >= COPY_FLOOR:  # a copy candidate: does the top photo verify?
            t = loc.top[0]
            if (loc.checked[t] if t in loc.checked else verify(t)) >= c.min_inliers:
                out["top_sim"], out["top_err"] = loc.top[1], plane.distance_m(en[t], en[q])
        for ch in CHOICES:
            p, sp = candidate(ch, (loc.pos, loc.spread), loc.knn[:2])
            out[ch + "_err"], out[ch + "_spread"] = plane.distance_m(p, en[q]), float(sp)
        est = loc.camera
        if est is not None and est.heading_deg is not None and np.isfinite(state.cameras.heading[q]):
            out["heading_err"] = float(angle_diff_deg(est.heading_deg, state.cameras.heading[q]))
        if est is not None and est.fix is not None:
            out["pose_err"] = plane.distance_m(est.fix.en, en[q])
            out["pose_spread"] = est.fix.spread_m
        return out

    # Held-out photos are independent: two threads use both cores (numpy and OpenCV release the GIL while
    # each keeps one BLAS thread); map keeps the order, so the result does not depend on timing.
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(held_out, [(r, h) for h in holdouts for r in range(len(order))]))
    pairs.save()
    poses.save()
    return got


def _decide(records: list[dict], area: float, spot_m: float, c: RerankConfig) -> Calibration:
    """Held-out answers -> radius models per answer kind, answer choices, heading radius and the pose choice."""
    cal = Calibration(MondrianRadius(), use_pose=c.pose == "on")
    # The heading error depends on the pair's geometry, not on how far the query stood from the gallery
    # photo: it is calibrated with only the held-out photo itself left out (many more samples).
    hd = [g["heading_err"] for g in records if g["holdout"] == "self" and "heading_err" in g]
    if len(hd) >= MIN_CALIBRATION:
        cal.heading_radius = float(np.sort(hd)[min(len(hd), math.ceil((len(hd) + 1) * c.coverage)) - 1])
    got = [g for g in records if g["holdout"] in CALIB_SHARES]
    w = mixture_weights([g["holdout"] for g in got], CALIB_SHARES)
    cal.rule, rec_summary = recognition_rule(got, w, c)
    got = [reclassify(g, cal.rule) for g in got]
    fixed = [g for g in got if g["kind"] == RECOGNISED and "pose_err" in g]
    pose_med = float(np.median([g["pose_err"] for g in fixed])) if fixed else None
    cons_med = float(np.median([g["own_err"] for g in fixed])) if fixed else None
    if len(fixed) >= MIN_CALIBRATION:
        cal.pose_recognised = pose_med <= c.coarse_m
        if c.pose == "auto":
            cal.use_pose = pose_med < cons_med
    for kind in (SCENE, FALLBACK):
        m = np.array([g["kind"] == kind for g in got], bool)
        errs = {ch: [g[ch + "_err"] for g, k in zip(got, m) if k] for ch in CHOICES}
        cal.answer_choice[kind] = c.answer if c.answer != "auto" else choose(errs, w[m])
    groups, errs, spreads = [], [], []
    for g in got:
        if g["kind"] == RECOGNISED:
            pose = cal.use_pose and "pose_err" in g
            groups.append(POSE if pose else CONSENSUS)
            errs.append(g["pose_err"] if pose else g["own_err"])
            spreads.append(g["pose_spread"] if pose else g["own_spread"])
        else:
            ch = cal.answer_choice[g["kind"]]
            groups.append(g["kind"])
            errs.append(g[ch + "_err"])
            spreads.append(g[ch + "_spread"])
    # Verified answers at a gallery spot are metre-level: a small offset keeps their radius from being inflated.
    offsets = {CONSENSUS: 5.0, POSE: 5.0}
    off = np.array([offsets.get(k, 10.0) for k in groups])
    sig = {s: np.array([g.get("sig_" + s, np.nan) for g in got], float) for s in SIGNALS}
    wr = mixture_weights([g["holdout"] for g in got], RADIUS_SHARES)
    cal.bins = DifficultyBins.fit(groups, sig, np.asarray(errs) / (np.asarray(spreads) + off), wr)
    kinds = list(groups)
    groups = cal.bins.groups(kinds, sig)
    cal.radii = MondrianRadius.fit(groups, [g["holdout"] for g in got], errs, spreads, coverage=c.coverage,
                                   offset_m=10.0, floor_m=3.0, area_m=area, shares=RADIUS_SHARES, offsets=offsets)
    e = np.asarray(errs)
    rm = np.array([k in RECOGNISED_SOURCES for k in kinds], bool)
    cal.summary = {
        "n": len(got), "recognised": int(rm.sum()), "same_spot_m": spot_m,
        "holdouts": {h: int(sum(g["holdout"] == h for g in got)) for h in CALIB_SHARES},
        "recognised_median_m": float(np.median(e[rm])) if rm.any() else None,
        "unrecognised_median_m": float(np.median(e[~rm])) if (~rm).any() else None,
        "kinds": cal.radii.summary, "answer_choice": dict(cal.answer_choice),
        "heading_n": len(hd), "heading_median_deg": float(np.median(hd)) if hd else None,
        "pose_n": len(fixed), "pose_median_m": pose_med, "consensus_median_m_same_photos": cons_med,
        "use_pose": bool(cal.use_pose), "recognition": rec_summary, "difficulty": cal.bins.to_dict(),
    }
    return cal


def recognition_rule(got: list[dict], w: np.ndarray, c: RerankConfig) -> tuple[RecognitionRule, dict]:
    """The recognition rules chosen on the records (localization/recognition.py): the copy threshold on the
    photos held out alone, the spot rule (parallax, inliers) on the other verified records, mixture-weighted."""
    own = [g for g in got if g["holdout"] == "self"]
    copy_sim, copy_report = choose_copy_sim([g["top_sim"] for g in own], [g["top_err"] for g in own],
                                            [g["own_err"] for g in own])
    rest = np.array([not (g.get("top_sim", -np.inf) >= copy_sim) for g in got], bool)
    par = np.array([g["parallax"] if g["n_verified"] else np.inf for g in got], float)
    mp, mi, table = choose_spot_rule(par[rest], np.array([g["inliers"] for g in got])[rest],
                                     np.array([g["own_err"] for g in got])[rest], w[rest],
                                     (c.rec_parallax, c.rec_inliers))
    return RecognitionRule(mp, mi, copy_sim), {"copy": copy_report, "max_parallax_deg": mp, "min_inliers": mi,
                                               "table": table}


def reclassify(g: dict, rule: RecognitionRule) -> dict:
    """A calibration record's answer kind under `rule`: a verified copy is recognised at the top photo (error
    top_err, no spread, no pose), a verified answer at a gallery spot is recognised, other verified ones scenes."""
    if g.get("top_sim", -np.inf) >= rule.copy_sim:
        g = {k: v for k, v in g.items() if not k.startswith("pose_")}
        return g | {"kind": RECOGNISED, "own_err": g["top_err"], "own_spread": 0.0}
    if not g["n_verified"]:
        return g
    spot = at_gallery_spot([g["parallax"]], [g["inliers"]], rule.max_parallax_deg, rule.min_inliers)
    return g | {"kind": RECOGNISED if spot else SCENE}
