"""RootSIFT keypoint extraction with an on-disk per-photo cache keyed by the photo's content hash and the feature
settings (the extraction half of verification; matching and geometry are in verification/local.py).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..photos import DECODE_VERSION
from .cache import user_cache_dir


@dataclass(frozen=True)
class FeatureConfig:
    max_side: int = 640  # long side the photo is resized to before detection (pixels)
    n_features: int = 1000  # strongest keypoints kept per photo (OpenCV may keep a few more at ties)
    root: bool = True  # RootSIFT (Hellinger kernel): better matching than raw SIFT at no cost

    @property
    def key(self) -> str:
        return f"sift{'root' if self.root else ''}-{self.max_side}-{self.n_features}-v1-decode{DECODE_VERSION}"


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

    def path(self, key: str) -> Path:
        """The .npz file that holds (or would hold) the photo's keypoints."""
        return self.dir / key[:2] / f"{key}.npz"

    @property
    def memory(self) -> "_Memory":
        """The process-wide in-memory LRU in front of every KeypointCache (`bytes`, `clear()`)."""
        return _MEMORY

    def has(self, key: str) -> bool:
        """Whether the photo's keypoints are cached on disk (a torn file is found out by get)."""
        return self.path(key).is_file()

    def get(self, key: str) -> Keypoints | None:
        p = self.path(key)
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
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, xy=kp.xy, desc=kp.desc, size=np.array(kp.size, np.int32))
        os.replace(tmp, p)
        if remember:
            _MEMORY.put((str(p), key), kp)
