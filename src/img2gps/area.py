"""A gallery's area: where its photos were taken, defined once for every part of img2gps.

A gallery may cover several far-apart places (two campuses on two continents). Its photos are split into **areas**:
two photos belong to one area when a chain of gallery photos links them with no step longer than `AREA_GAP_M`
(single-linkage clustering). Positions are first snapped to a grid of `AREA_GAP_M / 8` cells, so the split costs
O(cells) and the gap is honoured to within one cell's diagonal (about 0.35 km at the default 2 km gap).

Within an area, its **region** is the convex hull of its photos' positions in the area's own metric frame
(`geo.LocalFrame` around the area's photos). The hull, not a bounding box, so an L-shaped campus does not claim
the empty corner. "Points spread over the gallery's area" (`Area.sample`) are drawn uniformly inside that hull;
`Area.distance_m` is 0 inside it and the distance to its boundary outside. `Area.size_m` is the hull's diameter.
An area with one distinct position, or with all positions on a line, has a degenerate hull: the points (or the
segment) themselves.

Methods work in a gallery's **plane** (`GalleryPlane`): each area in its own metric frame, the areas laid side by
side `AREA_SPACING_M` apart, so every distance within an area is exact and no two areas come within any radius
the code uses (neighbour lists, same-spot and hold-out exclusions, consensus clusters). An answer is computed from
one area's photos and mapped back through that area's frame: it lies in one area, never between two.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geo import LocalFrame, bbox_of, haversine_m
from .outputs import counted

AREA_GAP_M = 2000.0  # photos farther apart than this (with nothing between) are different places
# east offset (m) between two areas on a gallery's plane: far beyond any area's size or any radius img2gps uses
AREA_SPACING_M = 1.0e7
FLAT_MAX_M = 50_000.0  # beyond this from an area's centre its flat east/north frame is off by over ~0.1%: use the sphere
# A photo whose own GPS lies farther from an area than the area's size plus this margin was not taken where
# img2gps can place it. The size: a photo taken from outside the region may still show it (a campus seen from
# across the street), but not from farther away than the region is wide. The margin: a phone fix's own error
# (penn91's phones report 5.7-22 m; a coarse Wi-Fi or cell fix is reported at 65 m or more), so a good photo
# with a poor fix is not called foreign.
OUTSIDE_MARGIN_M = 100.0


@dataclass(frozen=True)
class Area:
    """One area of a gallery. hull_en: (M, 2) hull vertices in east/north metres of `frame`, counter-clockwise
    (M = 1 or 2 for a degenerate area); rows: indices of the gallery photos in this area."""

    frame: LocalFrame
    hull_en: np.ndarray
    rows: np.ndarray

    @property
    def n_photos(self) -> int:
        return int(len(self.rows))

    @property
    def centre(self) -> tuple[float, float]:
        """(lat, lon) of the frame's origin: the mean position of the area's photos."""
        return float(self.frame.lat0), float(self.frame.lon0)

    @property
    def size_m(self) -> float:
        """Diameter of the region in metres (0 for a single position)."""
        h = self.hull_en
        if len(h) < 2:
            return 0.0
        return float(np.max(np.linalg.norm(h[:, None, :] - h[None, :, :], axis=-1)))

    @property
    def region_m2(self) -> float:
        """Area of the region in square metres (0 for a degenerate region)."""
        h = self.hull_en
        if len(h) < 3:
            return 0.0
        return float(0.5 * abs(_cross(h, np.roll(h, -1, axis=0)).sum()))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(lat_min, lon_min, lat_max, lon_max) of the region (geo.bbox_of convention across +-180)."""
        lat, lon = self.frame.to_latlon(self.hull_en)
        return bbox_of(np.atleast_1d(lat), np.atleast_1d(lon))

    def distance_m(self, lat, lon) -> np.ndarray:
        """Metres from each (lat, lon) to the region: 0 inside the hull. Shape of np.broadcast(lat, lon). Points
        farther than FLAT_MAX_M from the area's centre, where the flat frame no longer holds, are measured on the
        sphere to the nearest hull vertex (within the region's size of the exact distance)."""
        la, lo = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
        shape, la, lo = la.shape, la.reshape(-1), lo.reshape(-1)
        out = _distance_to_polygon(np.atleast_2d(self.frame.to_en(la, lo)).reshape(-1, 2), self.hull_en)
        far = haversine_m(self.frame.lat0, self.frame.lon0, la, lo) > FLAT_MAX_M
        if far.any():
            hl, ho = self.frame.to_latlon(self.hull_en)
            d = haversine_m(la[far, None], lo[far, None], np.atleast_1d(hl)[None, :], np.atleast_1d(ho)[None, :])
            out[far] = d.min(1)
        return out.reshape(shape)

    def contains(self, lat, lon, margin_m: float = 0.0) -> np.ndarray:
        """True where (lat, lon) lies in the region or within margin_m metres of it."""
        return self.distance_m(lat, lon) <= margin_m + 1e-6

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n points (lat, lon), uniform over the region (a fan triangulation of the hull, each triangle drawn by
        its area); along the segment or at the point for a degenerate region."""
        rng = np.random.default_rng(seed)
        h = self.hull_en
        if len(h) == 1:
            en = np.repeat(h, n, axis=0)
        elif len(h) == 2:
            t = rng.random(n)[:, None]
            en = h[0] + t * (h[1] - h[0])
        else:
            a, b, c = h[0], h[1:-1], h[2:]
            areas = 0.5 * np.abs(_cross(b - a, c - a))
            tri = rng.choice(len(areas), size=n, p=areas / areas.sum())
            u, v = rng.random(n), rng.random(n)
            flip = u + v > 1
            u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
            en = a + u[:, None] * (b[tri] - a) + v[:, None] * (c[tri] - a)
        lat, lon = self.frame.to_latlon(en)
        return np.asarray(lat, float), np.asarray(lon, float)


def split_areas(lat, lon, gap_m: float = AREA_GAP_M) -> list[Area]:
    """The areas of a gallery of N photos at (lat, lon) degrees, largest first (by photo count). Every photo is
    in exactly one area. Raises ValueError for an empty gallery or non-finite positions."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    lat, lon = np.asarray(lat, float).reshape(-1), np.asarray(lon, float).reshape(-1)
    if not len(lat) or not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ValueError("a gallery's area needs at least one photo with a finite position")
    # unit-sphere points: chord distance ~ arc distance at these scales, and no frame breaks across +-180
    la, lo = np.radians(lat), np.radians(lon)
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    cell = gap_m / 8.0 / 6_371_008.8
    cells, inverse = np.unique(np.round(xyz / cell).astype(np.int64), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    pairs = cKDTree(cells * cell).query_pairs(gap_m / 6_371_008.8, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(cells),) * 2)
    _, cell_label = connected_components(graph, directed=False)
    label = cell_label[inverse]
    out = []
    for lab in np.unique(label):
        rows = np.flatnonzero(label == lab)
        frame = LocalFrame.around(lat[rows], lon[rows])
        out.append(Area(frame, _hull(frame.to_en(lat[rows], lon[rows])), rows))
    return sorted(out, key=lambda a: -a.n_photos)


def nearest_area(areas: list[Area], lat: float, lon: float) -> int:
    """Index in `areas` of the area whose region is nearest to (lat, lon) (0 m when inside one)."""
    d = [float(a.distance_m(lat, lon)) for a in areas]
    return int(np.argmin(d))


def outside_m(areas: list[Area], lat: float, lon: float, margin_m: float = OUTSIDE_MARGIN_M) -> float | None:
    """Metres from (lat, lon) to the nearest area's region when that is more than the area's size plus margin_m
    (the position is far outside every area: see OUTSIDE_MARGIN_M), else None."""
    if not areas or not (np.isfinite(lat) and np.isfinite(lon)):
        return None
    a = areas[nearest_area(areas, lat, lon)]
    d = float(a.distance_m(lat, lon))
    return d if d > a.size_m + margin_m else None


def area_point_distances_m(lat, lon, n: int = 2000, seed: int = 0) -> np.ndarray:
    """(n,) metres from points spread over a gallery's areas (Area.sample; each area gets points in proportion to
    its photos) to the nearest gallery photo at (lat, lon): how far a photo taken anywhere in the area stands
    from the gallery (the prediction-to-sample distances of kNNDM, Linnenbrink et al., GMD 2024)."""
    from scipy.spatial import cKDTree

    lat, lon = np.asarray(lat, float).reshape(-1), np.asarray(lon, float).reshape(-1)
    areas = split_areas(lat, lon)
    out = []
    for i, a in enumerate(areas):
        m = max(1, int(round(n * a.n_photos / len(lat))))
        plat, plon = a.sample(m, seed + i)
        tree = cKDTree(a.frame.to_en(lat[a.rows], lon[a.rows]).reshape(-1, 2))
        out.append(tree.query(np.asarray(a.frame.to_en(plat, plon)).reshape(-1, 2))[0])
    return np.concatenate(out)


def describe(areas: list[Area]) -> list[str]:
    """One line per area for `data build` and `fit` reports: photos, size and centre."""
    return [f"area {i + 1}: {counted(a.n_photos, 'photo')}, {a.size_m:.0f} m across, centre {a.centre[0]:.5f}, "
            f"{a.centre[1]:.5f}" for i, a in enumerate(areas)]


@dataclass(frozen=True)
class GalleryPlane:
    """A gallery's N photos in metres, each area in its own frame: area i's east/north metres (of `areas[i].frame`)
    shifted i x AREA_SPACING_M east. label: (N,) area index of each photo; en: (N, 2) their plane metres. With one
    area the plane is that area's frame (LocalFrame.around all photos). A position is mapped back through the frame
    of the area it lies in, so whatever averages positions must average one area's photos only (`rows`)."""

    areas: tuple[Area, ...]
    label: np.ndarray
    en: np.ndarray

    @classmethod
    def of(cls, lat, lon, gap_m: float = AREA_GAP_M) -> "GalleryPlane":
        """The plane of a gallery at (lat, lon) degrees ((N,) each). Raises ValueError as split_areas."""
        lat, lon = np.asarray(lat, float).reshape(-1), np.asarray(lon, float).reshape(-1)
        areas = tuple(split_areas(lat, lon, gap_m))
        label = np.zeros(len(lat), int)
        en = np.zeros((len(lat), 2))
        for i, a in enumerate(areas):
            label[a.rows] = i
            en[a.rows] = a.frame.to_en(lat[a.rows], lon[a.rows]) + (i * AREA_SPACING_M, 0.0)
        return cls(areas, label, en)

    @property
    def n_areas(self) -> int:
        return len(self.areas)

    def rows(self, area: int) -> np.ndarray:
        """Indices of the photos in area `area`."""
        return np.flatnonzero(self.label == area)

    def area_en(self, area: int) -> np.ndarray:
        """(M, 2) east/north metres of area `area`'s photos in that area's own frame (areas[area].frame)."""
        return self.en[self.rows(area)] - (area * AREA_SPACING_M, 0.0)

    def area_at(self, en) -> np.ndarray:
        """Area index of each plane position en (..., 2): the area whose strip it lies in."""
        return np.clip(np.round(np.asarray(en, float)[..., 0] / AREA_SPACING_M), 0, self.n_areas - 1).astype(int)

    def distance_m(self, a, b) -> float:
        """Metres between plane positions a and b (2,): in the frame within one area, great-circle between two."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        if self.area_at(a) == self.area_at(b):
            return float(np.linalg.norm(a - b))
        return float(haversine_m(*self.to_latlon(a), *self.to_latlon(b)))

    def to_latlon(self, en) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees of plane positions en (..., 2), each through the frame of the area it lies in."""
        en = np.asarray(en, float)
        a = self.area_at(en)
        if self.n_areas == 1:
            return self.areas[0].frame.to_latlon(en)
        if a.ndim == 0:
            return self.areas[int(a)].frame.to_latlon(en - (int(a) * AREA_SPACING_M, 0.0))
        lat, lon = np.zeros(a.shape), np.zeros(a.shape)
        for i in np.unique(a):
            m = a == i
            lat[m], lon[m] = self.areas[i].frame.to_latlon(en[m] - (i * AREA_SPACING_M, 0.0))
        return lat, lon


def _hull(en: np.ndarray) -> np.ndarray:
    """Convex hull vertices (counter-clockwise) of (N, 2) points; the distinct point or the extreme segment when
    the points are one position or collinear (Andrew's monotone chain: no Qhull precision errors)."""
    pts = np.unique(np.round(np.asarray(en, float), 6), axis=0)
    if len(pts) <= 2:
        return pts
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    pts = pts[order]

    def half(points):
        chain = []
        for p in points:
            while len(chain) >= 2 and _cross(chain[-1] - chain[-2], p - chain[-2]) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    if len(hull) < 3:  # collinear: the two extreme points
        return np.array([pts[0], pts[-1]])
    return hull


def _distance_to_polygon(p: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """(N,) metres from points p (N, 2) to a convex polygon (counter-clockwise), a segment or a point."""
    if len(hull) == 1:
        return np.linalg.norm(p - hull[0], axis=1)
    a, b = hull, np.roll(hull, -1, axis=0)
    if len(hull) == 2:
        a, b = hull[:1], hull[1:]
    ab = b - a
    t = np.clip(((p[:, None, :] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(p[:, None, :] - (a + t[..., None] * ab), axis=-1).min(1)
    if len(hull) >= 3:
        inside = (_cross(ab[None, :, :], p[:, None, :] - a[None, :, :]) >= -1e-9).all(1)
        d[inside] = 0.0
    return d



def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z of the cross product of 2-d vectors (..., 2): positive when v turns counter-clockwise from u."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
