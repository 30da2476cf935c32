#!/usr/bin/env python3
"""Retrieval alone at scale: recall@10 against exact search, query time, build time and RSS of
retrieval.database.CosineIndex on up to a million gallery-like vectors, over a grid of search settings.

Gallery-like vectors (generator `campus`): the 866 real Lite0 embeddings of penn91 and bgu-west are copy 0; every
further copy of 866 is the real set moved to another "campus" by a random orthogonal map Q that keeps the mean
direction of the real vectors (Q = a Householder reflection after a random-sign, permuted orthonormal DCT), plus
a little isotropic noise (norm `--noise`, default 0.1, so each vector keeps a cosine of about 0.995 with its
clean copy). Q keeps every dot product inside a copy, so each campus has the real nearest-neighbour structure;
between copies the cosine is that of unrelated photos (the shared mean, about 0.5). Generator `noise` (the earlier
bench's): real vectors plus N(0, 0.02) per dimension, which flattens the neighbour structure (reported beside it).
Queries are stored vectors, searched for their 10 nearest *other* vectors (leave-one-out, as the calibration
queries the gallery); the top-1 / top-10 cosines of those exact answers are reported beside the real set's.

    python bench/scale_vectors.py --n 100000 --json bench/results/i31-vectors-100k.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import write_json  # noqa: E402  (bench/ is on sys.path above)

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def campus_copies(base: np.ndarray, n: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """(n, D) float16 unit rows: base itself, then orthogonally moved copies of it (module docstring)."""
    from scipy.fft import dct

    x = unit(base)
    d = x.shape[1]
    u = unit(x.mean(0))
    out = np.empty((n, d), np.float16)
    for c, s in enumerate(range(0, n, len(x))):
        m = min(len(x), n - s)
        if c == 0:
            out[s:s + m] = x[:m]
            continue
        rng = np.random.default_rng([seed, c])
        s1, s2, perm = rng.choice([-1.0, 1.0], d), rng.choice([-1.0, 1.0], d), rng.permutation(d)

        def t(z):
            return s2 * dct(s1 * z, norm="ortho", axis=-1)[..., perm]

        w = t(u) - u  # the reflection across w's normal plane sends t(u) back to u, so Q u = u
        w /= max(float(np.linalg.norm(w)), 1e-12)
        rows = x[rng.permutation(len(x))[:m]]
        y = t(rows)
        y -= 2 * (y @ w)[:, None] * w[None]
        y += rng.normal(0, noise / np.sqrt(d), y.shape)
        out[s:s + m] = unit(y)
    return out


def noise_copies(base: np.ndarray, n: int, seed: int = 0, sigma: float = 0.02) -> np.ndarray:
    """(n, D) float16 unit rows: random real vectors plus N(0, sigma) per dimension (the earlier bench's)."""
    x, rng = unit(base), np.random.default_rng(seed)
    out = np.empty((n, x.shape[1]), np.float16)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        out[s:s + m] = unit(x[rng.integers(0, len(x), m)] + rng.normal(0, sigma, (m, x.shape[1])))
    return out


def exact_top(v: np.ndarray, rows: np.ndarray, k: int = 10, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest other rows of v for each of `rows`: (sims (R, k), idx (R, k)), best first."""
    q = v[rows].astype(np.float32)
    best_s = np.full((len(rows), 0), -np.inf, np.float32)
    best_i = np.zeros((len(rows), 0), np.int64)
    for s in range(0, len(v), chunk):
        sim = q @ v[s:s + chunk].astype(np.float32).T
        own = (rows >= s) & (rows < s + chunk)
        sim[np.flatnonzero(own), rows[own] - s] = -np.inf
        top = np.argpartition(-sim, min(k, sim.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sim, top, 1)], 1)
        best_i = np.concatenate([best_i, top + s], 1)
        order = np.argsort(-best_s, 1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_s, best_i


def structure(sims: np.ndarray) -> dict:
    """Quantiles (5/25/50/75/95 %) of the top-1 and top-10 cosine of each query's exact neighbours."""
    return {"top1": [round(float(x), 3) for x in np.quantile(sims[:, 0], QUANTILES)],
            "top10": [round(float(x), 3) for x in np.quantile(sims[:, 9], QUANTILES)]}


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sweep(v: np.ndarray, kind: str, nprobes: list[int], shortlists: list[int], n_queries: int,
          seed: int = 0) -> dict:
    """Build one CosineIndex of `kind` on v, then recall@10 (leave-one-out, vs exact) and single-query ms for
    every (nprobe, shortlist) pair."""
    import faiss

    from img2gps.retrieval.database import CosineIndex

    rows = np.random.default_rng([seed, 1]).choice(len(v), n_queries, replace=False)
    t0 = time.perf_counter()
    ex_s, ex_i = exact_top(v, rows)
    exact_s = time.perf_counter() - t0
    rss0 = rss_gb()
    t0 = time.perf_counter()
    index = CosineIndex(v, kind)
    build_s = time.perf_counter() - t0
    out = {"vectors": len(v), "kind": index.kind, "build_s": round(build_s, 1),
           "rss_before_build_gb": round(rss0, 3), "rss_after_build_gb": round(rss_gb(), 3),
           "index_rss_gb": round(rss_gb() - rss0, 3), "peak_rss_gb": round(peak_rss_gb(), 3),
           "faiss_bytes_per_vector": round(faiss.serialize_index(index.index).nbytes / len(v), 1),
           "rescore_bytes_per_vector": int(index.vectors.itemsize * index.dim),
           "exact_search_s_per_query": round(exact_s / n_queries, 4),
           "neighbour_structure": structure(ex_s), "settings": []}
    truth = [set(r.tolist()) for r in ex_i]
    q = v[rows].astype(np.float32)
    for nprobe in nprobes if index.kind == "ivfpq" else [0]:
        if nprobe:
            index.index.nprobe = min(nprobe, index.index.nlist)
        for sl in shortlists:
            index.shortlist = sl
            index.search(q[:1], 11)  # warm
            ms, hits = [], 0
            for r in range(n_queries):
                t = time.perf_counter()
                _, idx = index.search(q[r:r + 1], 11)
                ms.append((time.perf_counter() - t) * 1000)
                got = [i for i in idx[0].tolist() if i != rows[r]][:10]
                hits += len(truth[r] & set(got))
            row = {"nprobe": nprobe or None, "shortlist": sl, "recall_at_10": hits / (10 * n_queries),
                   "query_ms_p50": round(float(np.median(ms)), 2), "query_ms_p95": round(float(np.quantile(ms, 0.95)), 2)}
            print(row, flush=True)
            out["settings"].append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, required=True, help="gallery vectors")
    ap.add_argument("--generators", default="campus", help="campus and/or noise (comma-separated)")
    ap.add_argument("--kinds", default="ivfpq")
    ap.add_argument("--nprobe", default="16,32,64,128")
    ap.add_argument("--shortlist", default="40,100,250,500,1000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1, help="faiss threads (the machine has 2 shared cores)")
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    import faiss

    from img2gps.provenance import code_revision
    from scale import shared_embeddings

    faiss.omp_set_num_threads(a.threads)
    base = shared_embeddings()
    real_s, _ = exact_top(unit(base).astype(np.float16), np.arange(len(base)))
    doc = {"title": "Retrieval alone: recall@10 vs exact and query time on gallery-like vectors",
           "command": "python bench/scale_vectors.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "code": code_revision(), "threads": a.threads, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                       "platform": platform.platform(), "load_at_start": os.getloadavg()[0]},
           "real_neighbour_structure": {"vectors": len(base)} | structure(real_s), "runs": []}
    for gen in a.generators.split(","):
        t0 = time.perf_counter()
        v = campus_copies(base, a.n, noise=a.noise) if gen == "campus" else noise_copies(base, a.n)
        gen_s = time.perf_counter() - t0
        for kind in a.kinds.split(","):
            print(f"{gen} {a.n} {kind} ...", flush=True)
            r = {"generator": gen, "generate_s": round(gen_s, 1)} | sweep(
                v, kind, [int(x) for x in a.nprobe.split(",")], [int(x) for x in a.shortlist.split(",")], a.queries)
            doc["runs"].append(r)
            doc["table"] = [{"generator": x["generator"], "vectors": x["vectors"], "kind": x["kind"],
                             "build_s": x["build_s"], "index_rss_gb": x["index_rss_gb"]} | st
                            for x in doc["runs"] for st in x["settings"]]
            write_json(a.json, doc)
        del v
    doc["machine"]["load_at_end"] = os.getloadavg()[0]
    write_json(a.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
