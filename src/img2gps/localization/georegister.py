"""Georegistration: the similarity transform (scale, rotation, translation) that maps one point set onto another.

Used to put a structure-from-motion reconstruction (arbitrary frame and scale) into the local east/north/up
metres of the gallery's GPS positions. Phone GPS is 5-10 m noisy, so the fit is RANSAC over minimal sets of
three non-collinear correspondences with a metre threshold, then a least-squares refit on the inliers.
Source: S. Umeyama, "Least-squares estimation of transformation parameters between two point patterns",
IEEE PAMI 13(4), 1991.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarity:
    """dst ~= scale * R @ src + t for points in rows: apply(src (N, D)) -> (N, D)."""

    scale: float
    R: np.ndarray  # (D, D) proper rotation
    t: np.ndarray  # (D,)
    inliers: np.ndarray | None = None  # (N,) bool mask of the correspondences that agreed (robust fit)
    rms_m: float = float("nan")  # RMS residual of the inliers, in dst units

    def apply(self, src) -> np.ndarray:
        src = np.asarray(src, float)
        return self.scale * src @ self.R.T + self.t


def umeyama(src, dst, with_scale: bool = True) -> Similarity:
    """Least-squares similarity from src (N, D) to dst (N, D), N >= D. Raises ValueError on bad shapes or
    degenerate (all-coincident) input."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    if src.shape != dst.shape or src.ndim != 2 or len(src) < 2:
        raise ValueError(f"need two (N, D) arrays of equal shape with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = float((xs ** 2).sum() / len(src))
    if var_s <= 1e-12:
        raise ValueError("source points coincide: no transform is determined")
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1, -1] = -1.0  # reflection -> nearest proper rotation
    R = U @ D @ Vt
    scale = float(np.trace(np.diag(S) @ D) / var_s) if with_scale else 1.0
    t = mu_d - scale * R @ mu_s
    res = np.linalg.norm(scale * src @ R.T + t - dst, axis=1)
    return Similarity(scale, R, t, np.ones(len(src), bool), float(np.sqrt(np.mean(res ** 2))))


def _non_collinear(p: np.ndarray, min_ratio: float) -> bool:
    """True when three points span a real triangle: second singular value / first >= min_ratio."""
    s = np.linalg.svd(p - p.mean(0), compute_uv=False)
    return s[0] > 1e-9 and s[1] / s[0] >= min_ratio


def robust_similarity(src, dst, threshold_m: float = 12.0, iters: int = 500, seed: int = 42,
                      min_inliers: int = 3, min_spread: float = 0.1) -> Similarity:
    """RANSAC similarity src -> dst: minimal sets of 3 non-collinear points, inliers within threshold_m (dst
    units; 12 m suits 5-10 m phone GPS), the largest consensus refit by Umeyama (and re-scored once).

    Collinearity is judged in src (the reconstruction) and dst (the GPS) by min_spread, the ratio of the two
    largest singular values of the triple. Raises ValueError when fewer than 3 points, or no non-collinear
    triple gathers min_inliers inliers.
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    n = len(src)
    if src.shape != dst.shape or src.ndim != 2 or n < 3:
        raise ValueError(f"georegistration needs >= 3 corresponding points, got {n}")
    rng = np.random.default_rng(seed)
    best_mask, best_cost = None, np.inf
    for _ in range(iters):
        idx = rng.choice(n, 3, replace=False)
        if not (_non_collinear(src[idx], min_spread) and _non_collinear(dst[idx], min_spread)):
            continue
        try:
            T = umeyama(src[idx], dst[idx])
        except ValueError:
            continue
        r = np.linalg.norm(T.apply(src) - dst, axis=1)
        # MSAC cost: inliers pay their squared residual, outliers the threshold's square.
        cost = float(np.minimum(r, threshold_m).__pow__(2).sum())
        if cost < best_cost:
            best_cost, best_mask = cost, r <= threshold_m
    if best_mask is None or best_mask.sum() < min_inliers:
        raise ValueError(f"no 3 non-collinear positions agree within {threshold_m:g} m "
                         f"({n} correspondences): cannot georegister")
    T = umeyama(src[best_mask], dst[best_mask])
    mask = np.linalg.norm(T.apply(src) - dst, axis=1) <= threshold_m
    if mask.sum() >= max(min_inliers, best_mask.sum()):
        T = umeyama(src[mask], dst[mask])
        best_mask = mask
    r = np.linalg.norm(T.apply(src[best_mask]) - dst[best_mask], axis=1)
    return Similarity(T.scale, T.R, T.t, best_mask, float(np.sqrt(np.mean(r ** 2))))
