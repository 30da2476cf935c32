#!/usr/bin/env python3
"""Scale bench: cost of `rerank` (fit, memory, disk, load, worst-case query) on synthetic galleries, and of
retrieval alone on many vectors. Cost only, not accuracy.

Synthetic galleries: random crops / flips / colour jitter of the penn91 photos at a 1200 px long side, at random
positions in penn91's bounding box, generated into --work (resumable: existing photos are kept). Each timed fit
runs `img2gps fit` in a child process with a fresh IMG2GPS_CACHE; peak RSS is that of the whole process tree,
sampled every 0.2 s from /proc. Worst-case queries are bgu-west photos (another campus: nothing verifies, so every
shortlist candidate is checked). Retrieval alone: gallery-like vectors (real Lite0 embeddings of the shared photos
plus noise; queries are perturbed gallery vectors) and random unit vectors, through retrieval.database.CosineIndex.

    python bench/scale.py --sizes 1000 --json bench/results/scale.json
    python bench/scale.py --vectors 100000,1000000 --json bench/results/scale-vectors.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"


# -- synthetic gallery -------------------------------------------------------------------------------------------
def make_gallery(n: int, out: Path, src: Path = DATA / "penn91", seed: int = 0) -> Path:
    """n jittered crops of src's photos at random positions in its bbox -> out/images + out/labels.csv."""
    import pandas as pd
    from PIL import Image, ImageEnhance, ImageOps

    labels = pd.read_csv(src / "labels.csv")
    (out / "images").mkdir(parents=True, exist_ok=True)
    lat0, lat1 = labels.Latitude.min(), labels.Latitude.max()
    lon0, lon1 = labels.Longitude.min(), labels.Longitude.max()
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        name = f"synth_{i:06d}.jpg"
        lat, lon = rng.uniform(lat0, lat1), rng.uniform(lon0, lon1)
        rows.append((name, lat, lon))
        path = out / "images" / name
        if path.is_file():
            continue
        with Image.open(src / "images" / labels.image[i % len(labels)]) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        f = rng.uniform(0.6, 0.95)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enh(im).enhance(rng.uniform(0.7, 1.3))
        im.thumbnail((1200, 1200), Image.Resampling.LANCZOS)
        tmp = path.with_suffix(".tmp.jpg")
        im.save(tmp, "JPEG", quality=90)
        os.replace(tmp, path)
    df = pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"])
    tmp = out / "labels.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.7f")
    os.replace(tmp, out / "labels.csv")
    return out


# -- measuring a child process tree ------------------------------------------------------------------------------
def tree_rss(pid: int) -> int:
    """Resident bytes of pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def run_measured(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """(wall seconds, peak tree RSS bytes, stdout) of a command; raises on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip().splitlines()[-1] if err else ''}")
    return time.perf_counter() - t0, peak, out


QUERY_SCRIPT = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from img2gps.predictors import load_model
m = load_model(sys.argv[1])
load_s = time.perf_counter() - t0
rss = int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024
photos = sorted(Path(sys.argv[2]).glob('*.jpg'))[: int(sys.argv[3])]
side = int(sys.argv[4])

def load(p):
    if not side:
        return p.read_bytes()
    import io
    from PIL import Image
    im = Image.open(p).convert('RGB')
    s = side / max(im.size)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
    buf = io.BytesIO(); im.save(buf, 'JPEG', quality=90)
    return buf.getvalue()

m.predict([load(photos[0])])  # warm
ms, rec = [], 0
for p in photos[1:]:
    data = load(p)
    t = time.perf_counter()
    pred = m.predict([data])[0]
    ms.append((time.perf_counter() - t) * 1000)
    rec += pred.recognised
rss2 = int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024
print(json.dumps({"load_s": load_s, "rss_loaded": rss, "rss_after_queries": rss2, "query_ms": ms, "recognised": rec}))
"""


def worst_queries(model: Path, env: dict, queries: int, side: int) -> dict:
    """Load the model in a child process, then time bgu-west photos (another campus) as queries.
    side > 0: each query is first resized to that long side (bgu-west's files are 192 x 256 px, which gives SIFT
    few keypoints; 1200 px is the size of a gallery photo)."""
    _, qpeak, out = run_measured([sys.executable, "-c", QUERY_SCRIPT, str(model), str(DATA / "bgu-west" / "images"),
                                  str(queries + 1), str(side)], env)
    q = json.loads(out.strip().splitlines()[-1])
    ms = np.array(q["query_ms"])
    return {"load_s": q["load_s"], "rss_loaded_gb": q["rss_loaded"] / 2**30, "query_peak_rss_gb": qpeak / 2**30,
            "query_side_px": side or "as stored (192x256)", "worst_query_n": len(ms),
            "worst_query_recognised": q["recognised"],
            "worst_query_ms_p50": float(np.median(ms)), "worst_query_ms_p95": float(np.quantile(ms, 0.95))}


def scale_gallery(n: int, work: Path, queries: int, spec: str, side: int, query_only: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    model = work / f"model-{n}"
    row = {"photos": n, "spec": spec}
    if not query_only:
        gal = make_gallery(n, work / f"gallery-{n}")
        cache = work / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)  # each timed fit starts from a fresh cache
        env["IMG2GPS_CACHE"] = str(cache)
        img2gps = str(Path(sys.executable).with_name("img2gps"))
        fit_s, peak, _ = run_measured([img2gps, "fit", "--data", str(gal), "--method", spec, "--out", str(model),
                                       "--overwrite"], env)
        shutil.rmtree(cache, ignore_errors=True)
        disk = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        row.update({"fit_s": fit_s, "photos_per_s": n / fit_s, "fit_peak_rss_gb": peak / 2**30,
                    "model_dir_mb": disk / 2**20, "disk_kb_per_photo": disk / n / 1024})
    return row | worst_queries(model, env, queries, side)


# -- retrieval alone ----------------------------------------------------------------------------------------------
def shared_embeddings() -> np.ndarray:
    from img2gps.data import load_dataset
    from img2gps.features.cache import embed_dataset
    from img2gps.retrieval.encoders import get_encoder

    enc = get_encoder("lite0")
    return np.concatenate([embed_dataset(enc, load_dataset(str(DATA / d))) for d in ("penn91", "bgu-west")])


def scale_vectors(n: int, kind: str, base: np.ndarray | None, n_queries: int = 100, seed: int = 0) -> dict:
    import resource

    from img2gps.retrieval.database import CosineIndex, l2_normalise

    rng = np.random.default_rng(seed)
    dim = base.shape[1] if base is not None else 1280
    vecs = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # generated in chunks to bound the temporaries
        m = min(100_000, n - s)
        if base is None:
            vecs[s:s + m] = rng.normal(size=(m, dim))
        else:
            b = l2_normalise(base)
            vecs[s:s + m] = b[rng.integers(0, len(b), m)] + rng.normal(0, 0.02, (m, dim))
    vecs[:] = l2_normalise(vecs)
    qi = rng.choice(n, n_queries, replace=False)
    queries = l2_normalise(vecs[qi] + rng.normal(0, 0.01, (n_queries, dim)).astype(np.float32))
    exact = np.concatenate([np.argsort(-(queries @ vecs[s:s + 200_000].T), 1)[:, :10] + s
                            for s in range(0, n, 200_000)], 1)
    truth = []
    for r in range(n_queries):  # the best 10 of each chunk's best 10
        cand = exact[r]
        truth.append(set(cand[np.argsort(-(vecs[cand] @ queries[r]))[:10]].tolist()))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    index = CosineIndex(vecs, kind)
    build_s = time.perf_counter() - t0
    index.search(queries[:1], 10)
    ms, hits = [], 0
    for r in range(n_queries):
        t = time.perf_counter()
        _, idx = index.search(queries[r:r + 1], 10)
        ms.append((time.perf_counter() - t) * 1000)
        hits += len(truth[r] & set(idx[0].tolist()))
    import faiss

    return {"vectors": n, "data": "gallery-like" if base is not None else "random", "kind": index.kind,
            "build_s": build_s, "index_bytes_per_vector": faiss.serialize_index(index.index).nbytes / n,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30,
            "rss_before_build_gb": rss0 / 2**30, "search_ms_p50": float(np.median(ms)),
            "search_ms_p95": float(np.quantile(ms, 0.95)), "recall_at_10_vs_exact": hits / (10 * n_queries)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="", help="gallery sizes, e.g. 1000,5000")
    ap.add_argument("--vectors", default="", help="retrieval-alone sizes, e.g. 100000,1000000")
    ap.add_argument("--kinds", default="ivfpq", help="index kinds for the retrieval-alone test")
    ap.add_argument("--spec", default="rerank")
    ap.add_argument("--queries", type=int, default=30, help="worst-case (bgu-west) queries per gallery")
    ap.add_argument("--query-side", type=int, default=1200, help="resize queries to this long side (0 = as stored)")
    ap.add_argument("--query-only", action="store_true", help="re-time queries of already fitted models in --work")
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss threads for the retrieval-alone test (on a shared 2-core machine spinning OpenMP "
                         "threads are slower than one)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/img2gps-scale"))
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(a.threads)
    doc = json.loads(a.json.read_text()) if a.json.is_file() else {}  # resumable: finished sizes are kept
    doc.update({"title": doc.get("title") or "Scale: synthetic galleries and retrieval alone",
                "command": "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "threads": a.threads, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                            "platform": platform.platform()}})
    rows = {(r["photos"], r["spec"]): r for r in doc.get("galleries", [])}
    for n in [int(x) for x in a.sizes.split(",") if x]:
        print(f"gallery {n} ...", flush=True)
        row = scale_gallery(n, a.work, a.queries, a.spec, a.query_side, a.query_only)
        rows[(n, a.spec)] = rows.get((n, a.spec), {}) | row  # --query-only keeps the fit figures
        print(rows[(n, a.spec)], flush=True)
        doc["galleries"] = sorted(rows.values(), key=lambda r: r["photos"])
        _write(a.json, doc)
    vrows = {(r["vectors"], r["data"], r["kind"]): r for r in doc.get("retrieval", [])}
    sizes = [int(x) for x in a.vectors.split(",") if x]
    if sizes:
        base = shared_embeddings()
        for n in sizes:
            for data in ("gallery-like", "random"):
                for kind in a.kinds.split(","):
                    print(f"vectors {n} {data} {kind} ...", flush=True)
                    r = scale_vectors(n, kind, base if data == "gallery-like" else None)
                    print(r, flush=True)
                    vrows[(n, data, r["kind"])] = r
                    doc["retrieval"] = sorted(vrows.values(), key=lambda r: (r["vectors"], r["data"], r["kind"]))
                    _write(a.json, doc)
    return 0


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
