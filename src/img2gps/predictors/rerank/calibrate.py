"""rerank's calibration: held-out gallery photos (a seeded subset), each with its same-spot siblings left out
(localization/holdout.py), go through the exact query procedure (query.locate); their errors calibrate the radii
(recognised / pose / not recognised), the heading radius and the pose choice. Pair inlier counts and relative
poses go to on-disk caches, so re-fitting on a subset of a gallery (bench folds) matches only new pairs."""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...localization.aggregate import aggregate
from ...localization.calibration import RadiusModel
from ...localization.camera import PoseCache
from ...localization.holdout import excluded_rows, same_spot_radius_m
from ...localization.pose import angle_diff_deg
from ...verification.local import PairCache
from .config import RerankConfig
from .query import camera, locate, scores, verify_pair
from .state import Calibration, RerankState

MIN_CALIBRATION = 5  # fewer held-out answers of a kind than this: that kind borrows a wider radius


def calibrate(state: RerankState, cfg: RerankConfig) -> Calibration:
    """The Calibration of a built state (state.keys: the gallery's content hashes, which order the subset)."""
    en, keys, c = state.en, state.keys, cfg
    n = len(state.store)
    area = float(np.quantile(np.linalg.norm(en - en.mean(0), axis=1), c.coverage)) if n > 1 else 100.0
    if n < 3:
        rm = RadiusModel(scale=1.0, floor_m=25.0, area_m=max(area, 25.0))
        return Calibration(rm, rm, None, c.pose == "on", True, None, {"n": 0, "recognised": 0})
    # Deterministic subset by content hash: bench folds of one dataset then share (and cache) the same pairs.
    order = sorted(range(n), key=lambda i: hashlib.sha1(keys[i].encode()).hexdigest())[: c.calib]
    spot_m = same_spot_radius_m(en)
    excluded = excluded_rows(en, order, spot_m)
    pairs = PairCache(c.feature_config, c.verify_config)
    poses = PoseCache(state.locator.setting_key(c.feature_config.key))
    vectors = state.knn.index.vectors

    def held_out(r: int, siblings_out: bool = True) -> dict:
        # The held-out photo queries with its stored embedding and VLAD vector: one row of similarities
        # each, never a gallery x gallery matrix.
        q = order[r]
        skip = set(np.flatnonzero(excluded[r]).tolist()) if siblings_out else {q}
        matched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        kq, dq = state.store.get(q), state.store.unit_desc(q)

        def verify(j: int) -> int:
            got = pairs.get(keys[q], keys[j])
            if got is None:
                got = verify_pair(state, c, kq, dq, j, matched)
                pairs.put(keys[q], keys[j], got)
            return got

        def knn_fallback():
            idx = np.array([j for j in np.argsort(-g) if j not in skip][: c.k], int)
            pos, spread = aggregate(en[idx], g[idx], "mean")
            return pos, spread, idx, g[idx]

        def camera_of(checked: dict[int, int]):
            return camera(state, c, kq, dq, state.cameras.focal35[q], checked, matched, poses, keys[q])

        g = vectors @ vectors[q]
        v = state.vlad @ state.vlad[q] if state.vlad is not None else None
        score = scores(state, g, v)
        score[list(skip)] = -np.inf
        loc = locate(state, c, score, g, verify, knn_fallback, skip=skip, camera_of=camera_of)
        out = {"rec": loc.recognised, "err": float(np.linalg.norm(loc.pos - en[q])), "spread": loc.spread}
        est = loc.camera
        if est is not None and est.heading_deg is not None and np.isfinite(state.cameras.heading[q]):
            out["heading_err"] = float(angle_diff_deg(est.heading_deg, state.cameras.heading[q]))
        if est is not None and est.fix is not None:
            out["pose_err"] = float(np.linalg.norm(est.fix.en - en[q]))
            out["pose_spread"] = est.fix.spread_m
        return out

    # Held-out photos are independent: two threads use both cores (numpy and OpenCV release the GIL while
    # each keeps one BLAS thread); map keeps the order, so the result does not depend on timing.
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(held_out, range(len(order))))
        # The heading error depends on the pair's geometry, not on how far the query stood from the gallery
        # photo: it is calibrated with only the held-out photo itself left out (many more samples).
        with_siblings = (list(ex.map(lambda r: held_out(r, False), range(len(order))))
                         if state.cameras.n_with_heading else [])
    pairs.save()
    poses.save()
    return _decide(got, with_siblings, area, spot_m, len(order), c)


def _decide(got: list[dict], with_siblings: list[dict], area: float, spot_m: float, n: int,
            c: RerankConfig) -> Calibration:
    """Held-out answers -> radius models, heading radius and the pose choice."""
    rec = [g for g in got if g["rec"]]
    unrec = [g for g in got if not g["rec"]]
    unrec_radius = RadiusModel.fit([g["err"] for g in unrec] or [area], [g["spread"] for g in unrec] or None,
                                   coverage=c.coverage, area_m=area)
    # Verified answers are metre-level: a small offset keeps their radius from being inflated by the model.
    rec_radius = (RadiusModel.fit([g["err"] for g in rec], [g["spread"] for g in rec], coverage=c.coverage,
                                  offset_m=5.0, floor_m=3.0, area_m=area)
                  if len(rec) >= MIN_CALIBRATION else unrec_radius)
    cal = Calibration(rec_radius, unrec_radius, None, c.pose == "on", True, None)
    hd = [g["heading_err"] for g in with_siblings if "heading_err" in g]
    if len(hd) >= MIN_CALIBRATION:
        cal.heading_radius = float(np.sort(hd)[min(len(hd), math.ceil((len(hd) + 1) * c.coverage)) - 1])
    fixed = [g for g in rec if "pose_err" in g]
    pose_med = float(np.median([g["pose_err"] for g in fixed])) if fixed else None
    cons_med = float(np.median([g["err"] for g in fixed])) if fixed else None
    if len(fixed) >= MIN_CALIBRATION:
        cal.pose_radius = RadiusModel.fit([g["pose_err"] for g in fixed], [g["pose_spread"] for g in fixed],
                                          coverage=c.coverage, offset_m=5.0, floor_m=3.0, area_m=area)
        cal.pose_recognised = pose_med <= c.coarse_m
        if c.pose == "auto":
            cal.use_pose = pose_med < cons_med
    cal.summary = {
        "n": n, "recognised": len(rec), "same_spot_m": spot_m,
        "recognised_median_m": float(np.median([g["err"] for g in rec])) if rec else None,
        "unrecognised_median_m": float(np.median([g["err"] for g in unrec])) if unrec else None,
        "heading_n": len(hd), "heading_median_deg": float(np.median(hd)) if hd else None,
        "pose_n": len(fixed), "pose_median_m": pose_med, "consensus_median_m_same_photos": cons_med,
        "use_pose": bool(cal.use_pose),
    }
    return cal
