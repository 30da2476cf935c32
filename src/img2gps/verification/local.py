"""Geometric verification: mutual ratio-test matching of RootSIFT keypoints (features/rootsift.py), MAGSAC on F.

The inlier count decides whether two photos see the same scene. On penn91 loose settings accept look-alikes 80 m
apart, so the defaults are strict: mutual nearest neighbours that also pass Lowe's ratio test, and a 1 px MAGSAC
fundamental-matrix fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..features.cache import PairStore, user_cache_dir
from ..features.rootsift import FeatureConfig, Keypoints


@dataclass(frozen=True)
class VerifyConfig:
    ratio: float = 0.8  # Lowe's ratio test on the query side
    mutual: bool = True  # keep a match only when each point is the other's nearest neighbour
    ransac_px: float = 1.0  # MAGSAC threshold in pixels at FeatureConfig.max_side
    min_inliers: int = 15  # fewer fundamental-matrix inliers than this = not verified
    max_iters: int = 2000  # bounds the worst-case cost of one verification


# The settings gallery photos are verified with: rerank's defaults and the label check's (one owner, so a fitted
# model's keypoint, pair and pose caches serve the label check and the other way round).
GALLERY_FEATURES = FeatureConfig(max_side=1024, n_features=2000, root=True)
GALLERY_VERIFY = VerifyConfig()


# -- matching and verification ---------------------------------------------------------------------------------
def mutual_matches(da: np.ndarray, db: np.ndarray, ratio: float = 0.8, mutual: bool = True,
                   sim: np.ndarray | None = None) -> np.ndarray:
    """(M, 2) index pairs (i in a, j in b) between unit descriptors: ratio test on a's side, mutual check.

    One matrix product gives every distance (on unit vectors squared distance = 2 - 2 * similarity); the two
    best per row come from two max passes, which is ~6x faster than a partial sort of the whole matrix.
    """
    if len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), np.int64)
    sim = da @ db.T if sim is None else sim.copy()
    rows = np.arange(len(da))
    best = sim.argmax(1)
    s1 = sim[rows, best]
    sim[rows, best] = -2.0  # hide the best to read the second best
    s2 = sim.max(1)
    sim[rows, best] = s1
    d1 = np.sqrt(np.maximum(2 - 2 * s1, 0))
    d2 = np.sqrt(np.maximum(2 - 2 * s2, 0))
    ia = np.flatnonzero(d1 < ratio * d2)
    if mutual and len(ia):
        # Only the columns that some row chose need their own best row.
        ia = ia[sim[:, best[ia]].argmax(0) == ia]
    return np.stack([ia, best[ia]], axis=1)


def fundamental_inliers(pa: np.ndarray, pb: np.ndarray, vcfg: VerifyConfig = VerifyConfig()) -> int:
    """Inliers of a MAGSAC fundamental-matrix fit (0 when too few points to try)."""
    if len(pa) < 8:
        return 0
    try:
        F, mask = cv2.findFundamentalMat(pa.astype(np.float64), pb.astype(np.float64), cv2.USAC_MAGSAC,
                                         vcfg.ransac_px, 0.999, vcfg.max_iters)
    except cv2.error:
        return 0
    if F is None or mask is None:
        return 0
    return int(mask.ravel().astype(bool).sum())


def matched_points(a: Keypoints, b: Keypoints, vcfg: VerifyConfig = GALLERY_VERIFY, root: bool = True,
                   da: np.ndarray | None = None, db: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The one matcher: pixel coordinates (M, 2) in a and (M, 2) in b of the two photos' mutual ratio-test matches
    (rerank's verification and pose stages and the label check all match through here). Pass unit descriptors
    (Keypoints.unit_desc) to reuse them; a is the side the ratio test is applied on."""
    da = a.unit_desc(root) if da is None else da
    db = b.unit_desc(root) if db is None else db
    m = mutual_matches(da, db, vcfg.ratio, vcfg.mutual)
    return a.xy[m[:, 0]], b.xy[m[:, 1]]


def verify_pair(a: Keypoints, b: Keypoints, vcfg: VerifyConfig = VerifyConfig(), root: bool = True,
                da: np.ndarray | None = None, db: np.ndarray | None = None) -> int:
    """Raw inlier count between two photos (verified when >= vcfg.min_inliers; the count itself does not depend
    on min_inliers, so cached counts stay valid when the threshold changes). Pass unit descriptors to reuse them."""
    return fundamental_inliers(*matched_points(a, b, vcfg, root, da, db), vcfg)


def verify_key(fcfg: FeatureConfig, vcfg: VerifyConfig, feature_key: str | None = None) -> str:
    """Everything an inlier count depends on (min_inliers is applied later, so it is not part of the key);
    feature_key: the keypoints' own key when it is not fcfg's (a capped gallery: store.gallery_key)."""
    return f"{feature_key or fcfg.key}-r{vcfg.ratio:g}-m{int(vcfg.mutual)}-px{vcfg.ransac_px:g}-it{vcfg.max_iters}"


class PairCache(PairStore):
    """Inlier counts of gallery photo pairs (ordered: the first photo plays the query), keyed by content hashes.

    One small .npz per feature/verification setting under <cache>/pairs/. Re-fitting on a subset of a gallery
    (leave-one-out, k-fold) then costs no matching at all: every pair it needs was counted before.
    """

    def __init__(self, fcfg: FeatureConfig, vcfg: VerifyConfig, root: Path | None = None,
                 feature_key: str | None = None):
        super().__init__(Path(root or user_cache_dir()) / "pairs" / f"{verify_key(fcfg, vcfg, feature_key)}.npz")

    def decode(self, row: np.ndarray) -> int:
        return int(row[0])

    def get(self, a: str, b: str) -> int | None:
        return self.lookup(a, b)

    def put(self, a: str, b: str, n: int) -> None:
        self.store(a, b, int(n))
