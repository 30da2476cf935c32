"""Where the query camera stood and where it faced, from its two-view geometry with verified gallery photos.

Frames: the world is local east/north/up metres (geo.LocalFrame plus up); a camera uses OpenCV axes (x right,
y down, z forward) with X_cam = R (X_world - C). Gallery cameras are taken as level (pitch = roll = 0: phone
photos of buildings are held nearly upright) facing their compass heading (EXIF GPSImgDirection or an SfM pose).

Per verified gallery photo g: the essential matrix of the matched keypoints (RANSAC on normalised coordinates)
-> recoverPose gives the query's rotation R and translation direction t relative to g (X_q = R X_g + t) ->
* heading: the query's optical axis in the world, R_g^T R^T z, as a compass bearing;
* a ray: the query centre lies on C_g + s * R_g^T (-R^T t), s > 0 (the scale is unknown from one pair);
* when the pair has almost no parallax (the query stood where g stood, or the scene is a far plane) the
  translation is noise: the view then says "near C_g" instead of giving a ray.
Two or more such constraints from gallery photos at distinct positions place the query (robust, inlier-weighted
least squares in east/north). Sources: Hartley & Zisserman, Multiple View Geometry (2nd ed.), ch. 9 and 12;
Nister, "An efficient solution to the five-point relative pose problem" (PAMI 2004), as implemented by OpenCV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

FULL_FRAME_DIAGONAL_MM = 43.27  # 36 x 24 mm film: "35 mm equivalent" focal lengths refer to this diagonal
DEFAULT_FOCAL35_MM = 26.0  # a phone's main camera (iPhone 13/14: 26 mm; Galaxy A31: 26 mm), ~67 deg across 4:3
# Without EXIF the real focal length may be longer than the default: a square crop keeping 55% of the short side
# (the bench's crop kind) is ~2.1x the default, a phone's 2x telephoto 2x; 2.5x bounds both
UNKNOWN_FOCAL_MAX_ZOOM = 2.5


@dataclass(frozen=True)
class PoseConfig:
    ransac_px: float = 1.5  # essential-matrix RANSAC threshold in pixels (converted with the focal length)
    min_inliers: int = 15  # fewer essential-matrix inliers than this: no pose from the pair
    min_parallax_deg: float = 1.5  # median triangulation angle below this: the translation is not trusted
    min_ray_angle_deg: float = 12.0  # two rays crossing at a smaller angle do not fix a position
    min_sep_m: float = 3.0  # two constraints from gallery cameras closer than this count as one place
    robust_m: float = 8.0  # Cauchy scale of the position fit (phone GPS noise of the gallery positions)
    max_range_m: float = 150.0  # a fix farther than this from every gallery camera used is rejected
    heading_agree_deg: float = 20.0  # heading votes within this of the winner are averaged


def focal_px(width: int, height: int, focal35: float | None = None) -> float:
    """Focal length in pixels of a width x height image from its 35 mm-equivalent focal length (mm).

    Equivalence is by the diagonal (CIPA DC-008): f_px = f35 / 43.27 mm * image diagonal in pixels. Without
    focal35 (no EXIF), DEFAULT_FOCAL35_MM is assumed. Raises ValueError for an empty image size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} has no pixels")
    f35 = float(focal35) if focal35 is not None and np.isfinite(focal35) and focal35 > 0 else DEFAULT_FOCAL35_MM
    return f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)


def copy_focal35(pq: np.ndarray, pj: np.ndarray, query_size: tuple[int, int], gallery_size: tuple[int, int],
                 gallery_focal35: float | None, min_share: float = 0.8, px: float = 2.0,
                 max_turn_deg: float = 2.0) -> float | None:
    """The 35 mm-equivalent focal length (mm) of a query that is a scaled, cropped copy of a gallery photo (the
    photo found inside a screenshot, a square tile of it), or None when it is not one.

    pq, pj: (M, 2) matched pixels in the query and the gallery photo (sizes (w, h)). A copy maps the gallery photo
    onto the query by one scale s and a shift: when a RANSAC similarity fit (OpenCV estimateAffinePartial2D, `px`
    pixels) keeps at least min_share of the matches and turns by under max_turn_deg, the query's focal length in
    pixels is s times the gallery's, which gives its 35 mm equivalent by its own diagonal. Without this, a square
    crop of a 3:4 photo would be given the default focal length of its narrower diagonal (15% short), and its
    pair with its own original would look like a zoom, not a pure rotation."""
    if len(pq) < 8:
        return None
    M, keep = cv2.estimateAffinePartial2D(np.asarray(pj, np.float32), np.asarray(pq, np.float32), method=cv2.RANSAC,
                                          ransacReprojThreshold=px)
    if M is None or keep is None or keep.sum() < min_share * len(pq):
        return None
    s = math.hypot(M[0, 0], M[1, 0])
    if s <= 0 or abs(math.degrees(math.atan2(M[1, 0], M[0, 0]))) > max_turn_deg:
        return None
    return s * focal_px(*gallery_size, gallery_focal35) * FULL_FRAME_DIAGONAL_MM / math.hypot(*query_size)


def unknown_focal_margin_deg(width: int, height: int, max_zoom: float = UNKNOWN_FOCAL_MAX_ZOOM) -> float:
    """Degrees to add to a heading radius when the query's focal length is assumed (no EXIF): half the field of
    view across the long side at DEFAULT_FOCAL35_MM minus the same at max_zoom times it. A verified pair's
    relative yaw reads the direction of the matched content through the focal length, so a wrong one turns it by
    up to this much for content at the edge of the frame. Depends on the aspect only; ValueError for no pixels."""
    half = max(width, height) / 2.0
    wide = math.degrees(math.atan(half / focal_px(width, height, DEFAULT_FOCAL35_MM)))
    narrow = math.degrees(math.atan(half / focal_px(width, height, DEFAULT_FOCAL35_MM * max_zoom)))
    return wide - narrow


def intrinsics(width: int, height: int, focal35: float | None = None) -> np.ndarray:
    """3x3 pinhole matrix K (square pixels, principal point at the image centre)."""
    f = focal_px(width, height, focal35)
    return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1.0]])


def level_rotation(heading_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """World(ENU)->camera rotation of a camera facing compass `heading_deg`, tilted up by pitch, rolled by roll."""
    h, p, r = np.radians([heading_deg, pitch_deg, roll_deg])
    fwd = np.array([np.sin(h) * np.cos(p), np.cos(h) * np.cos(p), np.sin(p)])
    right = np.array([np.cos(h), -np.sin(h), 0.0])
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
    if r:
        c, s = np.cos(r), np.sin(r)
        R = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]]) @ R
    return R


def bearing_deg(v) -> float:
    """Compass bearing (0 = north, clockwise, [0, 360)) of an east/north(/up) vector."""
    return float(np.degrees(np.arctan2(v[0], v[1])) % 360.0)


def angle_diff_deg(a, b) -> np.ndarray:
    """Smallest absolute difference between compass angles, in [0, 180]."""
    d = (np.asarray(a, float) - np.asarray(b, float)) % 360.0
    return np.minimum(d, 360.0 - d)


def rotation_only(ng: np.ndarray, nq: np.ndarray, thr: float, min_inliers: int) -> "RelativePose | None":
    """The pure rotation (Kabsch, refit twice on the matches it explains within 3 thr radians) relating the
    normalised points ng -> nq (N, 2) each; None unless it explains at least min_inliers of them."""
    rg = np.c_[ng, np.ones(len(ng))]
    rq = np.c_[nq, np.ones(len(nq))]
    rg /= np.linalg.norm(rg, axis=1, keepdims=True)
    rq /= np.linalg.norm(rq, axis=1, keepdims=True)
    keep = np.ones(len(rg), bool)
    for _ in range(3):
        if keep.sum() < 3:
            return None
        U, _, Vt = np.linalg.svd(rq[keep].T @ rg[keep])
        R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
        res = np.arccos(np.clip((rg @ R.T * rq).sum(1), -1, 1))
        keep = res <= 3 * thr
    if keep.sum() < max(min_inliers, 3):
        return None
    return RelativePose(R, np.zeros(3), int(keep.sum()), float(np.degrees(np.median(res[keep]))))


@dataclass
class RelativePose:
    R: np.ndarray  # (3, 3): X_query = R X_gallery + t
    t: np.ndarray  # (3,) unit translation direction
    inliers: int
    parallax_deg: float  # median angular residual of the inliers under a pure rotation (degrees)


def relative_pose(pts_gallery: np.ndarray, pts_query: np.ndarray, K_gallery: np.ndarray, K_query: np.ndarray,
                  cfg: PoseConfig = PoseConfig(), seed: int = 0) -> RelativePose | None:
    """Two-view pose from matched pixel coordinates (N, 2) each; None when too few points or inliers.

    The points are normalised with each camera's K so the two cameras may differ; the RANSAC threshold is
    ransac_px divided by the mean focal length.
    """
    pg, pq = np.asarray(pts_gallery, np.float64).reshape(-1, 2), np.asarray(pts_query, np.float64).reshape(-1, 2)
    if len(pg) != len(pq) or len(pg) < max(8, cfg.min_inliers):
        return None
    ng = cv2.undistortPoints(pg.reshape(-1, 1, 2), K_gallery, None).reshape(-1, 2)
    nq = cv2.undistortPoints(pq.reshape(-1, 1, 2), K_query, None).reshape(-1, 2)
    thr = cfg.ransac_px / (0.5 * (K_gallery[0, 0] + K_query[0, 0]))
    cv2.setRNGSeed(seed)
    try:
        E, mask = cv2.findEssentialMat(ng, nq, np.eye(3), method=cv2.USAC_ACCURATE, prob=0.999, threshold=thr)
    except cv2.error:
        E, mask = None, None
    if E is None or mask is None or E.shape != (3, 3) or mask.sum() < cfg.min_inliers:
        # Degenerate for the essential matrix: the same photo (every match at its own place), a pure rotation or
        # a plane. A rotation that explains the matches is then the answer: parallax ~0, the query stood there.
        return rotation_only(ng, nq, thr, cfg.min_inliers)
    mask = mask.ravel().astype(bool)
    # Pure-rotation fit of the inlier rays (Kabsch): its angular residual is the pair's parallax. With little
    # parallax (same spot, or a far scene) the essential matrix's translation is noise, but this rotation holds.
    rg = np.c_[ng[mask], np.ones(mask.sum())]
    rq = np.c_[nq[mask], np.ones(mask.sum())]
    rg /= np.linalg.norm(rg, axis=1, keepdims=True)
    rq /= np.linalg.norm(rq, axis=1, keepdims=True)
    U, _, Vt = np.linalg.svd(rq.T @ rg)
    R_rot = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt  # rq ~= R_rot rg
    parallax = float(np.degrees(np.median(np.arccos(np.clip((rg @ R_rot.T * rq).sum(1), -1, 1)))))
    if parallax < cfg.min_parallax_deg:
        return RelativePose(R_rot, np.zeros(3), int(mask.sum()), parallax)
    try:
        n, R, t, _ = cv2.recoverPose(E, ng[mask], nq[mask], np.eye(3))
    except cv2.error:
        return None
    if n < cfg.min_inliers:
        return None
    return RelativePose(R, t.ravel() / max(np.linalg.norm(t), 1e-12), int(n), parallax)


@dataclass
class ViewConstraint:
    """What one verified gallery photo says about the query: its heading, and a ray or a point in east/north."""

    position_en: np.ndarray  # (2,) the gallery camera's east/north metres
    heading_deg: float  # the query's optical axis bearing implied by this pair
    ray_en: np.ndarray | None  # (2,) unit direction from the gallery camera towards the query; None = "near it"
    weight: float  # evidence (inlier count)


def view_constraint(rel: RelativePose, gallery_en, gallery_heading_deg: float,
                    cfg: PoseConfig = PoseConfig()) -> ViewConstraint:
    """Turn one relative pose with a level gallery camera of known heading into a world-frame constraint."""
    Rg = level_rotation(gallery_heading_deg)
    fwd_q = Rg.T @ rel.R.T @ np.array([0.0, 0.0, 1.0])
    ray = None
    if rel.parallax_deg >= cfg.min_parallax_deg:
        d = Rg.T @ (-rel.R.T @ rel.t)
        if np.linalg.norm(d[:2]) > 0.3:  # a mostly vertical baseline says nothing about east/north
            ray = d[:2] / np.linalg.norm(d[:2])
    return ViewConstraint(np.asarray(gallery_en, float).reshape(2), bearing_deg(fwd_q), ray, float(rel.inliers))


@dataclass
class PoseFix:
    en: np.ndarray  # (2,) the query camera's east/north metres
    heading_deg: float | None
    spread_m: float  # weighted RMS residual of the constraints used (metres)
    n_views: int  # constraints that agree with the fix
    support: list[int]  # their indices into the input


def combine_headings(headings: Sequence[float], weights: Sequence[float],
                     agree_deg: float = 20.0) -> tuple[float, list[int]] | None:
    """Robust weighted circular mean: the heading with the most weight within agree_deg, averaged over those."""
    h = np.asarray(headings, float)
    w = np.asarray(weights, float)
    if len(h) == 0:
        return None
    near = angle_diff_deg(h[:, None], h[None, :]) <= agree_deg
    seed = int(np.argmax(near @ w))
    members = np.flatnonzero(near[seed])
    r = np.radians(h[members])
    mean = math.degrees(math.atan2((w[members] * np.sin(r)).sum(), (w[members] * np.cos(r)).sum())) % 360.0
    return mean, [int(i) for i in members]


def _residuals(x: np.ndarray, views: Sequence[ViewConstraint]) -> np.ndarray:
    out = np.empty(len(views))
    for i, v in enumerate(views):
        d = x - v.position_en
        if v.ray_en is None:
            out[i] = np.linalg.norm(d)
        else:
            s = float(d @ v.ray_en)
            out[i] = abs(d[0] * v.ray_en[1] - d[1] * v.ray_en[0]) if s > 0 else np.linalg.norm(d)
    return out


def _irls(x: np.ndarray, views: Sequence[ViewConstraint], scale: float, iters: int = 20) -> np.ndarray:
    """Weighted least squares on the constraint lines/points with Cauchy weights (a few re-weightings)."""
    w0 = np.array([v.weight for v in views])
    for _ in range(iters):
        r = _residuals(x, views)
        w = w0 / (1.0 + (r / scale) ** 2)
        A = np.zeros((2, 2))
        b = np.zeros(2)
        for v, wi in zip(views, w):
            if v.ray_en is None or float((x - v.position_en) @ v.ray_en) <= 0:
                P = np.eye(2)  # point constraint (or a ray seen from behind): pull towards the camera
            else:
                n = np.array([-v.ray_en[1], v.ray_en[0]])
                P = np.outer(n, n)
            A += wi * P
            b += wi * P @ v.position_en
        try:
            x_new = np.linalg.solve(A + 1e-9 * np.eye(2), b)
        except np.linalg.LinAlgError:
            break
        if np.linalg.norm(x_new - x) < 1e-3:
            return x_new
        x = x_new
    return x


def _intersect(a: ViewConstraint, b: ViewConstraint) -> np.ndarray | None:
    """Crossing point of two forward rays (None when parallel or behind either camera)."""
    M = np.c_[a.ray_en, -b.ray_en]
    if abs(np.linalg.det(M)) < 1e-9:
        return None
    s = np.linalg.solve(M, b.position_en - a.position_en)
    if s[0] <= 0 or s[1] <= 0:
        return None
    return a.position_en + s[0] * a.ray_en


def place_camera(views: Sequence[ViewConstraint], cfg: PoseConfig = PoseConfig()) -> PoseFix | None:
    """Query camera position (and heading) from >= 2 constraints of gallery cameras at distinct positions.

    Candidates: every pairwise crossing of two rays that meet at >= min_ray_angle_deg, and every "near" point.
    The candidate with the most inlier weight (residual <= 2 * robust_m) wins and is refined by robust
    least squares. None when the geometry cannot fix a position (all cameras at one place, parallel rays).
    """
    views = list(views)
    if len(views) < 2:
        return None
    P = np.array([v.position_en for v in views])
    if np.max(np.linalg.norm(P[:, None] - P[None], axis=-1)) < cfg.min_sep_m:
        return None
    cands: list[np.ndarray] = []
    for i in range(len(views)):
        if views[i].ray_en is None:
            cands.append(views[i].position_en.copy())
            continue
        for j in range(i + 1, len(views)):
            vi, vj = views[i], views[j]
            if vj.ray_en is None or np.linalg.norm(vi.position_en - vj.position_en) < cfg.min_sep_m:
                continue
            ang = math.degrees(math.acos(np.clip(abs(float(vi.ray_en @ vj.ray_en)), -1, 1)))
            if ang < cfg.min_ray_angle_deg:
                continue
            x = _intersect(vi, vj)
            if x is not None:
                cands.append(x)
    w = np.array([v.weight for v in views])
    best, best_score = None, -1.0
    for x in cands:
        score = float(w[_residuals(x, views) <= 2 * cfg.robust_m].sum())
        if score > best_score:
            best, best_score = x, score
    if best is None:
        return None
    x = _irls(best, views, cfg.robust_m)
    r = _residuals(x, views)
    inl = np.flatnonzero(r <= 2 * cfg.robust_m)
    # The inliers must come from two distinct places and fix the point: a ray plus a point, or crossing rays.
    if len(inl) < 2 or np.max(np.linalg.norm(P[inl][:, None] - P[inl][None], axis=-1)) < cfg.min_sep_m:
        return None
    if not _determined(x, [views[i] for i in inl], cfg):
        return None
    x = _irls(x, [views[i] for i in inl], np.inf)  # final plain weighted least squares on the inliers only
    r = _residuals(x, views)
    if np.min(np.linalg.norm(P[inl] - x, axis=1)) > cfg.max_range_m:
        return None
    spread = float(np.sqrt((w[inl] * r[inl] ** 2).sum() / w[inl].sum()))
    hd = combine_headings([views[i].heading_deg for i in inl], w[inl], cfg.heading_agree_deg)
    return PoseFix(x, hd[0] if hd else None, spread, int(len(inl)), [int(i) for i in inl])


def _determined(x: np.ndarray, views: Sequence[ViewConstraint], cfg: PoseConfig) -> bool:
    """True when the constraints pin x in both directions: any point, or two rays at a real angle."""
    if any(v.ray_en is None or float((x - v.position_en) @ v.ray_en) <= 0 for v in views):
        return True
    rays = [v.ray_en for v in views]
    return any(math.degrees(math.acos(np.clip(abs(float(a @ b)), -1, 1))) >= cfg.min_ray_angle_deg
               for i, a in enumerate(rays) for b in rays[i + 1:])
