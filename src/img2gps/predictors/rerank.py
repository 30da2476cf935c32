"""rerank: global retrieval, then geometric verification of the shortlist, then spatial consensus.

Query path: global embedding (lite0 by default) + VLAD over the query's RootSIFT -> gallery photos ranked by the
sum of both z-scored similarities -> verify the top candidates in order (mutual ratio-test matches, MAGSAC
fundamental matrix), stopping early after a very strong match; with near_m > 0 the gallery photos standing near a
verified one are verified next (on penn91 this changed no answer, so it is off by default) -> the densest cluster
of verified photos, weighted by inliers, is the answer (recognised=True). When nothing verifies, the answer is
the weighted geometric median of the shortlist, with its own, much wider, calibrated radius (recognised=False).

Camera pose (pose=auto|on|off): for the strongest verified gallery photos whose own heading is known (EXIF
GPSImgDirection), the pair's essential matrix gives the query's heading and the direction towards it
(localization/pose.py); two or more such photos at distinct places fix the query camera's own position
(source "pose") instead of the verified cameras' consensus (source "consensus"). `auto` uses the pose position
only when the held-out calibration shows it closer to the truth than the consensus; `on` always when it
exists; `off` never (the heading is still reported). The query's focal length is its only metadata read.

Fit path: gallery keypoints are extracted once (cached on disk by content hash) and the same query procedure is
run over held-out gallery photos, each with its same-spot siblings left out (localization/holdout.py), to
calibrate the radius models (recognised / pose / not recognised) and the heading radius. Gallery pair
inlier counts go to a pair cache, so re-fitting on a subset of a gallery (leave-one-out bench folds) runs no
SIFT and matches only the few pairs its slightly different shortlists newly reach.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Sequence

import numpy as np

from ..localization.answers import (CHOICES, FALLBACK, MAX_PARALLAX_DEG, MIN_INLIERS, SCENE, at_gallery_spot,
                                    candidate, choose)
from ..localization.calibration import RadiusModel
from ..localization.conformal import MondrianRadius, mixture_weights
from ..localization.consensus import consensus
from ..errors import ModelError
from ..retrieval.encoders import ENCODERS
from ..verification.local import (FeatureConfig, KeypointCache, Keypoints, PairCache, VerifyConfig, extract,
                                  fundamental_inliers, mutual_matches)
from ..indexing import ExtractSpec, ensure_features
from ..verification.store import FILE as STORE_FILE, KeypointStore, write_store
from ..retrieval.vlad import VladCodebook
from ..geo import weighted_median_en
from ..localization.camera import CameraEstimate, CameraLocator, GalleryCameras, LocatorConfig, PoseCache
from ..localization.holdout import excluded_rows, holdout_radius_m, same_spot_radius_m
from ..localization.pose import angle_diff_deg
from ..retrieval.database import aggregate, neighbours_within, pair_stats
from .base import BasePredictor, Neighbour, Prediction
from .knn import KNNConfig, KNNPredictor


MIN_CALIBRATION = 5  # fewer held-out answers than this: no heading radius, no pose choice
# Hold-outs rerank's radii are calibrated on, in equal shares: the photo alone ("self": a user at a gallery spot),
# with its same-spot siblings ("near") and with a 2R block ("far"). rerank needs "self" because its recognised
# kind exists only there: with siblings left out, 1 of 300 bgu-west photos passed the pure-rotation test.
CALIB_SHARES = {"self": 1 / 3, "near": 1 / 3, "far": 1 / 3}
PARALLAX_VIEWS = 1  # verified photos whose parallax is measured (the strongest decides the answer kind)
KEYS_FILE = "content_keys.txt"


@dataclass
class RerankConfig:
    embed: str = "lite0"  # global encoder for the shortlist (features/backbones.py)
    vlad: int = 64  # VLAD codebook size for the local-feature half of the shortlist score (0 = embedding only)
    topn: int = 10  # shortlist length: candidates verified in retrieval order
    near_m: float = 0.0  # > 0: after a photo verifies, also verify gallery photos within this distance of it
    near_max: int = 4  # ... at most this many per verified photo, nearest first
    max_verify: int = 16  # hard cap on verifications per query (bounds latency)
    stop_inliers: int = 60  # a photo verified this strongly ends the shortlist (its neighbours are still checked)
    max_side: int = 1024  # photos are resized to this long side before SIFT
    features: int = 2000  # strongest keypoints per photo
    ratio: float = 0.8  # Lowe's ratio test
    ransac_px: float = 1.0  # MAGSAC fundamental-matrix threshold (pixels at max_side)
    min_inliers: int = 15  # verified when a pair has at least this many inliers
    cluster_m: float = 15.0  # verified photos this close vote together in the consensus
    fallback: str = "median"  # not recognised: "median" of the shortlist (below) or plain "knn" on the embedding
    fallback_k: int = 10  # shortlist photos in the fallback's weighted geometric median
    fallback_t: float = 0.5  # softmax temperature on the shortlist score (z units) for those weights
    k: int = 3  # neighbours of the plain k-NN fallback
    coverage: float = 0.8  # target fraction of true positions inside the radius
    calib: int = 300  # at most this many gallery photos are held out in turn for calibration
    index: str = "auto"  # faiss index of the global embeddings (see knn): auto | flat | hnsw | ivfpq
    cache_mb: int = 256  # bound on gallery keypoints (with their RootSIFT form) kept in memory
    pose: str = "auto"  # camera position from relative pose: auto (where calibration shows it better) | on | off
    pose_views: int = 4  # relative poses per query (strongest verified photos with a known heading)
    coarse_m: float = 15.0  # pose answers whose calibrated median error exceeds this are not `recognised`
    rec_parallax: float = MAX_PARALLAX_DEG  # recognised only when the strongest verified pair's parallax (deg)
    rec_inliers: int = MIN_INLIERS  # is at most rec_parallax and it has at least rec_inliers inliers
    answer: str = "auto"  # scene / fallback answers: auto (per gallery, from calibration) | own | knn | blend


@contextlib.contextmanager
def single_threaded():
    """One BLAS and one torch thread for the small matrix products of a query.

    Measured on the shared 2-core machine under load: a 2000x2000 descriptor product and a Lite0 forward pass
    ran 15-50x slower with two threads than with one (threads spin while the other core is busy), and on an
    idle machine these products are too small to gain much from a second thread.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):  # BLAS and OpenMP (faiss k-means)
            yield
    finally:
        torch.set_num_threads(n)


def verify_candidates(order: Sequence[int], verify: Callable[[int], int], near: Sequence[Sequence[int]],
                      cfg: RerankConfig, skip: int | Container[int] | None = None) -> dict[int, int]:
    """Verify shortlist candidates in order; each verified photo queues its untested spatial neighbours first.

    `skip`: gallery indices that must never be tested (during calibration: the held-out photo and its
    same-spot siblings); a single int is one index.
    """
    checked: dict[int, int] = {}
    if skip is None:
        skip = ()
    elif isinstance(skip, (int, np.integer)):
        skip = (int(skip),)
    shortlist = [int(j) for j in order if j not in skip][: cfg.topn]
    priority: list[int] = []
    stop = False
    while len(checked) < cfg.max_verify:
        if priority:
            j = priority.pop(0)
        elif shortlist and not stop:
            j = shortlist.pop(0)
        else:
            break
        if j in checked or j in skip:
            continue
        n = verify(j)
        checked[j] = n
        if n >= cfg.min_inliers:
            priority += [int(g) for g in near[j] if g not in checked and g not in skip and g not in priority]
            stop |= n >= cfg.stop_inliers
    return checked


def shortlist_median(score: np.ndarray, gallery_en: np.ndarray, k: int, temperature: float):
    """Fallback when nothing verifies: weighted geometric median of the top-k shortlist (softmax weights).

    A median lands where several look-alike candidates agree instead of between two far places, and the
    softmax keeps the best-ranked ones in charge; on penn91 leave-one-out this cut the error of unrecognised
    photos from ~70 m (3-NN mean) to ~59 m.
    """
    idx = np.argsort(-score)[:k]
    idx = idx[np.isfinite(score[idx])]
    w = np.exp((score[idx] - score[idx].max()) / temperature)
    pos = weighted_median_en(gallery_en[idx], w)
    spread = float(np.sqrt((w * ((gallery_en[idx] - pos) ** 2).sum(1)).sum() / w.sum()))
    return pos, spread, idx


def resolve(checked: dict[int, int], gallery_en: np.ndarray,
            cfg: RerankConfig) -> tuple[np.ndarray, float, list[int]] | None:
    """Verified candidates -> (position, spread, supporting gallery indices), or None when none verified."""
    ver = [(j, n) for j, n in checked.items() if n >= cfg.min_inliers]
    if not ver:
        return None
    idx = np.array([j for j, _ in ver])
    w = np.array([n for _, n in ver], float)
    c = consensus(gallery_en[idx], w, cfg.cluster_m)
    support = idx[c.support][np.argsort(-w[c.support])]
    return c.en, c.spread_m, [int(j) for j in support]


@dataclass
class Located:
    """One query's answer in the gallery's metric frame (what calibration and prediction both consume)."""
    kind: str  # "recognised" (verified, at a gallery camera's spot), "scene" (verified from elsewhere), "fallback"
    pos: np.ndarray  # (2,) east/north metres: the kind's own answer (consensus, or the fallback's)
    spread: float  # metres, input to the radius model
    idx: np.ndarray  # supporting gallery indices (verified, best first) or the fallback's neighbours
    sims: np.ndarray  # their scores (inliers when verified)
    checked: dict[int, int]  # every verified candidate -> inliers
    camera: CameraEstimate | None = None  # the query camera from the verified photos (verified answers only)
    knn: tuple | None = None  # knn's answer (pos, spread, idx, sims): the alternative for scene / fallback
    parallax: list[float] | None = None  # parallax (deg) with the strongest verified photos

    @property
    def verified(self) -> bool:
        return self.kind != FALLBACK


class RerankPredictor(BasePredictor):
    name = "rerank"
    Config = RerankConfig
    # Queries are decoded at full size: SIFT must see the same pixels (INTER_AREA to max_side) as the gallery
    # did at fit time; a 640 px query against a 1024 px gallery loses most verifications.
    query_max_side = None
    uses_focal_length = True  # the query's EXIF focal length sets its intrinsics for the pose stage

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        c = self.config
        if c.embed not in ENCODERS:
            raise ModelError(f"{self.spec}: unknown embed {c.embed!r}; known: {', '.join(ENCODERS)}")
        for key in ("topn", "max_verify", "max_side", "features", "min_inliers", "k"):
            if getattr(c, key) < 1:
                raise ModelError(f"{self.spec}: {key} must be >= 1")
        if c.pose not in ("auto", "on", "off"):
            raise ModelError(f"{self.spec}: pose must be auto, on or off")
        if c.pose_views < 1:
            raise ModelError(f"{self.spec}: pose_views must be >= 1")
        if c.answer not in ("auto",) + CHOICES:
            raise ModelError(f"{self.spec}: answer must be auto, {', '.join(CHOICES)}")
        if c.fallback not in ("median", "knn"):
            raise ModelError(f"{self.spec}: fallback must be median or knn")
        if not 0 < c.ratio <= 1 or c.ransac_px <= 0 or not 0 < c.coverage < 1:
            raise ModelError(f"{self.spec}: need 0 < ratio <= 1, ransac_px > 0 and 0 < coverage < 1")
        self.fcfg = FeatureConfig(c.max_side, c.features, True)
        self.vcfg = VerifyConfig(c.ratio, True, c.ransac_px, c.min_inliers)
        self.knn: KNNPredictor | None = None
        self.codebook: VladCodebook | None = None

    # -- fit ----------------------------------------------------------------------------------------------
    def _fit(self, train) -> None:
        with single_threaded():
            self._fit_single(train)

    def _fit_single(self, train) -> None:
        c = self.config
        self.knn = KNNPredictor(KNNConfig(embed=c.embed, k=c.k, coverage=c.coverage, index=c.index),
                                spec=f"knn:embed={c.embed}:k={c.k}")
        keys = [train.content_key(i) for i in range(len(train))]
        # one pass decodes each photo for both its embedding and its keypoints (all cores; resumable)
        self.indexing_stats = ensure_features(train, ExtractSpec(embed=c.embed, features=self.fcfg), self.indexing,
                                              keys=keys, label="indexing")
        self.knn.indexing = self.indexing
        self.knn.fit(train)
        self.keys = keys
        cam = train.with_camera_meta().table  # gallery headings / focal lengths: labels.csv, else the EXIF
        self.gallery["heading"] = cam["heading"].to_numpy(float)
        self.gallery["focal35"] = cam["focal35"].to_numpy(float)
        cache = KeypointCache(self.fcfg)  # filled by ensure_features above

        def read(i: int) -> Keypoints:
            kp = cache.get(keys[i])
            if kp is None:  # removed from the cache while fitting: extract again
                kp = extract(train.open(i), self.fcfg)
            return kp

        self.store = KeypointStore(len(keys), read, c.cache_mb * 2**20)
        self.codebook = None
        counts = [len(self.store.get(i)) for i in range(len(keys))] if c.vlad else []
        if c.vlad and sum(counts) >= 4 * c.vlad:  # learnt from the gallery only, on a bounded sample
            self.codebook = VladCodebook.train_from(counts, self.store.unit_desc, c.vlad)
        self._build()
        self._calibrate(keys)

    def _build(self, vlad_vecs: np.ndarray | None = None) -> None:
        """Everything derived from the stored gallery: VLAD, neighbour lists, score scales (none quadratic)."""
        c = self.config
        self.en = self.knn.en
        g = self.gallery
        nan = np.full(len(g), np.nan)
        self.cameras = GalleryCameras(self.en, g["heading"].to_numpy(float) if "heading" in g else nan,
                                      g["focal35"].to_numpy(float) if "focal35" in g else nan,
                                      lambda j: self.store.get(j).size)
        self.locator = CameraLocator(self.cameras, LocatorConfig(max_views=c.pose_views))
        if vlad_vecs is None and self.codebook is not None:
            vlad_vecs = np.stack([self.codebook.encode(self.store.unit_desc(i)) for i in range(len(self.store))])
        self.vlad_vecs = vlad_vecs if self.codebook is not None else None
        self.near = neighbours_within(self.en, c.near_m, c.near_max)
        # z-score each similarity over gallery-gallery pairs so the two halves of the score weigh the same
        self.zstats = [pair_stats(self.knn.index.vectors)]
        if self.vlad_vecs is not None:
            self.zstats.append(pair_stats(self.vlad_vecs))

    def _scores(self, g_sims: np.ndarray, v_sims: np.ndarray | None) -> np.ndarray:
        s = (g_sims - self.zstats[0][0]) / self.zstats[0][1]
        if v_sims is not None:
            s = s + (v_sims - self.zstats[1][0]) / self.zstats[1][1]
        return s

    def _calibrate(self, keys: list[str]) -> None:
        """Held-out gallery photos (a seeded subset) go through the exact query procedure, near (same-spot
        siblings left out) and far (a 2R block left out): their errors calibrate one radius per answer kind
        (Mondrian split-conformal, localization/conformal.py), the scene / fallback answer choice
        (localization/answers.py), the heading radius and the pose choice."""
        c = self.config
        n = len(self.store)
        area = float(np.quantile(np.linalg.norm(self.en - self.en.mean(0), axis=1), c.coverage)) if n > 1 else 100.0
        self.calib_summary = {"n": 0, "recognised": 0}
        self.heading_radius = None
        self.use_pose, self.pose_recognised = c.pose == "on", True
        self.answer_choice = {SCENE: "own", FALLBACK: "own"}
        if n < 3:
            self.radii = MondrianRadius(pooled=RadiusModel(scale=1.0, floor_m=25.0, area_m=max(area, 25.0)))
            return
        holdouts = tuple(CALIB_SHARES) + (("self",) if self.cameras.n_with_heading and "self" not in CALIB_SHARES
                                          else ())
        self._fit_calibration(self.calibration_records(keys, holdouts), area)

    def calibration_records(self, keys: list[str], holdouts: Sequence[str]) -> list[dict]:
        """One record per (held-out photo, hold-out): its answer kind, parallax, and the error (m) and spread of
        each answer choice (own / knn / blend; pose where a camera fix exists), heading error where known.

        Hold-outs: "self" (only the photo itself left out: heading calibration), "near", "far"
        (localization/holdout.py). Public so analyses can study the evidence behind the answer kinds."""
        c = self.config
        order = sorted(range(len(self.store)), key=lambda i: hashlib.sha1(keys[i].encode()).hexdigest())[: c.calib]
        spot_m = same_spot_radius_m(self.en)
        self.spot_m = spot_m
        pairs = PairCache(self.fcfg, self.vcfg)
        poses = PoseCache(self.locator.setting_key(self.fcfg.key))

        def held_out(task: tuple[int, str]) -> dict:
            # The held-out photo queries with its stored embedding and VLAD vector: one row of similarities
            # each, never a gallery x gallery matrix.
            r, h = task
            q = order[r]
            skip = ({q} if h == "self" else
                    set(np.flatnonzero(excluded_rows(self.en, [q], holdout_radius_m(spot_m, h))[0]).tolist()))
            matched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            kq, dq = self.store.get(q), self.store.unit_desc(q)

            def verify(j: int) -> int:
                got = pairs.get(keys[q], keys[j])
                if got is None:
                    got = self._verify(kq, dq, j, matched)
                    pairs.put(keys[q], keys[j], got)
                return got

            def knn_answer():
                idx = np.array([j for j in np.argsort(-g) if j not in skip][: c.k], int)
                pos, spread = aggregate(self.en[idx], g[idx], self.knn.config.agg)
                return pos, spread, idx, g[idx]

            f = self.cameras.focal35[q]
            g = self.knn.index.vectors @ self.knn.index.vectors[q]
            v = self.vlad_vecs @ self.vlad_vecs[q] if self.vlad_vecs is not None else None
            score = self._scores(g, v)
            score[list(skip)] = -np.inf
            loc = self._locate(score, g, verify, knn_answer, skip=skip,
                               camera=lambda ch: self._camera(kq, dq, f, ch, matched, poses, keys[q]),
                               parallax=lambda ver: self._parallax(kq, dq, f, ver, matched, poses, keys[q]))
            ver = sorted((n for n in loc.checked.values() if n >= c.min_inliers), reverse=True)
            out = {"holdout": h, "kind": loc.kind, "parallax": (loc.parallax or [np.inf])[0],
                   "inliers": ver[0] if ver else 0, "n_verified": len(ver)}
            for ch in CHOICES:
                p, sp = candidate(ch, (loc.pos, loc.spread), loc.knn[:2])
                out[ch + "_err"], out[ch + "_spread"] = float(np.linalg.norm(p - self.en[q])), float(sp)
            est = loc.camera
            if est is not None and est.heading_deg is not None and np.isfinite(self.cameras.heading[q]):
                out["heading_err"] = float(angle_diff_deg(est.heading_deg, self.cameras.heading[q]))
            if est is not None and est.fix is not None:
                out["pose_err"] = float(np.linalg.norm(est.fix.en - self.en[q]))
                out["pose_spread"] = est.fix.spread_m
            return out

        # Held-out photos are independent: two threads use both cores (numpy and OpenCV release the GIL while
        # each keeps one BLAS thread); map keeps the order, so the result does not depend on timing.
        with ThreadPoolExecutor(2) as ex:
            got = list(ex.map(held_out, [(r, h) for h in holdouts for r in range(len(order))]))
        pairs.save()
        poses.save()
        return got

    def _fit_calibration(self, records: list[dict], area: float) -> None:
        c = self.config
        # The heading error depends on the pair's geometry, not on how far the query stood from the gallery
        # photo: it is calibrated with only the held-out photo itself left out (many more samples).
        hd = [g["heading_err"] for g in records if g["holdout"] == "self" and "heading_err" in g]
        if len(hd) >= MIN_CALIBRATION:
            self.heading_radius = float(np.sort(hd)[min(len(hd), math.ceil((len(hd) + 1) * c.coverage)) - 1])
        got = [g for g in records if g["holdout"] in CALIB_SHARES]
        w = mixture_weights([g["holdout"] for g in got], CALIB_SHARES)
        rec = [g for g in got if g["kind"] == "recognised"]
        fixed = [g for g in rec if "pose_err" in g]
        pose_med = float(np.median([g["pose_err"] for g in fixed])) if fixed else None
        cons_med = float(np.median([g["own_err"] for g in fixed])) if fixed else None
        if len(fixed) >= MIN_CALIBRATION:
            self.pose_recognised = pose_med <= c.coarse_m
            if c.pose == "auto":
                self.use_pose = pose_med < cons_med
        for kind in (SCENE, FALLBACK):
            m = np.array([g["kind"] == kind for g in got], bool)
            errs = {ch: [g[ch + "_err"] for g, k in zip(got, m) if k] for ch in CHOICES}
            self.answer_choice[kind] = c.answer if c.answer != "auto" else choose(errs, w[m])
        groups, errs, spreads = [], [], []
        for g in got:
            if g["kind"] == "recognised":
                pose = self.use_pose and "pose_err" in g
                groups.append("pose" if pose else "consensus")
                errs.append(g["pose_err"] if pose else g["own_err"])
                spreads.append(g["pose_spread"] if pose else g["own_spread"])
            else:
                ch = self.answer_choice[g["kind"]]
                groups.append(g["kind"])
                errs.append(g[ch + "_err"])
                spreads.append(g[ch + "_spread"])
        # Verified answers at a gallery spot are metre-level: a small offset keeps their radius from being
        # inflated by the model.
        self.radii = MondrianRadius.fit(groups, [g["holdout"] for g in got], errs, spreads, coverage=c.coverage,
                                        offset_m=10.0, floor_m=3.0, area_m=area, shares=CALIB_SHARES,
                                        offsets={"consensus": 5.0, "pose": 5.0})
        e = np.asarray(errs)
        rm = np.array([k in ("consensus", "pose") for k in groups], bool)
        self.calib_summary = {
            "n": len(got), "recognised": int(rm.sum()), "same_spot_m": self.spot_m,
            "holdouts": {h: int(sum(g["holdout"] == h for g in got)) for h in CALIB_SHARES},
            "recognised_median_m": float(np.median(e[rm])) if rm.any() else None,
            "unrecognised_median_m": float(np.median(e[~rm])) if (~rm).any() else None,
            "kinds": self.radii.summary, "answer_choice": dict(self.answer_choice),
            "heading_n": len(hd), "heading_median_deg": float(np.median(hd)) if hd else None,
            "pose_n": len(fixed), "pose_median_m": pose_med, "consensus_median_m_same_photos": cons_med,
            "use_pose": bool(self.use_pose),
        }

    def _verify(self, kq: Keypoints, dq: np.ndarray, j: int, keep: dict | None = None) -> int:
        """Inliers between a query (keypoints, unit descriptors) and gallery photo j, read from the store; with
        `keep`, a verified pair's matched points (query xy, gallery xy) are stored there for the pose stage."""
        kj = self.store.get(j)
        m = mutual_matches(dq, self.store.unit_desc(j), self.vcfg.ratio, self.vcfg.mutual)
        n = fundamental_inliers(kq.xy[m[:, 0]], kj.xy[m[:, 1]], self.vcfg) if len(m) >= 8 else 0
        if keep is not None and n >= self.vcfg.min_inliers:
            keep[j] = (kq.xy[m[:, 0]], kj.xy[m[:, 1]])
        return n

    def _matcher(self, kq: Keypoints, dq: np.ndarray, matched: dict) -> Callable[[int], tuple]:
        """match(j) -> (query xy, gallery xy) of the mutual matches with gallery photo j (kept in `matched`)."""
        def match(j: int):
            if j not in matched:
                m = mutual_matches(dq, self.store.unit_desc(j), self.vcfg.ratio, self.vcfg.mutual)
                matched[j] = (kq.xy[m[:, 0]], self.store.get(j).xy[m[:, 1]])
            return matched[j]
        return match

    def _camera(self, kq: Keypoints, dq: np.ndarray, focal35, checked: dict[int, int], matched: dict,
                cache: PoseCache | None = None, key: str | None = None) -> CameraEstimate | None:
        """The query camera from the verified photos (None when no gallery photo has a known heading)."""
        if self.cameras.n_with_heading == 0:
            return None
        ver = {j: k for j, k in checked.items() if k >= self.config.min_inliers}
        f = float(focal35) if focal35 is not None and np.isfinite(focal35) else None
        return self.locator.locate(self._matcher(kq, dq, matched), kq.size, f, ver, cache, key, self.keys)

    def _parallax(self, kq: Keypoints, dq: np.ndarray, focal35, verified: dict[int, int], matched: dict,
                  cache: PoseCache | None = None, key: str | None = None) -> list[float]:
        """Parallax (deg) of the query with its strongest verified photos (localization/camera.py)."""
        f = float(focal35) if focal35 is not None and np.isfinite(focal35) else None
        return self.locator.parallax(self._matcher(kq, dq, matched), kq.size, f, verified, PARALLAX_VIEWS, cache,
                                     key, self.keys)

    # -- predict ------------------------------------------------------------------------------------------
    def _predict_ranked_one(self, image, top_k: int, n: int, focal35: float | None = None):
        with single_threaded():
            return self._predict_single(image, top_k, n, focal35)

    def _locate(self, score: np.ndarray, g_sims: np.ndarray, verify: Callable[[int], int],
                knn_answer: Callable[[], tuple], skip: int | Container[int] | None = None,
                camera: Callable[[dict[int, int]], CameraEstimate | None] | None = None,
                parallax: Callable[[dict[int, int]], list[float]] | None = None) -> Located:
        """The query procedure shared by calibration (held-out gallery photo) and prediction.

        score: (N,) shortlist score over the gallery; g_sims: (N,) global similarities (fallback neighbour
        scores); verify(j) -> inliers with gallery photo j; knn_answer() -> (pos, spread, idx, sims);
        camera(checked) -> the query camera from the verified photos; parallax(checked) -> parallax (deg) with
        the strongest verified photos, which decides recognised against scene (localization/answers.py).
        """
        c = self.config
        checked = verify_candidates(np.argsort(-score), verify, self.near, c, skip=skip)
        res = resolve(checked, self.en, c)
        knn = knn_answer()
        if res is not None:
            pos, spread, support = res
            ver = {j: n for j, n in checked.items() if n >= c.min_inliers}
            par = parallax(ver) if parallax is not None else []
            strongest = sorted(ver.values(), reverse=True)
            kind = "recognised" if at_gallery_spot(par, strongest, c.rec_parallax, c.rec_inliers) else SCENE
            return Located(kind, pos, spread, np.array(support, int),
                           np.array([checked[j] for j in support], float), checked,
                           camera(checked) if camera is not None else None, knn, par)
        if c.fallback == "knn":
            pos, spread, idx, sims = knn
        else:
            pos, spread, idx = shortlist_median(score, self.en, c.fallback_k, c.fallback_t)
            sims = g_sims[idx]
        return Located(FALLBACK, pos, spread, idx, sims, checked, None, knn, [])

    @property
    def query_encoder(self):
        """The frozen global encoder of the shortlist (read by ONNX export); see KNNPredictor.query_encoder."""
        return self.knn.query_encoder if self.knn is not None else None

    def use_query_encoder(self, encoder) -> None:
        """Embed queries with another runtime of the same network (e.g. export.OnnxEncoder)."""
        self.knn.use_query_encoder(encoder)

    def _predict_single(self, image, top_k: int, n: int = 0,
                        focal35: float | None = None) -> tuple[Prediction, np.ndarray]:
        c = self.config
        q = self.knn.embed([image])  # the encoder shrinks it exactly as it shrank the gallery photos
        kq = extract(image, self.fcfg)
        dq = kq.unit_desc(True)
        g_sims = self.knn.index.similarities(q)
        v_sims = self.vlad_vecs @ self.codebook.encode(dq) if self.vlad_vecs is not None else None
        score = self._scores(g_sims, v_sims)

        def knn_answer():
            return self.knn.locate(q, top_k)

        matched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        loc = self._locate(score, g_sims, lambda j: self._verify(kq, dq, j, matched), knn_answer,
                           camera=lambda checked: self._camera(kq, dq, focal35, checked, matched),
                           parallax=lambda ver: self._parallax(kq, dq, focal35, ver, matched))
        ranked = np.argsort(-score)[:n]  # the retrieval stage's order, before verification
        est = loc.camera  # the heading is reported for every verified answer, even with pose=off
        heading = est.heading_deg if est is not None else None
        hr = self.heading_radius if heading is not None else None
        if loc.kind == "recognised":
            pos, spread, group, recognised = loc.pos, loc.spread, "consensus", True
            support = [int(j) for j in loc.idx]
            if est is not None and est.fix is not None and self.use_pose:
                pos, spread, group, recognised = est.fix.en, est.fix.spread_m, "pose", self.pose_recognised
                support = list(dict.fromkeys(est.views + support))
            return self._answer(pos, spread, group, recognised, self._verified_neighbours(loc, support, top_k),
                                heading, hr), ranked
        choice = self.answer_choice.get(loc.kind, "own")
        pos, spread = candidate(choice, (loc.pos, loc.spread), loc.knn[:2])
        if loc.kind == SCENE:
            neigh = self._verified_neighbours(loc, [int(j) for j in loc.idx], top_k)
            return self._answer(pos, spread, SCENE, False, neigh, heading, hr), ranked
        idx, sims = (loc.knn[2], loc.knn[3]) if choice == "knn" else (loc.idx, loc.sims)
        return self._answer(pos, spread, FALLBACK, False, self.neighbours(idx, sims, top_k), None, None), ranked

    def _verified_neighbours(self, loc: Located, support: list[int], top_k: int) -> list[Neighbour]:
        """The supporting verified photos first, then the other verified ones, strongest first (score: inliers)."""
        checked = loc.checked
        others = sorted((j for j in checked if checked[j] >= self.config.min_inliers and j not in support),
                        key=lambda j: -checked[j])
        return [Neighbour(*self._row(j), float(checked[j])) for j in list(support) + others][:top_k]

    def _answer(self, pos, spread: float, kind: str, recognised: bool, neigh: list[Neighbour],
                heading: float | None, heading_radius: float | None) -> Prediction:
        """A Prediction at east/north `pos` with the radius and confidence of answer kind `kind` (= source)."""
        lat, lon = self.knn.frame.to_latlon(pos)
        r = self.radii.radius(kind, spread)
        return Prediction(float(lat), float(lon), r, self.radii.confidence(kind, r), recognised, self.spec, neigh,
                          heading_deg=heading, heading_radius_deg=heading_radius, source=kind)

    def _row(self, j: int) -> tuple[str, float, float]:
        g = self.gallery
        return str(g.at[j, "image"]), float(g.at[j, "Latitude"]), float(g.at[j, "Longitude"])

    def fit_report(self):
        return {"index": self.knn.index_report, "calibration": self.calib_summary}

    # -- persistence --------------------------------------------------------------------------------------
    # -- appending ---------------------------------------------------------------------------------------
    def add_refusal(self):
        if getattr(self, "keys", None) is None:
            return f"{self.spec}: this model predates `index add` (no {KEYS_FILE}); re-fit it with `img2gps fit`"
        return None

    def _add(self, new) -> None:
        """New photos' embeddings, keypoints and VLAD vectors appended (the codebook is kept, so every existing
        vector and keypoint stays as it was); neighbour lists, score scales and calibration redone."""
        new_keys = [new.content_key(i) for i in range(len(new))]
        cam = new.with_camera_meta().table  # the new rows' headings / focal lengths, as fit reads them
        for col in ("heading", "focal35"):
            self.gallery.loc[len(self.gallery) - len(new):, col] = cam[col].to_numpy(float)
        with single_threaded():
            self.indexing_stats = ensure_features(new, ExtractSpec(embed=self.config.embed, features=self.fcfg),
                                                  self.indexing, keys=new_keys, label="indexing")
            self.knn.indexing = self.indexing
            self.knn.add(new)
            n_old, old, cache = len(self.store), self.store, KeypointCache(self.fcfg)

            def read(i: int) -> Keypoints:
                if i < n_old:
                    return old.get(i)
                kp = cache.get(new_keys[i - n_old])
                return kp if kp is not None else extract(new.open(i - n_old), self.fcfg)

            self.store = KeypointStore(n_old + len(new), read, self.config.cache_mb * 2**20)
            vlad = self.vlad_vecs
            if self.codebook is not None:
                more = np.stack([self.codebook.encode(self.store.unit_desc(i)) for i in range(n_old, len(self.store))])
                vlad = np.concatenate([vlad, more])
            self.keys = list(self.keys) + new_keys
            self._build(vlad)
            self._calibrate(self.keys)

    def _save_files(self, d: Path) -> None:
        if getattr(self, "keys", None) is not None:
            (d / KEYS_FILE).write_text("\n".join(self.keys) + "\n")
        self.knn.save(d / "knn", thumbnails=False)
        write_store(d / STORE_FILE, iter(self.store), len(self.store), self.fcfg.key)
        if self.codebook is not None:
            np.save(d / "vlad_codebook.npy", self.codebook.centroids)
            np.save(d / "vlad_gallery.npy", self.vlad_vecs)

    def _state(self):
        return {"radii": self.radii.to_dict(), "answer_choice": dict(self.answer_choice),
                "use_pose": bool(self.use_pose), "pose_recognised": bool(self.pose_recognised),
                "heading_radius_deg": self.heading_radius,
                "calibration": self.calib_summary, "features": self.fcfg.key, "index": self.knn.index_report}

    def _load_files(self, d: Path, state) -> None:
        self.knn = KNNPredictor.load(d / "knn")
        if not (d / STORE_FILE).is_file() and (d / "keypoints.npz").is_file():
            raise ModelError(f"{d}: keypoints.npz is the old keypoint format; re-fit the model")
        kf = d / KEYS_FILE  # content hashes of the gallery photos (what `index add` and calibration key on)
        self.keys = kf.read_text().split() if kf.is_file() else None
        self.store = KeypointStore.open(d / STORE_FILE, len(self.gallery), self.fcfg.key, self.config.cache_mb * 2**20)
        vlad, self.codebook = None, None
        if (d / "vlad_codebook.npy").is_file():
            self.codebook = VladCodebook(np.load(d / "vlad_codebook.npy"))
            vlad = np.load(d / "vlad_gallery.npy") if (d / "vlad_gallery.npy").is_file() else None
        self._build(vlad)
        if "radii" in state:
            self.radii = MondrianRadius.from_dict(state["radii"])
        else:  # a model saved before answer kinds: its three radius models, under the kinds' names
            rec = RadiusModel.from_dict(state.get("rec_radius"))
            pose = RadiusModel.from_dict(state["pose_radius"]) if state.get("pose_radius") else rec
            self.radii = MondrianRadius({"consensus": rec, "pose": pose, SCENE: rec},
                                        RadiusModel.from_dict(state.get("unrec_radius")))
        self.answer_choice = {SCENE: "own", FALLBACK: "own", **state.get("answer_choice", {})}
        self.calib_summary = state.get("calibration", {})
        self.use_pose = bool(state.get("use_pose", self.config.pose == "on"))
        self.pose_recognised = bool(state.get("pose_recognised", True))
        self.heading_radius = state.get("heading_radius_deg")
