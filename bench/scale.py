#!/usr/bin/env python3
"""Scale bench: cost of `rerank` (fit, memory, disk, load, worst-case query) on synthetic galleries, and of
retrieval alone on many vectors (bench/scale_vectors.py). Cost only, not accuracy.

Synthetic galleries: random crops / flips / colour jitter of the penn91 photos at a 1200 px long side, at random
positions in penn91's bounding box, generated into --work (resumable: existing photos are kept). Each timed fit
runs `img2gps fit` in a child process with a fresh IMG2GPS_CACHE; peak RSS is that of the whole process tree,
sampled every 0.2 s from /proc. Worst-case queries are bgu-west photos (another campus: nothing verifies, so every
shortlist candidate is checked). Retrieval alone (recall against exact search at up to a million vectors) is
bench/scale_vectors.py, which uses `shared_embeddings` from here.

    python bench/scale.py --sizes 1000 --json bench/results/scale.json
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
SIDE = 1200


def _photos_from_source(src_image: Path, ids: list[int], names: list[str], seed: int, images: Path) -> None:
    """Write the synthetic photos ids (all crops of src_image) into images/. The source is decoded once at about
    the size the smallest crop needs (JPEG draft + one resize): decoding a 12 MP source per photo made a
    2,000-photo gallery take hours."""
    from PIL import Image, ImageEnhance, ImageOps

    with Image.open(src_image) as im:
        im.draft("RGB", (SIDE / 0.6, SIDE / 0.6))
        base = ImageOps.exif_transpose(im).convert("RGB")
    base.thumbnail((round(SIDE / 0.6), round(SIDE / 0.6)), Image.Resampling.LANCZOS)
    for i, name in zip(ids, names):
        rng = np.random.default_rng([seed, i])
        rng.uniform(size=2)  # the position draws (made by make_gallery from the same stream)
        w, h = base.size
        f = rng.uniform(0.6, 0.95)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = base.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        im.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enh(im).enhance(rng.uniform(0.7, 1.3))
        path = images / name
        tmp = path.with_suffix(".tmp.jpg")
        im.save(tmp, "JPEG", quality=90)
        os.replace(tmp, path)


def make_gallery(n: int, out: Path, src: Path = DATA / "penn91", seed: int = 0) -> Path:
    """n jittered crops of src's photos (1200 px long side) at random positions in its bbox -> out/images +
    out/labels.csv. Photo i depends only on (seed, i): a smaller gallery is a prefix of a larger one, and a cut
    run keeps the photos it finished. Sources are spread over the cores (untimed set-up)."""
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    labels = pd.read_csv(src / "labels.csv")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    lat0, lat1 = labels.Latitude.min(), labels.Latitude.max()
    lon0, lon1 = labels.Longitude.min(), labels.Longitude.max()
    rows, todo = [], []
    for i in range(n):
        u = np.random.default_rng([seed, i]).uniform(size=2)
        name = f"synth_{i:06d}.jpg"
        rows.append((name, lat0 + u[0] * (lat1 - lat0), lon0 + u[1] * (lon1 - lon0)))
        if not (images / name).is_file():
            todo.append(i)
    by_source: dict[int, list[int]] = {}
    for i in todo:
        by_source.setdefault(i % len(labels), []).append(i)
    with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        jobs = [pool.submit(_photos_from_source, src / "images" / labels.image[s], ids, [rows[i][0] for i in ids],
                            seed, images) for s, ids in sorted(by_source.items())]
        for j in jobs:
            j.result()
    df = pd.DataFrame(rows, columns=["image", "Latitude", "Longitude"])
    tmp = out / "labels.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.7f")
    os.replace(tmp, out / "labels.csv")
    return out


# -- measuring a child process tree ------------------------------------------------------------------------------
def tree_rss(pid: int) -> tuple[int, dict[int, int]]:
    """(resident bytes of pid and all its descendants, {pid: VmHWM bytes} of each), from /proc.

    VmHWM is the kernel's own peak resident size of one process (what `/usr/bin/time -v` reports as "Maximum
    resident set size" for the largest process it waited for); the sum is sampled, so it can miss a short peak."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, hwm, todo = 0, {}, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm[p] = int(line.split()[1]) * 1024
        except OSError:
            pass
        todo += children.get(p, [])
    return total, hwm


def run_measured(cmd: list[str], env: dict, timeline: list | None = None,
                 log: Path | None = None, loads: list | None = None) -> tuple[float, int, str, int]:
    """(wall seconds, peak tree RSS bytes (sum over the tree, sampled every 0.2 s), stdout, largest single
    process's peak RSS (VmHWM) bytes); raises on failure. timeline: gets (seconds, tree RSS bytes) every ~2 s.
    log: stderr goes to this file (a long fit's progress lines would otherwise fill the pipe).
    loads: gets the 1-minute load average at each sample, so a figure says what ran beside it."""
    t0 = time.perf_counter()
    errf = open(log, "w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=errf, text=True)
    peak, hwm, last = 0, {}, -9.0
    while proc.poll() is None:
        rss, h = tree_rss(proc.pid)
        if loads is not None:
            loads.append(os.getloadavg()[0])
        peak = max(peak, rss)
        for p, v in h.items():
            hwm[p] = max(hwm.get(p, 0), v)
        now = time.perf_counter() - t0
        if timeline is not None and now - last >= 2:
            timeline.append((round(now, 1), rss))
            last = now
        time.sleep(0.2)
    out, err = proc.communicate()
    if log is not None:
        errf.close()
        err = log.read_text()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip().splitlines()[-1] if err else ''}")
    return time.perf_counter() - t0, peak, out, max(hwm.values(), default=0)


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
    loads: list = []
    _, qpeak, out, _ = run_measured([sys.executable, "-c", QUERY_SCRIPT, str(model), str(DATA / "bgu-west" / "images"),
                                  str(queries + 1), str(side)], env, loads=loads)
    q = json.loads(out.strip().splitlines()[-1])
    ms = np.array(q["query_ms"])
    return {"load_s": q["load_s"], "rss_loaded_gb": q["rss_loaded"] / 2**30, "query_peak_rss_gb": qpeak / 2**30,
            "query_side_px": side or "as stored (192x256)", "worst_query_n": len(ms),
            "worst_query_recognised": q["recognised"],
            "worst_query_ms_p50": float(np.median(ms)), "worst_query_ms_p95": float(np.quantile(ms, 0.95)),
            "query_load_mean": round(float(np.mean(loads)), 2) if loads else None}


def disk_breakdown(model: Path, n: int) -> dict:
    """Model directory bytes per photo, by part (KB per photo)."""
    parts: dict[str, int] = {}
    for p in model.rglob("*"):
        if p.is_file():
            rel = p.relative_to(model)
            key = "thumbs" if rel.parts[0] == "thumbs" else str(rel)
            parts[key] = parts.get(key, 0) + p.stat().st_size
    return {k: round(v / n / 1024, 2) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}


def scale_gallery(n: int, work: Path, queries: int, spec: str, side: int, query_only: bool = False,
                  src: Path = REPO / "src", warm: Path | None = None, label: str = "", keep_cache: bool = False,
                  warm_pairs: bool = False, resume: bool = False) -> dict:
    """Fit (and time queries on) a synthetic n-photo gallery in child processes; src: the img2gps source tree
    the child runs (to measure another revision with this script); warm: a cache whose features/ and
    keypoints/ seed each fresh cache (hard links), so the fit skips extraction but still matches every
    calibration pair (pairs/ and poses/ are copied only with warm_pairs: then calibration matches no pair).
    resume: a cache left by a cut run is kept (see --resume)."""
    from img2gps.provenance import code_revision

    env = dict(os.environ, PYTHONPATH=str(src))
    model = work / f"model-{n}{'-' + label if label else ''}"
    rev = code_revision(src.parent)
    row = {"photos": n, "spec": spec, "label": label,
           "code": (rev["git_revision"] or "?")[:10] + ("+dirty" if rev["git_dirty"] else ""),
           "extraction": (f"skipped (features, keypoints{', pair counts' if warm_pairs else ''} from {warm.name})"
                          if warm else "fresh cache")}
    if not query_only:
        gal = make_gallery(n, work / f"gallery-{n}")
        cache = work / f"cache-{n}{'-' + label if label else ''}"
        resumed = resume and cache.is_dir()
        if resumed:  # a cut run: the fit re-uses the features it had extracted (its time covers the rest only)
            row["extraction"] = f"resumed a cut run from its cache ({cache.name}): fit_s covers the remainder only"
        else:
            shutil.rmtree(cache, ignore_errors=True)  # each timed fit starts from a fresh cache
        if warm is not None:
            cache.mkdir(parents=True)
            for part in ("features", "keypoints") + (("pairs", "poses") if warm_pairs else ()):
                if (warm / part).is_dir():
                    subprocess.run(["cp", "-al", str(warm / part), str(cache / part)], check=True)
        env["IMG2GPS_CACHE"] = str(cache)
        img2gps = str(Path(sys.executable).with_name("img2gps"))
        timeline: list = []
        loads: list = []
        fit_s, peak, _, single = run_measured([img2gps, "fit", "--data", str(gal), "--method", spec, "--out",
                                               str(model), "--overwrite"], env, timeline,
                                               work / f"fit-{n}{'-' + label if label else ''}.log", loads)
        row.update({"fit_load_mean": round(float(np.mean(loads)), 2) if loads else None,
                    "fit_load_max": round(float(np.max(loads)), 2) if loads else None})
        if not keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
        disk = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        row.update({"fit_s": fit_s, "photos_per_s": n / fit_s, "fit_peak_rss_gb": peak / 2**30,
                    "fit_peak_single_process_gb": single / 2**30,
                    "model_dir_mb": disk / 2**20, "disk_kb_per_photo": disk / n / 1024,
                    "disk_kb_per_photo_by_part": disk_breakdown(model, n),
                    "fit_rss_timeline_gb": [(t, round(r / 2**30, 3)) for t, r in timeline]})
    return row if queries <= 0 else row | worst_queries(model, env, queries, side)


# -- retrieval alone ----------------------------------------------------------------------------------------------
def shared_embeddings() -> np.ndarray:
    from img2gps.data import load_dataset
    from img2gps.features.cache import embed_dataset
    from img2gps.features.encoders import get_encoder

    enc = get_encoder("lite0")
    return np.concatenate([embed_dataset(enc, load_dataset(str(DATA / d))) for d in ("penn91", "bgu-west")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="", help="gallery sizes, e.g. 1000,5000")
    ap.add_argument("--spec", default="rerank")
    ap.add_argument("--queries", type=int, default=30, help="worst-case (bgu-west) queries per gallery")
    ap.add_argument("--query-side", type=int, default=1200, help="resize queries to this long side (0 = as stored)")
    ap.add_argument("--query-only", action="store_true", help="re-time queries of already fitted models in --work")
    ap.add_argument("--work", type=Path, default=Path("/tmp/img2gps-scale"))
    ap.add_argument("--src", type=Path, default=REPO / "src",
                    help="img2gps source tree the fits run (e.g. a checkout of an older revision, for before/after)")
    ap.add_argument("--warm", type=Path, default=None,
                    help="cache whose features/ and keypoints/ seed each fit's fresh cache (extraction skipped)")
    ap.add_argument("--warm-pairs", action="store_true", help="--warm also copies pair counts and poses")
    ap.add_argument("--resume", action="store_true",
                    help="continue a cut run: keep the cache of its finished photos (the row says so; its fit_s "
                         "then covers the remainder only)")
    ap.add_argument("--keep-cache", action="store_true", help="keep each fit's cache (to --warm later fits)")
    ap.add_argument("--label", default="", help="row label (e.g. before / after); rows are keyed by size, spec, label")
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss threads (on a shared 2-core machine spinning OpenMP threads are slower than one)")
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(a.threads)
    doc = json.loads(a.json.read_text()) if a.json.is_file() else {}  # resumable: finished sizes are kept
    from img2gps.provenance import code_revision

    doc.update({"title": doc.get("title") or "Scale: synthetic galleries and retrieval alone", "code": code_revision(),
                "command": "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "threads": a.threads, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                            "platform": platform.platform()}})
    rows = {(r["photos"], r["spec"], r.get("label", "")): r for r in doc.get("galleries", [])}
    for n in [int(x) for x in a.sizes.split(",") if x]:
        print(f"gallery {n} ...", flush=True)
        row = scale_gallery(n, a.work, a.queries, a.spec, a.query_side, a.query_only, a.src, a.warm, a.label, a.keep_cache, a.warm_pairs,
                           a.resume)
        key = (n, a.spec, a.label)
        # nested figures go beside the table (bench/make_results.py prints the flat rows)
        detail = {k: row.pop(k) for k in ("disk_kb_per_photo_by_part", "fit_rss_timeline_gb") if k in row}
        doc.setdefault("details", {}).setdefault(f"{n} {a.spec} {a.label}".strip(), {}).update(detail)
        rows[key] = rows.get(key, {}) | row  # --query-only keeps the fit figures
        print(rows[key], flush=True)
        doc["galleries"] = sorted(rows.values(), key=lambda r: (r.get("label", ""), r["photos"]))
        write_json(a.json, doc)
    return 0


def write_json(path: Path, doc: dict) -> None:
    """A bench document written atomically (outputs.atomic_write); scale_vectors.py writes through it too."""
    from img2gps.outputs import atomic_write

    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(doc, indent=2)))


if __name__ == "__main__":
    sys.exit(main())
