"""rerank's options, each with its checks (predictors/spec.py applies them to a spec and to a saved model)."""
from __future__ import annotations

from dataclasses import dataclass

from ...localization.answers import CHOICES, MAX_PARALLAX_DEG, MIN_INLIERS
from ...retrieval.database import INDEX_KINDS
from ...retrieval.encoders import ENCODERS
from ...verification.local import FeatureConfig, VerifyConfig
from ..spec import opt


def _encoders():
    return tuple(ENCODERS)


@dataclass
class RerankConfig:
    embed: str = opt("lite0", choices=_encoders)  # global encoder for the shortlist (features/backbones.py)
    vlad: int = opt(64, ge=0)  # VLAD codebook size for the local-feature half of the shortlist score (0 = embedding only)
    topn: int = opt(10, ge=1)  # shortlist length: candidates verified in retrieval order
    near_m: float = opt(0.0, ge=0)  # > 0: after a photo verifies, also verify gallery photos within this distance
    near_max: int = opt(4, ge=0)  # ... at most this many per verified photo, nearest first
    max_verify: int = opt(16, ge=1)  # hard cap on verifications per query (bounds latency)
    stop_inliers: int = 60  # a photo verified this strongly ends the shortlist (its neighbours are still checked)
    max_side: int = opt(1024, ge=1)  # photos are resized to this long side before SIFT
    features: int = opt(2000, ge=1)  # strongest keypoints per photo
    ratio: float = opt(0.8, gt=0, le=1)  # Lowe's ratio test
    ransac_px: float = opt(1.0, gt=0)  # MAGSAC fundamental-matrix threshold (pixels at max_side)
    min_inliers: int = opt(15, ge=1)  # verified when a pair has at least this many inliers
    cluster_m: float = opt(15.0, gt=0)  # verified photos this close vote together in the consensus
    fallback: str = opt("median", choices=("median", "knn"))  # not recognised: "median" of the shortlist (below) or
    # plain "knn" on the embedding
    fallback_k: int = opt(10, ge=1)  # shortlist photos in the fallback's weighted geometric median
    fallback_t: float = opt(0.5, gt=0)  # softmax temperature on the shortlist score (z units) for those weights
    k: int = opt(3, ge=1)  # neighbours of the plain k-NN fallback
    coverage: float = opt(0.8, gt=0, lt=1)  # target fraction of true positions inside the radius
    calib: int = opt(300, ge=0)  # at most this many gallery photos are held out in turn for calibration
    index: str = opt("auto", choices=INDEX_KINDS)  # faiss index of the global embeddings (see knn)
    cache_mb: int = opt(256, ge=1)  # bound on gallery keypoints (with their RootSIFT form) kept in memory
    pose: str = opt("auto", choices=("auto", "on", "off"))  # camera position from relative pose: auto (where
    # calibration shows it better) | on | off
    pose_views: int = opt(4, ge=1)  # relative poses per query (strongest verified photos with a known heading)
    coarse_m: float = 15.0  # pose answers whose calibrated median error exceeds this are not `recognised`
    rec_parallax: float = opt(MAX_PARALLAX_DEG, ge=0)  # recognised only when the strongest verified pair's parallax
    rec_inliers: int = opt(MIN_INLIERS, ge=1)  # (deg) is at most rec_parallax, with at least rec_inliers inliers
    answer: str = opt("auto", choices=("auto",) + CHOICES)  # scene / fallback answers: auto (per gallery, from
    # calibration) | own | knn | blend (localization/answers.py)

    @property
    def feature_config(self) -> FeatureConfig:
        """SIFT settings of gallery and query keypoints (RootSIFT)."""
        return FeatureConfig(self.max_side, self.features, True)

    @property
    def verify_config(self) -> VerifyConfig:
        """Matching and geometric verification settings (mutual ratio-test matches, MAGSAC F-matrix)."""
        return VerifyConfig(self.ratio, True, self.ransac_px, self.min_inliers)
