"""Distances and a local metric frame: everything metric happens in east/north metres around the data's centre.

Longitudes wrap at +-180 degrees. Every function here is wrap-aware, and every other module that averages,
subtracts, bins, bounds, clusters or plots longitudes goes through them (LocalFrame, wrap_lon, lon_delta,
mean_lon, lon_in_range, latlon_sd): a gallery that straddles the meridian behaves exactly like one that does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


def wrap_lon(lon):
    """Longitude(s) in degrees mapped into [-180, 180). Scalars stay floats, arrays stay arrays."""
    out = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
    return float(out) if np.ndim(out) == 0 else out


def lon_delta(lon, lon0):
    """Signed east offset lon - lon0 in degrees, the short way round: in [-180, 180)."""
    return wrap_lon(np.asarray(lon, float) - np.asarray(lon0, float))


def mean_lon(lon, weights=None) -> float:
    """Weighted mean longitude in [-180, 180) taken on the circle, so (179.99, -179.99) averages to 180, not 0."""
    lon = np.radians(np.asarray(lon, float).reshape(-1))
    w = np.ones_like(lon) if weights is None else np.asarray(weights, float).reshape(-1)
    s, c = float((w * np.sin(lon)).sum()), float((w * np.cos(lon)).sum())
    if abs(s) < 1e-15 and abs(c) < 1e-15:
        return wrap_lon(float(np.degrees(lon[0]))) if len(lon) else 0.0
    return wrap_lon(float(np.degrees(np.arctan2(s, c))))


def median_lon(lon) -> float:
    """Median longitude, taken as offsets from the circular mean (wrap-aware)."""
    c = mean_lon(lon)
    return wrap_lon(c + float(np.median(lon_delta(lon, c))))


def lon_in_range(lon, lon_min, lon_max) -> np.ndarray:
    """True where lon lies in the eastward interval lon_min -> lon_max (GeoJSON convention: lon_min > lon_max
    means the interval crosses the +-180 meridian). Bounds may also be given unwrapped (e.g. 180.002)."""
    width = float(lon_delta(lon_max, lon_min)) % 360.0
    if width == 0.0 and float(lon_max) != float(lon_min):
        width = 360.0  # a full circle
    off = np.asarray(lon_delta(lon, lon_min), float) % 360.0
    return off <= width + 1e-12


def bbox_of(lat, lon) -> tuple[float, float, float, float]:
    """Smallest (lat_min, lon_min, lat_max, lon_max) holding every point, longitudes in [-180, 180); lon_min >
    lon_max when the box crosses the +-180 meridian (GeoJSON convention). Longitudes are measured as offsets from
    their circular mean, so this is exact for any area narrower than half the globe."""
    lat = np.asarray(lat, float)
    c = mean_lon(lon)
    d = np.asarray(lon_delta(lon, c), float)
    return float(lat.min()), wrap_lon(c + float(d.min())), float(lat.max()), wrap_lon(c + float(d.max()))


def latlon_sd(lat, lon, floor: float = 1e-9) -> tuple[float, float]:
    """Standard deviations (degrees) of latitude and of wrap-aware longitude offsets from their circular mean."""
    lat = np.asarray(lat, float)
    d = lon_delta(lon, mean_lon(lon))
    return max(float(np.std(lat)), floor), max(float(np.std(d)), floor)


def z2_error(pred_lat, pred_lon, true_lat, true_lon, sd: tuple[float, float]):
    """Squared z-scored error summed over latitude and (wrap-aware) longitude; sd from latlon_sd of the training set."""
    dlat = (np.asarray(pred_lat, float) - np.asarray(true_lat, float)) / sd[0]
    dlon = np.asarray(lon_delta(pred_lon, true_lon), float) / sd[1]
    out = dlat ** 2 + dlon ** 2
    return float(out) if np.ndim(out) == 0 else out


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres. The arcsin-of-sqrt form with clipping never produces NaN."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon_delta(lon2, lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular east/north metres around an origin; exact to well under 1 cm over a few km.

    East offsets are taken the short way round the globe, so the frame is continuous across +-180 degrees;
    to_latlon returns longitudes in [-180, 180)."""

    lat0: float
    lon0: float

    @classmethod
    def around(cls, lat, lon) -> "LocalFrame":
        """Frame centred on the mean latitude and the circular mean longitude of the points."""
        lat, lon = np.asarray(lat, float), np.asarray(lon, float)
        return cls(float(np.mean(lat)), mean_lon(lon))

    @property
    def _m_per_deg(self) -> tuple[float, float]:
        m_lat = np.pi / 180 * EARTH_RADIUS_M
        return m_lat * np.cos(np.radians(self.lat0)), m_lat

    def to_en(self, lat, lon) -> np.ndarray:
        """(N, 2) array of east, north metres."""
        mx, my = self._m_per_deg
        e = np.asarray(lon_delta(lon, self.lon0), float) * mx
        n = (np.asarray(lat, float) - self.lat0) * my
        return np.stack([e, n], axis=-1)

    def to_latlon(self, en) -> tuple[np.ndarray, np.ndarray]:
        en = np.asarray(en, float)
        mx, my = self._m_per_deg
        return self.lat0 + en[..., 1] / my, wrap_lon(self.lon0 + en[..., 0] / mx)


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

    en = np.asarray(en, float)
    # no more clusters than distinct positions (photos at one spot share a GPS fix): more would make k-means warn
    # (ConvergenceWarning) and return fewer clusters than asked anyway
    distinct = len(np.unique(np.round(en, 3), axis=0)) if len(en) else 0
    k = max(1, min(k, distinct))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(en)


def format_distance(m: float) -> str:
    """A distance in words, read the same in every output (CLI, API notes, page, maps; server/static/map.js fmtM
    follows the same rule): whole metres below 1 km, km with two decimals below 100 km, whole km with thousands
    separators above ("740 m", "1.25 km", "3,825 km")."""
    m = float(m)
    if m < 1000:
        return f"{m:.0f} m"
    return f"{m / 1000:.2f} km" if m < 100_000 else f"{m / 1000:,.0f} km"
