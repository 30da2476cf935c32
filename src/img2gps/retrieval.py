"""Global retrieval: cosine k-NN with faiss, and turning neighbours into one position."""
from __future__ import annotations

import numpy as np

from .geo import LocalFrame, weighted_median_en


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CosineIndex:
    """Exact inner-product search over L2-normalised vectors (faiss IndexFlatIP)."""

    def __init__(self, vectors: np.ndarray):
        import faiss

        self.vectors = l2_normalise(vectors)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        sims, idx = self.index.search(l2_normalise(queries), k)
        return sims, idx

    def search_excluding_self(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each gallery vector's k nearest *other* gallery vectors (for leave-one-out calibration)."""
        sims, idx = self.search(self.vectors, min(k + 1, len(self)))
        out_s, out_i = [], []
        for r in range(len(idx)):
            keep = idx[r] != r
            out_s.append(sims[r][keep][:k])
            out_i.append(idx[r][keep][:k])
        return np.array(out_s), np.array(out_i)


def aggregate(en: np.ndarray, sims: np.ndarray, how: str = "mean", temperature: float = 0.05) -> tuple[np.ndarray, float]:
    """Neighbour positions (k, 2 metres) + similarities -> (position, spread in metres).

    mean: similarity-weighted mean (the paper); softmax: weights exp(sim/T); median: weighted geometric median.
    """
    sims = np.asarray(sims, float)
    if how == "softmax":
        w = np.exp((sims - sims.max()) / temperature)
    else:
        w = np.clip(sims, 1e-6, None)
    if how == "median":
        c = weighted_median_en(en, w)
    else:
        c = (en * w[:, None]).sum(0) / w.sum()
    spread = float(np.sqrt((w * ((en - c) ** 2).sum(1)).sum() / w.sum()))
    return c, spread


def frame_for(lat, lon) -> LocalFrame:
    return LocalFrame.around(lat, lon)
