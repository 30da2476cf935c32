"""The cache module: where img2gps keeps what it can recompute (user_cache_dir), per-photo feature caches keyed by
the photo's content hash, and pair stores."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ..photos import DECODE_VERSION, PhotoError

if TYPE_CHECKING:  # a type only: features sit below data's sources
    from ..data.sources import GeoDataset


def user_cache_dir() -> Path:
    """$IMG2GPS_CACHE, else $XDG_CACHE_HOME/img2gps, else ~/.cache/img2gps (never beside the data)."""
    env = os.environ.get("IMG2GPS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "img2gps"


class PairStore:
    """Values keyed by ordered pairs of content hashes: an in-memory dict saved as one .npz of float rows.

    Subclasses say how a value becomes a row of `width` floats (`encode`) and back (`decode`); a NaN first
    element stores "computed, no result". `save` merges with what another process wrote meanwhile and replaces
    the file atomically; a torn or foreign file is treated as empty (it is a cache).
    """
    width = 1

    def __init__(self, path: Path):
        self.path = path
        self._d = self._load(path)
        self._dirty = False

    def encode(self, value) -> np.ndarray:
        return np.asarray([value], float)

    def decode(self, row: np.ndarray):
        return float(row[0])

    def lookup(self, a: str, b: str, default=None):
        return self._d.get((a, b), default)

    def store(self, a: str, b: str, value) -> None:
        self._d[(a, b)] = value
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        merged = self._load(self.path)
        merged.update(self._d)
        keys = list(merged)
        rows = np.full((len(keys), self.width), np.nan)
        for i, k in enumerate(keys):
            if merged[k] is not None:
                rows[i] = self.encode(merged[k])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, a=np.array([k[0] for k in keys], dtype="U64"), b=np.array([k[1] for k in keys], dtype="U64"),
                 v=rows)
        os.replace(tmp, self.path)
        self._d, self._dirty = merged, False

    def _load(self, path: Path) -> dict:
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["v"].shape[1:] != (self.width,):
                    return {}
                return {(a, b): None if np.isnan(v[0]) else self.decode(v)
                        for a, b, v in zip(z["a"].tolist(), z["b"].tolist(), z["v"])}
        except (ValueError, OSError, KeyError, IndexError):  # torn or foreign file: start afresh
            return {}


class FeatureCache:
    def __init__(self, kind: str, root: Path | None = None):
        self.dir = (root or user_cache_dir()) / "features" / f"{kind}-decode{DECODE_VERSION}"

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        if p.is_file():
            try:
                return np.load(p, allow_pickle=False)
            except (ValueError, OSError):  # a torn write from an interrupted run: recompute
                return None
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, value)
        os.replace(tmp, p)


def embed_dataset(encoder, ds: GeoDataset, desc: str | None = None, batch: int = 16,
                  keys: list[str] | None = None) -> np.ndarray:
    """(N, D) float32 embeddings of every photo, computing only those not cached yet. keys: the photos' content
    hashes when the caller has them (each photo is hashed once per fit)."""
    cache = FeatureCache(f"embed-{encoder.name}")
    keys = list(keys) if keys is not None else [ds.content_key(i) for i in range(len(ds))]
    out: list[np.ndarray | None] = [cache.get(k) for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    if todo:
        bar = tqdm(total=len(todo), desc=desc or f"embedding ({encoder.name})", unit="photo", leave=False,
                   disable=True if len(todo) < 8 else None)  # None: only on a terminal
        for s in range(0, len(todo), batch):
            idx = todo[s:s + batch]
            imgs = []
            for i in idx:
                try:
                    imgs.append(ds.open(i, max_side=encoder.load_side))
                except PhotoError as e:
                    raise PhotoError(e.source, f"{e.problem} (gallery photo {ds.ids[i]})") from None
            vecs = encoder.embed(imgs)
            for i, v in zip(idx, vecs):
                cache.put(keys[i], v.astype(np.float32))
                out[i] = v.astype(np.float32)
            bar.update(len(idx))
        bar.close()
    return np.stack(out).astype(np.float32)
