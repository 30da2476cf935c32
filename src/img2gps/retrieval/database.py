"""The global-descriptor database: L2-normalised vectors in a faiss index (`add`, `search`, `search_excluding`,
`save`/`load`), and turning retrieved neighbours into one position (`aggregate`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np



def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


EXACT_MAX = 100_000  # "auto" keeps exact search up to this many vectors, then switches to IVF-PQ
INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")


def resolve_kind(kind: str, n: int) -> str:
    """'auto' -> 'flat' up to EXACT_MAX vectors, else 'ivfpq'; other kinds pass through (ValueError if unknown)."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(INDEX_KINDS)}")
    return kind if kind != "auto" else ("flat" if n <= EXACT_MAX else "ivfpq")


def _make_faiss(kind: str, dim: int, train: np.ndarray):
    """A faiss inner-product index of `kind` ('flat', 'hnsw', 'ivfpq'), trained on `train` when it needs it."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        return _tune(index)
    # IVF-PQ: nlist ~ 4 sqrt(N) coarse cells. Codes: 4 dims per sub-quantizer, 4 bits each (dim / 2 bytes), in
    # faiss's fast-scan layout (SIMD table lookups): at a million vectors the scan of 8-bit codes (8 dims per
    # byte, the same bytes) took ~85 ms per query whatever nprobe was (bench/results/i31-vectors-1m-pq8.json).
    nlist = int(max(16, min(1024, 4 * np.sqrt(max(len(train), 1)))))  # capped: training cost stays bounded
    nlist = min(nlist, max(1, len(train) // 39))  # faiss wants ~39 training points per centroid
    if dim % 4 == 0:
        codes = f"PQ{dim // 4}x4fs"
    else:  # "np": no polysemous training (a code permutation for Hamming filtering, unused here, and slow)
        codes = "PQ{}np".format(next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m >= 1 and dim % m == 0))
    index = faiss.index_factory(dim, f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(train))
    return _tune(index)


# Search-time settings of the approximate kinds (faiss does not store them with the index, so they are set here
# on build and on load). Chosen on gallery-like vectors (bench/results/i31-vectors-1m.json, -100k.json, one core):
# nprobe 128 + 1,000 re-scored candidates gave recall@10 0.972 against exact search at 13.5 ms p50 per query at a
# million vectors and 0.968 at 4.4 ms at 100,000 (nprobe 64: 0.967 and 0.9545); nprobe 16 stayed below 0.89
# at a million whatever the shortlist.
NPROBE = 128  # IVF cells scanned per query (of at most 1024)
EF_SEARCH = 128  # HNSW candidate list
SHORTLIST = 1000  # at least this many approximate candidates are re-scored exactly (float16 rows, ~2.5 MB read)


def _tune(index):
    if hasattr(index, "nprobe"):
        index.nprobe = min(index.nlist, NPROBE)
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = EF_SEARCH
    return index


class CosineIndex:
    """Cosine search over L2-normalised vectors with a faiss index chosen by size.

    `vectors`: (N, D) unit rows, in insertion order (row i = gallery photo i), kept for exact similarities and
    for re-scoring approximate candidates: float32 for the exact kind; float16 for the approximate kinds (half the
    RAM at a million vectors; every similarity is still computed in float32). `kind`: 'auto' (exact IndexFlatIP
    up to EXACT_MAX vectors, else IVF-PQ), 'flat', 'hnsw' or 'ivfpq'. Approximate kinds fetch
    max(`refine` x k, `shortlist`) candidates and re-rank them exactly, so their similarities are exact cosines.
    """

    CHUNK = 65_536  # rows normalised / added / scanned at a time: temporaries stay small at a million vectors

    def __init__(self, vectors: np.ndarray, kind: str = "auto", refine: int = 4, train_max: int = 50_000,
                 seed: int = 0):
        n, dim = np.shape(vectors)
        self.kind = resolve_kind(kind, n)
        self.refine, self.shortlist = refine, SHORTLIST
        rng = np.random.default_rng(seed)
        rows = np.arange(n) if n <= train_max else np.sort(rng.choice(n, train_max, replace=False))
        dtype = np.float32 if self.kind == "flat" else np.float16
        self.vectors = np.zeros((0, dim), dtype)
        self.index = _make_faiss(self.kind, dim, l2_normalise(vectors[rows]) if self.kind == "ivfpq" else None)
        self.add(vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def add(self, vectors: np.ndarray) -> None:
        """Append (M, D) vectors (normalised here); they get gallery indices len(self) .. len(self)+M-1."""
        n0, m = len(self.vectors), len(vectors)
        if n0 == 0 and m <= self.CHUNK and self.kind == "flat":
            self.vectors = l2_normalise(vectors)
            self.index.add(self.vectors)
            return
        out = np.empty((n0 + m, np.shape(vectors)[1]), self.vectors.dtype)
        out[:n0] = self.vectors
        for s in range(0, m, self.CHUNK):
            v = l2_normalise(vectors[s:s + self.CHUNK])
            out[n0 + s:n0 + s + len(v)] = v
            self.index.add(v)
        self.vectors = out

    def dot(self, queries: np.ndarray) -> np.ndarray:
        """float32 dot products with every stored vector: (D,) query -> (N,), (Q, D) -> (Q, N). Queries are used as
        given (pass unit rows for cosines); float16 storage is widened a chunk at a time."""
        q = np.asarray(queries, np.float32)
        if self.vectors.dtype == np.float32:
            return q @ self.vectors.T if q.ndim == 2 else self.vectors @ q
        out = np.empty(q.shape[:-1] + (len(self.vectors),), np.float32)
        for s in range(0, len(self.vectors), self.CHUNK):
            out[..., s:s + self.CHUNK] = q @ self.vectors[s:s + self.CHUNK].astype(np.float32).T
        return out

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """(N,) cosine similarity of one (D,) or (1, D) query to every stored vector, in gallery order."""
        q = np.asarray(query, np.float32).ravel()
        return self.dot(q / max(float(np.linalg.norm(q)), 1e-12)).astype(float)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> (sims (Q, k'), idx (Q, k')) best first, k' = min(k, len(self))."""
        k = min(k, len(self))
        q = l2_normalise(queries)
        if self.kind == "flat":
            return self.index.search(q, k)
        _, cand = self.index.search(q, min(len(self), max(k * self.refine, k + 10, self.shortlist)))
        sims = np.full((len(q), k), -np.inf, np.float32)
        idx = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            c = np.sort(cand[r][cand[r] >= 0])  # in memory order: a faster gather from a large array
            rows = self.vectors[c].astype(np.float32)
            s = (rows @ q[r]) / np.maximum(np.linalg.norm(rows, axis=1), 1e-12)  # float16 rows: exact cosines
            top = np.argsort(-s, kind="stable")[:k]
            sims[r, :len(top)], idx[r, :len(top)] = s[top], c[top]
        return sims, idx

    def recall_vs_exact(self, k: int = 10, sample: int = 200, seed: int = 0) -> float:
        """Approximate search's recall@k against exact search, with `sample` stored vectors as queries
        (each query's own row excluded from both). 1.0 for the exact index."""
        if self.kind == "flat" or len(self) <= k + 1:
            return 1.0
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(self), min(sample, len(self)), replace=False)
        _, got = self.search_excluding(k, rows)
        hits = 0
        for a in range(0, len(rows), 50):  # 50 exact rows per pass over the stored vectors: 200 MB at 1M vectors
            block = rows[a:a + 50]
            s = self.dot(self.vectors[block])
            s[np.arange(len(block)), block] = -np.inf
            for r, exact in enumerate(np.argpartition(-s, k, axis=1)[:, :k], start=a):
                hits += len(set(exact.tolist()) & set(got[r].tolist()))
        return hits / (len(rows) * k)

    def search_excluding(self, k: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors' k nearest *other* stored vectors (leave-one-out calibration): (R, k) sims, idx for
        `rows` (gallery indices; default all N, in order)."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, np.int64)
        sims, idx = self.search(self.vectors[rows], min(k + 1, len(self)))
        out_s, out_i = [], []
        for r, g in enumerate(rows):
            keep = idx[r] != g
            out_s.append(sims[r][keep][:k])
            out_i.append(idx[r][keep][:k])
        return np.array(out_s), np.array(out_i)

    def save(self, d: Path) -> None:
        """Write embeddings.npy (the unit vectors, in their stored dtype) into directory d, and index.faiss for an
        approximate index (an exact one is the same vectors again: load rebuilds it from embeddings.npy)."""
        import faiss

        np.save(d / "embeddings.npy", self.vectors)
        if self.kind != "flat":
            faiss.write_index(self.index, str(d / "index.faiss"))

    @classmethod
    def load(cls, d: Path, kind: str = "auto") -> "CosineIndex":
        """From d/embeddings.npy; the exact index is rebuilt (as fast as reading it; models saved before it
        was left out still hold an index.faiss, which is ignored), an approximate one read from d/index.faiss
        (no retraining)."""
        import faiss

        v = np.load(d / "embeddings.npy")
        if resolve_kind(kind, len(v)) == "flat":  # the stored unit rows as they are (normalising again moves bits)
            obj = cls(np.zeros((0, v.shape[1]), np.float32), "flat")
            obj.vectors = np.ascontiguousarray(v, np.float32)
            obj.index.add(obj.vectors)
            return obj
        obj = cls.__new__(cls)
        obj.kind, obj.refine, obj.shortlist = resolve_kind(kind, len(v)), 4, SHORTLIST
        obj.vectors = v.astype(np.float16, copy=False)  # stored unit rows (float32 in models saved before)
        obj.index = _tune(faiss.read_index(str(d / "index.faiss")))
        if obj.index.ntotal != len(v):
            from ..errors import ModelError

            raise ModelError(f"{d}: index.faiss holds {obj.index.ntotal} vectors, embeddings.npy {len(v)}")
        return obj


def pair_stats(v: np.ndarray, max_rows: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation (+1e-6) of dot products between distinct rows of (N, D) v.

    Exact over all N(N-1) ordered pairs when N <= max_rows; otherwise over a seeded max_rows x max_rows sample
    of row pairs (diagonal pairs dropped), so the cost is bounded, not quadratic in N.
    """
    n = len(v)
    if n < 2:
        return 0.0, 1.0
    if n <= max_rows:
        v = np.asarray(v, np.float32)
        s = v @ v.T
        off = s[~np.eye(n, dtype=bool)]
    else:
        rng = np.random.default_rng(seed)
        a = rng.choice(n, max_rows, replace=False)
        b = rng.choice(n, max_rows, replace=False)
        s = v[a].astype(np.float32) @ v[b].astype(np.float32).T
        off = s[a[:, None] != b[None, :]]
    return float(off.mean()), float(off.std() + 1e-6)


def neighbours_within(en: np.ndarray, radius_m: float, max_n: int) -> list[list[int]]:
    """For each (N, 2) east/north point, up to max_n *other* points within radius_m metres (inclusive),
    nearest first. A faiss range search: memory linear in N (no N x N matrix)."""
    import faiss

    en = np.asarray(en, np.float64)
    n = len(en)
    if n == 0 or max_n < 1 or radius_m < 0:
        return [[] for _ in range(n)]
    centre = en.mean(0)
    x = np.ascontiguousarray(en - centre, np.float32)
    index = faiss.IndexFlatL2(2)
    index.add(x)
    # a little slack for float32 rounding; candidates are re-checked in float64 below
    lims, _, ids = index.range_search(x, float((radius_m + 1e-3) ** 2 + 1e-6))
    out = []
    for i in range(n):
        cand = ids[lims[i]:lims[i + 1]]
        cand = cand[cand != i]
        d = np.linalg.norm(en[cand] - en[i], axis=1)
        keep = d <= radius_m
        cand, d = cand[keep], d[keep]
        out.append([int(j) for j in cand[np.argsort(d, kind="stable")][:max_n]])
    return out
