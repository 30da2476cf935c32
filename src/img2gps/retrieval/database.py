"""The global-descriptor database: L2-normalised vectors in a faiss index (`add`, `search`, `search_excluding`,
`save`/`load`), and turning retrieved neighbours into one position (`aggregate`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geo import LocalFrame, weighted_median_en


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CosineIndex:
    """Exact inner-product (cosine) search over L2-normalised float32 vectors (faiss IndexFlatIP).

    `vectors`: (N, D) float32 unit rows, in insertion order (row i = gallery photo i).
    """

    def __init__(self, vectors: np.ndarray):
        import faiss

        v = np.asarray(vectors, np.float32)
        self.vectors = np.zeros((0, v.shape[1]), np.float32)
        self.index = faiss.IndexFlatIP(v.shape[1])
        self.add(v)

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def add(self, vectors: np.ndarray) -> None:
        """Append (M, D) vectors (normalised here); they get gallery indices len(self) .. len(self)+M-1."""
        v = l2_normalise(vectors)
        self.vectors = np.concatenate([self.vectors, v]) if len(self.vectors) else v
        self.index.add(v)

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """(N,) cosine similarity of one (D,) or (1, D) query to every stored vector, in gallery order."""
        q = np.asarray(query, np.float32).ravel()
        return (self.vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))).astype(float)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> (sims (Q, k'), idx (Q, k')) best first, k' = min(k, len(self))."""
        k = min(k, len(self))
        sims, idx = self.index.search(l2_normalise(queries), k)
        return sims, idx

    def search_excluding(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each stored vector's k nearest *other* stored vectors (leave-one-out calibration): (N, k) sims, idx."""
        sims, idx = self.search(self.vectors, min(k + 1, len(self)))
        out_s, out_i = [], []
        for r in range(len(idx)):
            keep = idx[r] != r
            out_s.append(sims[r][keep][:k])
            out_i.append(idx[r][keep][:k])
        return np.array(out_s), np.array(out_i)

    def save(self, d: Path) -> None:
        """Write embeddings.npy (the vectors) and index.faiss into directory d."""
        import faiss

        np.save(d / "embeddings.npy", self.vectors)
        faiss.write_index(self.index, str(d / "index.faiss"))

    @classmethod
    def load(cls, d: Path) -> "CosineIndex":
        """Rebuild from d/embeddings.npy (exact index: rebuilding is as fast as reading index.faiss)."""
        return cls(np.load(d / "embeddings.npy"))


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
