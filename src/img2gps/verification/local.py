"""Local features and geometric verification: RootSIFT keypoints, mutual ratio-test matching, MAGSAC on F.

Everything a verifier needs is here and nothing else: extraction (with an on-disk per-photo cache keyed by the
photo's content hash and the feature settings), matching, and the inlier count that decides whether two photos
see the same scene. On penn91 loose settings accept look-alikes 80 m apart, so the defaults are strict:
mutual nearest neighbours that also pass Lowe's ratio test, and a 1 px MAGSAC fundamental-matrix fit.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..errors import PhotoError
from ..photos import DECODE_VERSION
from ..features.cache import PairStore, user_cache_dir


@dataclass(frozen=True)
class FeatureConfig:
    max_side: int = 640  # long side the photo is resized to before detection (pixels)
    n_features: int = 1000  # strongest keypoints kept per photo (OpenCV may keep a few more at ties)
    root: bool = True  # RootSIFT (Hellinger kernel): better matching than raw SIFT at no cost

    @property
    def key(self) -> str:
        return f"sift{'root' if self.root else ''}-{self.max_side}-{self.n_features}-v1-decode{DECODE_VERSION}"


@dataclass(frozen=True)
class VerifyConfig:
    ratio: float = 0.8  # Lowe's ratio test on the query side
    mutual: bool = True  # keep a match only when each point is the other's nearest neighbour
    ransac_px: float = 1.0  # MAGSAC threshold in pixels at FeatureConfig.max_side
    min_inliers: int = 15  # fewer fundamental-matrix inliers than this = not verified
    max_iters: int = 2000  # bounds the worst-case cost of one verification


@dataclass
class Keypoints:
    """One photo's keypoints: xy (N, 2) float32 pixels, desc (N, 128) uint8 SIFT, size (w, h) after resizing."""

    xy: np.ndarray
    desc: np.ndarray
    size: tuple[int, int]
    _unit: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.xy)

    def unit_desc(self, root: bool = True) -> np.ndarray:
        """L2-unit float32 descriptors (RootSIFT when root), so squared distance = 2 - 2 * dot product.
        Computed once per object (4x the bytes of desc: keep such objects only in byte-bounded caches that
        account for them, e.g. verification.store.KeypointLRU)."""
        if root not in self._unit:
            d = self.desc.astype(np.float32)
            if root:
                d = np.sqrt(d / np.maximum(d.sum(1, keepdims=True), 1e-7))
            self._unit[root] = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-7)
        return self._unit[root]

    @property
    def nbytes(self) -> int:
        return self.xy.nbytes + self.desc.nbytes + sum(u.nbytes for u in self._unit.values())

    def bare(self) -> "Keypoints":
        """A new object sharing xy and desc, without the derived unit descriptors."""
        return Keypoints(self.xy, self.desc, self.size)


def _gray(image: Image.Image, max_side: int) -> np.ndarray:
    g = np.asarray(image.convert("L"))
    h, w = g.shape
    s = max_side / max(h, w)
    if s < 1:
        # INTER_AREA: the same cheap, alias-free downscale for gallery photos and queries alike.
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return g


def extract(image: Image.Image, cfg: FeatureConfig = FeatureConfig()) -> Keypoints:
    g = _gray(image, cfg.max_side)
    sift = cv2.SIFT_create(nfeatures=cfg.n_features)
    kps, desc = sift.detectAndCompute(g, None)
    if desc is None or not kps:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (g.shape[1], g.shape[0]))
    xy = np.array([k.pt for k in kps], np.float32)
    # OpenCV SIFT descriptors are integers in 0..255 stored as float: uint8 is lossless and 4x smaller.
    return Keypoints(xy, np.clip(np.rint(desc), 0, 255).astype(np.uint8), (g.shape[1], g.shape[0]))


# -- on-disk cache ---------------------------------------------------------------------------------------------
class _Memory:
    """Process-wide LRU of loaded keypoints, bounded in bytes: the folds of a bench refit on overlapping galleries
    and should not reload the same photos every time. It holds only the raw arrays (xy, uint8 desc) and hands out
    a new Keypoints per get, so the float32 unit descriptors a caller derives (4x the raw bytes) live in that
    caller's own bounded cache: when they were kept here too, the fit's resident memory grew by ~1 MB per photo
    up to several times this bound."""

    def __init__(self, max_bytes: int = 128 * 2**20):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[tuple[str, str], Keypoints] = OrderedDict()
        self._lock = threading.Lock()  # extraction threads insert concurrently

    def get(self, k: tuple[str, str]) -> Keypoints | None:
        with self._lock:
            kp = self._d.get(k)
            if kp is None:
                return None
            self._d.move_to_end(k)
            return kp.bare()

    def put(self, k: tuple[str, str], kp: Keypoints) -> None:
        kp = kp.bare()
        with self._lock:
            old = self._d.pop(k, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._d[k] = kp
            self.bytes += kp.nbytes
            while len(self._d) > 1 and self.bytes > self.max_bytes:
                self.bytes -= self._d.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.bytes = 0


_MEMORY = _Memory()


class KeypointCache:
    """Per-photo .npz files under <cache>/keypoints/<settings>/, keyed by the photo's content hash
    (with an in-memory LRU in front)."""

    def __init__(self, cfg: FeatureConfig, root: Path | None = None):
        self.cfg = cfg
        self.dir = Path(root or user_cache_dir()) / "keypoints" / cfg.key

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether the photo's keypoints are cached on disk (a torn file is found out by get)."""
        return self._path(key).is_file()

    def get(self, key: str) -> Keypoints | None:
        p = self._path(key)
        kp = _MEMORY.get((str(p), key))
        if kp is not None:
            return kp
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                kp = Keypoints(z["xy"], z["desc"], (int(z["size"][0]), int(z["size"][1])))
        except (ValueError, OSError, KeyError):  # a torn write from an interrupted run: recompute
            return None
        _MEMORY.put((str(p), key), kp)
        return kp

    def put(self, key: str, kp: Keypoints, remember: bool = True) -> None:
        """Write the photo's keypoints to disk; remember=False keeps them out of the in-memory LRU (gallery
        indexing writes every photo once and reads them back later, in another order)."""
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, xy=kp.xy, desc=kp.desc, size=np.array(kp.size, np.int32))
        os.replace(tmp, p)
        if remember:
            _MEMORY.put((str(p), key), kp)


def extract_dataset(ds, cfg: FeatureConfig = FeatureConfig(), keys: Sequence[str] | None = None,
                    workers: int = 2, cache: KeypointCache | None = None, keep: bool = True) -> list[Keypoints] | None:
    """Keypoints of every photo of a GeoDataset, extracting only those not cached yet (OpenCV releases the GIL,
    so a small thread pool uses both cores). keep=False: only make sure the cache holds them all and return None
    (memory stays bounded: nothing is kept per photo)."""
    cache = cache or KeypointCache(cfg)
    keys = list(keys) if keys is not None else [ds.content_key(i) for i in range(len(ds))]
    out: list[Keypoints | None] = [cache.get(k) for k in keys] if keep else [None] * len(keys)
    todo = [i for i, v in enumerate(out) if v is None and (keep or not cache.has(keys[i]))]

    def work(i: int) -> tuple[int, Keypoints]:
        try:
            im = ds.open(i)
        except PhotoError as e:
            raise PhotoError(e.source, f"{e.problem} (gallery photo {ds.ids[i]})") from None
        kp = extract(im, cfg)
        cache.put(keys[i], kp)
        return i, kp

    if todo:
        if workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(workers) as ex:
                for i, kp in ex.map(work, todo):
                    out[i] = kp if keep else None
        else:
            for i in todo:
                kp = work(i)[1]
                out[i] = kp if keep else None
    return out if keep else None  # type: ignore[return-value]


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


def verify_pair(a: Keypoints, b: Keypoints, vcfg: VerifyConfig = VerifyConfig(), root: bool = True,
                da: np.ndarray | None = None, db: np.ndarray | None = None) -> int:
    """Raw inlier count between two photos (verified when >= vcfg.min_inliers; the count itself does not depend
    on min_inliers, so cached counts stay valid when the threshold changes). Pass unit descriptors to reuse them."""
    da = a.unit_desc(root) if da is None else da
    db = b.unit_desc(root) if db is None else db
    m = mutual_matches(da, db, vcfg.ratio, vcfg.mutual)
    return fundamental_inliers(a.xy[m[:, 0]], b.xy[m[:, 1]], vcfg)


def verify_key(fcfg: FeatureConfig, vcfg: VerifyConfig) -> str:
    """Everything an inlier count depends on (min_inliers is applied later, so it is not part of the key)."""
    return f"{fcfg.key}-r{vcfg.ratio:g}-m{int(vcfg.mutual)}-px{vcfg.ransac_px:g}-it{vcfg.max_iters}"


class PairCache(PairStore):
    """Inlier counts of gallery photo pairs (ordered: the first photo plays the query), keyed by content hashes.

    One small .npz per feature/verification setting under <cache>/pairs/. Re-fitting on a subset of a gallery
    (leave-one-out, k-fold) then costs no matching at all: every pair it needs was counted before.
    """

    def __init__(self, fcfg: FeatureConfig, vcfg: VerifyConfig, root: Path | None = None):
        super().__init__(Path(root or user_cache_dir()) / "pairs" / f"{verify_key(fcfg, vcfg)}.npz")

    def decode(self, row: np.ndarray) -> int:
        return int(row[0])

    def get(self, a: str, b: str) -> int | None:
        return self.lookup(a, b)

    def put(self, a: str, b: str, n: int) -> None:
        self.store(a, b, int(n))
