"""Measure `predict` latency on this machine: ms per photo with the PyTorch and the ONNX runtime.

    python bench/predict_latency.py [--data ../shared/data/penn91] [--queries 10] [--repeat 3] [--json OUT]

Fits knn (lite0) on the dataset minus a seeded set of held-out photos (embeddings cached under the user cache dir),
exports the encoder to ONNX, then times Img2GPS.predict(path) per photo, batch 1, warm, wall clock: that includes
reading and decoding the file, the EXIF read for display, embedding, search and the radius. One cold CLI call
(`img2gps predict PHOTO --model DIR`, process start and model load included) is timed too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(root / ".." / "shared" / "data" / "penn91"))
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch

    from img2gps import Img2GPS
    from img2gps.data import load_dataset
    from img2gps.export import export_onnx
    from img2gps.predictors import make_predictor

    ds = load_dataset(a.data)
    rng = np.random.default_rng(42)
    held = [ds.ids[i] for i in rng.choice(len(ds), a.queries, replace=False)]
    image_dir = Path(a.data) / "images"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        p = make_predictor("knn")
        p.fit(ds.exclude_ids(held))
        p.save(model_dir)
        rep = export_onnx(p, model_dir / "encoder.onnx", model_dir=model_dir)
        out = {"command": " ".join(["python"] + sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"), "data": a.data, "gallery": len(ds) - len(held), "queries": len(held), "repeat": a.repeat,
               "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(), "onnx_max_abs_diff": rep.max_abs_diff,
               "load_avg_before": os.getloadavg()[0]}
        for runtime in ("torch", "onnx"):
            t = time.perf_counter()
            m = Img2GPS.load(model_dir, runtime=runtime)
            load_ms = (time.perf_counter() - t) * 1000
            m.warmup()
            times = []
            for _ in range(a.repeat):
                for name in held:
                    t = time.perf_counter()
                    m.predict(image_dir / name)
                    times.append((time.perf_counter() - t) * 1000)
            out[runtime] = {"load_ms": round(load_ms, 1), "p50_ms": round(float(np.median(times)), 1),
                            "p95_ms": round(float(np.percentile(times, 95)), 1), "mean_ms": round(float(np.mean(times)), 1)}
        # Where one query's time goes (torch runtime): decode, the display-only EXIF read, the embedding.
        from img2gps.photos import open_image, read_bytes, read_meta

        enc = Img2GPS.load(model_dir).predictor.query_encoder
        blobs = [read_bytes(image_dir / n) for n in held]
        enc.embed([open_image(blobs[0])])
        parts = {"decode_ms": lambda b: open_image(b), "exif_read_ms": lambda b: read_meta(b),
                 "embed_ms": lambda b, im=open_image(blobs[0]): enc.embed([im])}
        out["breakdown_p50"] = {}
        for key, fn in parts.items():
            ts = []
            for b in blobs:
                t = time.perf_counter()
                fn(b)
                ts.append((time.perf_counter() - t) * 1000)
            out["breakdown_p50"][key] = round(float(np.median(ts)), 1)
        t = time.perf_counter()
        exe = shutil.which("img2gps") or str(Path(sys.executable).parent / "img2gps")
        subprocess.run([exe, "predict", str(image_dir / held[0]), "--model", str(model_dir)], check=True,
                       capture_output=True)
        out["cli_one_photo_s"] = round(time.perf_counter() - t, 2)
        out["load_avg_after"] = os.getloadavg()[0]
    out["code"] = code_revision()
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
