"""On-disk keypoint store: one HDF5 file per model holding every gallery photo's keypoints.

Layout of `keypoints.h5` (h5py): `xy` (T, 2) float32 pixels, `desc` (T, 128) uint8 SIFT, `offsets` (N + 1,)
int64 (photo i owns rows offsets[i]:offsets[i+1]), `size` (N, 2) int32 (w, h after resizing), attribute
`features` (the FeatureConfig key). Descriptors stay uint8 on disk and in memory; the RootSIFT float32 form is
made per verified pair (Keypoints.unit_desc) and lives only in the byte-bounded LRU in front of the file.
A query therefore reads only its shortlist's keypoints, and memory does not grow with the gallery.
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


def write_store(path: Path, keypoints: Iterable[Keypoints], n: int, features: str, chunk_rows: int = 1 << 16) -> None:
    """Stream n photos' keypoints into an HDF5 store at path (the caller makes the write atomic)."""
    import h5py

    with h5py.File(path, "w") as f:
        xy = f.create_dataset("xy", (0, 2), np.float32, maxshape=(None, 2), chunks=(chunk_rows, 2))
        desc = f.create_dataset("desc", (0, 128), np.uint8, maxshape=(None, 128), chunks=(min(chunk_rows, 8192), 128))
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
                xy[total:total + m] = kp.xy
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
            with lock:
                return Keypoints(xy[a:b], desc[a:b], (int(sizes[i][0]), int(sizes[i][1])))

        store = cls(n, read, cache_bytes, np.diff(offsets))
        store._file = f
        return store

    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
            self._file = None
