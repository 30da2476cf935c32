"""Distances and a local metric frame: everything metric happens in east/north metres around the data's centre."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres. The arcsin-of-sqrt form with clipping never produces NaN."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular east/north metres around an origin; exact to well under 1 cm over a few km."""

    lat0: float
    lon0: float

    @classmethod
    def around(cls, lat, lon) -> "LocalFrame":
        lat, lon = np.asarray(lat, float), np.asarray(lon, float)
        return cls(float(np.mean(lat)), float(np.mean(lon)))

    @property
    def _m_per_deg(self) -> tuple[float, float]:
        m_lat = np.pi / 180 * EARTH_RADIUS_M
        return m_lat * np.cos(np.radians(self.lat0)), m_lat

    def to_en(self, lat, lon) -> np.ndarray:
        """(N, 2) array of east, north metres."""
        mx, my = self._m_per_deg
        e = (np.asarray(lon, float) - self.lon0) * mx
        n = (np.asarray(lat, float) - self.lat0) * my
        return np.stack([e, n], axis=-1)

    def to_latlon(self, en) -> tuple[np.ndarray, np.ndarray]:
        en = np.asarray(en, float)
        mx, my = self._m_per_deg
        return self.lat0 + en[..., 1] / my, self.lon0 + en[..., 0] / mx


def weighted_centre(lat, lon, weights=None) -> tuple[float, float]:
    """Weighted mean position, computed in metres so it is valid anywhere (also across the antimeridian)."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    w = np.ones_like(lat) if weights is None else np.clip(np.asarray(weights, float), 0, None)
    if w.sum() <= 0:
        w = np.ones_like(lat)
    frame = LocalFrame(float(lat[0]), float(lon[0]))
    en = frame.to_en(lat, lon)
    c = (en * w[:, None]).sum(0) / w.sum()
    la, lo = frame.to_latlon(c)
    return float(la), float(lo)


def weighted_median_en(en: np.ndarray, weights: np.ndarray, iters: int = 50) -> np.ndarray:
    """Weighted geometric median (Weiszfeld): one wrong look-alike cannot drag it far."""
    en = np.asarray(en, float)
    w = np.clip(np.asarray(weights, float), 1e-12, None)
    x = (en * w[:, None]).sum(0) / w.sum()
    for _ in range(iters):
        d = np.maximum(np.linalg.norm(en - x, axis=1), 1e-6)
        x_new = ((en * (w / d)[:, None]).sum(0)) / (w / d).sum()
        if np.linalg.norm(x_new - x) < 1e-4:
            return x_new
        x = x_new
    return x


def pairwise_m(en_a: np.ndarray, en_b: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix in metres between two sets of east/north points."""
    return np.linalg.norm(np.asarray(en_a)[:, None, :] - np.asarray(en_b)[None, :, :], axis=-1)


def spatial_clusters(en: np.ndarray, k: int, seed: int = 42) -> np.ndarray:
    """k-means labels on east/north metres (used for location-disjoint folds)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(en)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(np.asarray(en, float))
