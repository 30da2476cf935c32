"""On-disk keypoint store: one HDF5 file per model holding every gallery photo's keypoints.

Layout of `keypoints.h5` (h5py): `xy` (T, 2) uint16 pixels in steps of 1/xy_scale(size) px, `desc` (T, 128)
uint8 SIFT (both gzip, CHUNK_ROWS-row chunks), `offsets` (N + 1,) int64 (photo i owns rows
offsets[i]:offsets[i+1]), `size` (N, 2) int32 (w, h after resizing), attribute `features` (gallery_key: the
FeatureConfig key and the keypoint cap).
Descriptors stay uint8 on disk and in memory; the RootSIFT float32 form is made per verified pair
(Keypoints.unit_desc) and lives only in the byte-bounded LRU in front of the file. A query therefore reads only its
shortlist's keypoints, and memory does not grow with the gallery.

What a gallery photo keeps (`gallery_form`, the one rule; fit and `index add` apply it before anything reads the
keypoints, so a fitted model and the same model reloaded hold identical keypoints): at most `max_keypoints` of
its keypoints (0 = all), spread over a GRID x GRID partition of the photo (every cell keeps its first-listed, in
features.rootsift.extract's order, up to one common quota; cells with fewer keep all), and positions on the
1/xy_scale px grid the file stores exactly. At the 1,000-photo synthetic gallery a cap of 800 took the store from
262.7 to 80.1 KB per photo (docs/scale.md), at a loss on penn91, so the default keeps every keypoint.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import ModelError
from ..features.rootsift import Keypoints

FILE = "keypoints.h5"
# Default cap per gallery photo (rerank:gallery_keypoints; 0 = keep all, queries always keep all): 800 gave 111 KB
# per photo but lost on penn91 (44.4 m against 33.3 m, bench/results/j31-penn-loo.notes.md), so it is opt-in
GALLERY_KEYPOINTS = 0
GRID = 8  # cells per side of the spreading partition
CHUNK_ROWS = 1024  # keypoint rows per compressed HDF5 chunk: a photo's read decompresses ~1-2 chunks
GZIP = {"compression": "gzip", "compression_opts": 4}  # ~0.78 of SIFT's bytes; only what is written is stored


def gallery_key(feature_key: str, max_keypoints: int) -> str:
    """What a stored gallery photo's keypoints depend on: the extraction settings and the cap (0 = no cap)."""
    return f"{feature_key}-g{max_keypoints}" if max_keypoints else feature_key


def xy_scale(size: tuple[int, int]) -> int:
    """Position steps per pixel for a photo of this (w, h): the largest power of two that keeps every position
    within uint16 (32 for a 1024 px photo: 1/32 px, far below the 1 px verification threshold)."""
    side = max(int(size[0]), int(size[1]), 1)
    return 1 << max(0, int(np.floor(np.log2(65535 / side))))


def spread(xy: np.ndarray, size: tuple[int, int], n: int) -> np.ndarray:
    """Indices (ascending) of at most n of the keypoints at xy (M, 2), in priority order: each cell of a
    GRID x GRID partition of the (w, h) photo keeps its first-listed, up to one quota common to all cells (cells
    with fewer keep all); the quota is the largest that keeps n or fewer, then the next rank fills up to n in
    list order."""
    m = len(xy)
    if n <= 0 or m <= n:
        return np.arange(m)
    w, h = max(int(size[0]), 1), max(int(size[1]), 1)
    cx = np.clip((xy[:, 0] * GRID / w).astype(np.int64), 0, GRID - 1)
    cy = np.clip((xy[:, 1] * GRID / h).astype(np.int64), 0, GRID - 1)
    cell = cy * GRID + cx
    order = np.argsort(cell, kind="stable")  # by cell, list order within each
    first = np.searchsorted(cell[order], cell[order])  # where each keypoint's cell starts in `order`
    rank = np.empty(m, np.int64)
    rank[order] = np.arange(m) - first  # rank of each keypoint within its cell
    take = np.lexsort((np.arange(m), rank))[:n]  # every cell's first, then every cell's second, ...
    return np.sort(take)


def gallery_form(kp: Keypoints, max_keypoints: int) -> Keypoints:
    """The keypoints a gallery photo keeps (module docstring): at most max_keypoints (0 = all), spread over the
    photo, positions on the store's grid. Idempotent: the form of a stored photo is itself."""
    keep = spread(kp.xy, kp.size, max_keypoints)
    s = xy_scale(kp.size)
    xy = (np.rint(kp.xy[keep] * s) / s).astype(np.float32)
    desc = kp.desc if len(keep) == len(kp) else kp.desc[keep]
    return Keypoints(xy, desc, kp.size)


class KeypointLRU:
    """Least-recently-used Keypoints by integer id, bounded by Keypoints.nbytes (unit descriptors included).

    Each entry remembers the bytes it was counted with: a Keypoints grows in place when its unit descriptors
    are derived, and `touch` must re-count it from what was counted before, not from its grown size (that
    under-counted every touched entry by its unit descriptors, ~1 MB at 2,000 keypoints, and let the cache
    hold the whole gallery's)."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[int, tuple[Keypoints, int]] = OrderedDict()
        self._lock = threading.Lock()

    def keys(self) -> list[int]:
        """The photo indices held, least recently used first."""
        with self._lock:
            return list(self._d)

    def get(self, i: int) -> Keypoints | None:
        with self._lock:
            entry = self._d.get(i)
            if entry is None:
                return None
            self._d.move_to_end(i)
            return entry[0]

    def put(self, i: int, kp: Keypoints) -> None:
        with self._lock:
            old = self._d.pop(i, None)
            if old is not None:
                self.bytes -= old[1]
            n = kp.nbytes
            self._d[i] = (kp, n)
            self.bytes += n
            while len(self._d) > 1 and self.bytes > self.max_bytes:
                self.bytes -= self._d.popitem(last=False)[1][1]

    def touch(self, i: int, kp: Keypoints) -> None:
        """Re-account a cached entry whose nbytes grew (its unit descriptors were computed)."""
        self.put(i, kp)


def write_store(path: Path, keypoints: Iterable[Keypoints], n: int, features: str,
                chunk_rows: int = CHUNK_ROWS) -> None:
    """Stream n photos' keypoints into an HDF5 store at path (the caller makes the write atomic). Positions are
    stored on the photo's xy_scale grid (exact for keypoints in gallery_form)."""
    import h5py

    with h5py.File(path, "w") as f:
        xy = f.create_dataset("xy", (0, 2), np.uint16, maxshape=(None, 2), chunks=(chunk_rows, 2), **GZIP)
        desc = f.create_dataset("desc", (0, 128), np.uint8, maxshape=(None, 128), chunks=(chunk_rows, 128), **GZIP)
        offsets = np.zeros(n + 1, np.int64)
        sizes = np.zeros((n, 2), np.int32)
        total = 0
        count = 0
        for i, kp in enumerate(keypoints):
            if i >= n:
                raise ValueError(f"write_store: more than n={n} keypoint sets")
            m = len(kp)
            xy.resize(total + m, axis=0)
            desc.resize(total + m, axis=0)
            if m:
                xy[total:total + m] = np.clip(np.rint(kp.xy * xy_scale(kp.size)), 0, 65535).astype(np.uint16)
                desc[total:total + m] = kp.desc
            total += m
            offsets[i + 1] = total
            sizes[i] = kp.size
            count += 1
        if count != n:
            raise ValueError(f"write_store: got {count} keypoint sets, expected {n}")
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("size", data=sizes)
        f.attrs["features"] = features


class KeypointStore:
    """Read access to a keypoint store (file opened lazily, read-only), or to any `get(i) -> Keypoints` source.

    `get(i)` returns photo i's Keypoints, reading only its rows; an LRU bounded in bytes sits in front.
    Raises ModelError naming the file when it is unreadable or does not match the gallery.
    """

    def __init__(self, n: int, reader: Callable[[int], Keypoints], cache_bytes: int = 256 * 2**20,
                 sizes: np.ndarray | None = None):
        self.n = n
        self._reader = reader
        self.cache = KeypointLRU(cache_bytes)
        self.counts = sizes  # (N,) keypoints per photo when known

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> Keypoints:
        i = int(i)
        kp = self.cache.get(i)
        if kp is None:
            kp = self._reader(i)
            self.cache.put(i, kp)
        return kp

    def unit_desc(self, i: int) -> np.ndarray:
        """Photo i's RootSIFT unit descriptors (N_i, 128) float32; the LRU accounts for their bytes."""
        kp = self.get(i)
        before = kp.nbytes
        d = kp.unit_desc(True)
        if kp.nbytes != before:
            self.cache.touch(int(i), kp)
        return d

    def __iter__(self):
        for i in range(self.n):
            yield self._reader(i)  # streaming: bypasses the LRU

    @classmethod
    def open(cls, path: Path, n: int, features: str, cache_bytes: int = 256 * 2**20) -> "KeypointStore":
        import h5py

        path = Path(path)
        try:
            f = h5py.File(path, "r")
            offsets = f["offsets"][:]
            sizes = f["size"][:]
            got = f.attrs.get("features", "")
            xy, desc = f["xy"], f["desc"]
        except (OSError, KeyError) as e:
            raise ModelError(f"{path}: unreadable keypoint store ({e})") from None
        if len(offsets) != n + 1 or len(sizes) != n:
            raise ModelError(f"{path}: holds {len(sizes)} photos, the gallery {n}")
        if got != features:
            raise ModelError(f"{path}: keypoints extracted with {got!r}, the model expects {features!r}")
        lock = threading.Lock()  # one h5py handle shared by the calibration threads

        def read(i: int) -> Keypoints:
            a, b = int(offsets[i]), int(offsets[i + 1])
            size = (int(sizes[i][0]), int(sizes[i][1]))
            with lock:
                q, d = xy[a:b], desc[a:b]
            return Keypoints((q / np.float32(xy_scale(size))).astype(np.float32), d, size)

        store = cls(n, read, cache_bytes, np.diff(offsets))
        store._file = f
        return store

    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
            self._file = None
