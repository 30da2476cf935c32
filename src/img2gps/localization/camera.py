"""The query camera from its verified gallery photos: relative poses -> heading and (with >= 2 places) position.

Input per query: its keypoints, focal length (EXIF or the documented default), and the gallery photos that
verification accepted (index -> inlier count). For the strongest few of those whose own heading is known
(EXIF GPSImgDirection, or an SfM pose), the pair's relative pose (pose.relative_pose) becomes a world-frame
constraint (pose.view_constraint); the constraints are combined by pose.place_camera. Pair poses are cached
on disk by the two photos' content keys (and everything the pose depends on), so calibration and bench folds
that meet the same pair again cost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..features.cache import PairStore, user_cache_dir
from .pose import (PoseConfig, PoseFix, RelativePose, ViewConstraint, combine_headings, intrinsics, place_camera,
                   relative_pose, view_constraint)


@dataclass
class GalleryCameras:
    """Per gallery photo: east/north metres (N, 2), heading in degrees (N,) and 35 mm-equivalent focal length
    in mm (N,), NaN where unknown; size(j) -> the (width, height) photo j's keypoints were measured at."""

    en: np.ndarray
    heading: np.ndarray
    focal35: np.ndarray
    size: Callable[[int], tuple[int, int]]

    def K(self, j: int) -> np.ndarray:
        f = float(self.focal35[j])
        return intrinsics(*self.size(j), f if np.isfinite(f) else None)

    @property
    def n_with_heading(self) -> int:
        return int(np.isfinite(self.heading).sum())


@dataclass
class CameraEstimate:
    heading_deg: float | None  # None: no verified gallery photo with a known heading gave a pose
    fix: PoseFix | None  # the query camera's position; None when the geometry does not fix one
    views: list[int] = field(default_factory=list)  # gallery indices that gave a constraint


class PoseCache(PairStore):
    """Relative poses of (query key, gallery key) pairs: an in-memory dict saved as one .npz per setting."""
    width = 14  # R (9), t (3), inliers, parallax

    def __init__(self, setting: str, root: Path | None = None):
        super().__init__(Path(root or user_cache_dir()) / "poses" / f"{setting}.npz")

    def encode(self, r: RelativePose) -> np.ndarray:
        return np.r_[r.R.ravel(), r.t, r.inliers, r.parallax_deg]

    def decode(self, v: np.ndarray) -> RelativePose:
        return RelativePose(v[:9].reshape(3, 3), v[9:12], int(v[12]), float(v[13]))

    def get(self, a: str, b: str):
        """The cached pose, None for a cached failure, or the string "miss"."""
        return self.lookup(a, b, "miss")

    def put(self, a: str, b: str, rel: RelativePose | None) -> None:
        self.store(a, b, rel)


@dataclass(frozen=True)
class LocatorConfig:
    max_views: int = 6  # relative poses per query: the strongest verified photos with a known heading
    pose: PoseConfig = PoseConfig()


class CameraLocator:
    """Places a query camera from its verified gallery photos.

    `match(query_points, j) -> (pts_query (M, 2), pts_gallery (M, 2))` is the caller's matcher (the same
    local features as verification): this stage does geometry only.
    """

    def __init__(self, cameras: GalleryCameras, cfg: LocatorConfig = LocatorConfig()):
        self.cameras = cameras
        self.cfg = cfg

    def setting_key(self, feature_key: str) -> str:
        p = self.cfg.pose
        return f"{feature_key}-px{p.ransac_px:g}-min{p.min_inliers}-v2"  # v2: degenerate pairs as rotations

    def relative(self, match: Callable[[int], tuple[np.ndarray, np.ndarray]], j: int, Kq: np.ndarray,
                 focal35: float | None, cache: PoseCache | None = None, query_key: str | None = None,
                 gallery_keys: Sequence[str] | None = None, memo: dict | None = None) -> RelativePose | None:
        """The query's relative pose to gallery photo j (cached by the pair's content keys and query focal; `memo`:
        this query's poses by j, so parallax and locate compute each pair's pose once)."""
        if memo is not None and j in memo:
            return memo[j]
        rel = "miss"
        # The cache key carries the query focal length: the same photo pair with other intrinsics differs.
        qk = f"{query_key}@{focal35 or 0:g}" if query_key is not None else None
        if cache is not None and qk is not None and gallery_keys is not None:
            rel = cache.get(qk, gallery_keys[j])
        if isinstance(rel, str):
            pq, pg = match(j)
            rel = relative_pose(pg, pq, self.cameras.K(j), Kq, self.cfg.pose)
            if cache is not None and qk is not None and gallery_keys is not None:
                cache.put(qk, gallery_keys[j], rel)
        if memo is not None:
            memo[j] = rel
        return rel

    def parallax(self, match: Callable[[int], tuple[np.ndarray, np.ndarray]], query_size: tuple[int, int],
                 focal35: float | None, verified: dict[int, int], n: int = 2, cache: PoseCache | None = None,
                 query_key: str | None = None, gallery_keys: Sequence[str] | None = None,
                 memo: dict | None = None) -> list[float]:
        """Parallax in degrees (pose.relative_pose: residual of a pure-rotation fit) of the query with each of
        its n most strongly verified gallery photos, heading known or not; inf where no pose was found.

        Small parallax means the two cameras stood at nearly one place relative to the scene's depth (or the
        scene is far): the evidence rerank reads to call an answer recognised (localization/answers.py).
        """
        order = sorted(verified, key=lambda j: -verified[j])[:n]
        Kq = intrinsics(*query_size, focal35)
        out = []
        for j in order:
            rel = self.relative(match, j, Kq, focal35, cache, query_key, gallery_keys, memo)
            out.append(float(rel.parallax_deg) if rel is not None else float("inf"))
        return out

    def locate(self, match: Callable[[int], tuple[np.ndarray, np.ndarray]], query_size: tuple[int, int],
               focal35: float | None, verified: dict[int, int], cache: PoseCache | None = None,
               query_key: str | None = None, gallery_keys: Sequence[str] | None = None,
               memo: dict | None = None) -> CameraEstimate:
        """verified: gallery index -> inlier count of the photos verification accepted for this query; memo: as
        in `relative` (the same dict for one query's parallax and locate)."""
        cams = self.cameras
        order = sorted((j for j in verified if np.isfinite(cams.heading[j])), key=lambda j: -verified[j])
        order = order[: self.cfg.max_views]
        if not order:
            return CameraEstimate(None, None)
        Kq = intrinsics(*query_size, focal35)
        views: list[ViewConstraint] = []
        used: list[int] = []
        for j in order:
            rel = self.relative(match, j, Kq, focal35, cache, query_key, gallery_keys, memo)
            if rel is None:
                continue
            views.append(view_constraint(rel, cams.en[j], float(cams.heading[j]), self.cfg.pose))
            used.append(j)
        if not views:
            return CameraEstimate(None, None)
        fix = place_camera(views, self.cfg.pose)
        if fix is not None:
            return CameraEstimate(fix.heading_deg, fix, [used[i] for i in fix.support])
        hd = combine_headings([v.heading_deg for v in views], [v.weight for v in views], self.cfg.pose.heading_agree_deg)
        return CameraEstimate(hd[0] if hd else None, None, [used[i] for i in hd[1]] if hd else [])
