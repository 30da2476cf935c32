"""The course leaderboard's evaluation protocol, reproduced to check an export before handing it in.

Standalone: runs as a script with only the standard library, numpy, pandas and torch (the backend's packages),
so it can be run in an interpreter where img2gps is not importable:

    python -I -S harness.py --site DIR --model model.py --preprocess preprocess.py --weights model.pt --csv val.csv

Protocol (as the leaderboard's evaluator): import model.py and preprocess.py by path; X, _ = prepare_data(csv) and
list(X); instantiate `Model(weights_path="__no_weights__.pth")`, on TypeError `Model()`, on another error
`get_model()`, else `IMG2GPS()` / `Model()`; torch.load the weights (plain state dict or {"state_dict": ...}), strip
a leading `module.` then `model.`, collapse repeated `backbone.backbone.`; load with strict=False into `model.model`
(if present) and into the model only the tensors whose key exists there with the same shape (loading nothing is
an error); eval(); batches of 32 as lists to `predict` (else `model(batch)` under no_grad); mean haversine
distance with R = 6,371,000 m against the CSV's Latitude/Longitude; inference time per example.

`build_site(dest)` makes a folder of links to the backend's packages only (for --site with `python -I -S`).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time

BACKEND_PACKAGES = ("numpy", "pandas", "torch", "torchvision", "PIL", "sklearn", "cv2", "scipy", "joblib",
                    "threadpoolctl", "dateutil", "six", "pytz", "tzdata", "typing_extensions", "sympy", "mpmath",
                    "networkx", "jinja2", "markupsafe", "filelock", "fsspec", "torchgen")
R_EARTH = 6_371_000.0


def build_site(dest: str) -> str:
    """dest/ with symlinks to the backend's packages (and their bundled *.libs) from this interpreter."""
    os.makedirs(dest, exist_ok=True)
    roots = set()
    for name in BACKEND_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        src = list(spec.submodule_search_locations)[0] if spec.submodule_search_locations else spec.origin
        roots.add(os.path.dirname(src))
        link = os.path.join(dest, os.path.basename(src))
        if not os.path.lexists(link):
            os.symlink(src, link)
    for root in roots:
        for entry in os.listdir(root):
            if entry.endswith(".libs") or entry.startswith("_cffi"):
                link = os.path.join(dest, entry)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(root, entry), link)
    return dest


def _import(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def instantiate(mod):
    """(model, how it was made), in the evaluator's order of attempts."""
    if hasattr(mod, "Model"):
        try:
            return mod.Model(weights_path="__no_weights__.pth"), 'Model(weights_path="__no_weights__.pth")'
        except TypeError:
            return mod.Model(), "Model()"
        except Exception:
            if callable(getattr(mod, "get_model", None)):
                return mod.get_model(), "get_model()"
            raise
    if callable(getattr(mod, "get_model", None)):
        try:
            return mod.get_model(), "get_model()"
        except Exception:
            for name in ("IMG2GPS", "Model"):
                if hasattr(mod, name):
                    try:
                        return getattr(mod, name)(), f"{name}()"
                    except Exception:
                        continue
            raise
    for name in ("Model", "IMG2GPS"):
        if hasattr(mod, name):
            return getattr(mod, name)(), f"{name}()"
    raise AttributeError("model.py defines neither Model, get_model nor IMG2GPS")


def clean_keys(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith("model."):
            k = k[len("model."):]
        while k.startswith("backbone.backbone."):
            k = k.replace("backbone.backbone.", "backbone.", 1)
        out[k] = v
    return out


def load_weights(model, path: str) -> dict:
    """Shape-filtered strict=False load into model.model and model; returns what loaded and what did not."""
    import torch

    ck = torch.load(path, map_location="cpu")
    if not isinstance(ck, dict):
        raise RuntimeError(f"{path}: not a state dict")
    sd = clean_keys(ck["state_dict"] if "state_dict" in ck else ck)
    loaded, needed = set(), set()
    for target in (getattr(model, "model", None), model):
        if target is None or not hasattr(target, "state_dict"):
            continue
        have = target.state_dict()
        needed |= set(have) if target is model else set()
        keep = {k: v for k, v in sd.items() if k in have and isinstance(v, torch.Tensor) and have[k].shape == v.shape}
        if keep:
            target.load_state_dict(keep, strict=False)
            loaded |= set(keep)
    if not loaded:
        raise RuntimeError(f"{path}: no tensor loaded (keys e.g. {list(sd)[:5]})")
    return {"loaded": len(loaded), "skipped": sorted(set(sd) - loaded), "not_loaded": sorted(needed - loaded)}


def haversine(a, b) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b[1] - a[1]) / 2) ** 2)
    return 2 * R_EARTH * math.asin(math.sqrt(h))


def _column(cols, names):
    for n in names:
        if n in cols:
            return n
    raise KeyError(f"none of {names} in {cols}")


def evaluate(model_py: str, preprocess_py: str, weights: str | None, csv: str, batch_size: int = 32) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    model_mod = _import(model_py, "student_model_a")
    pre_mod = _import(preprocess_py, "student_preproc_a")
    model, made = instantiate(model_mod)
    load = load_weights(model, weights) if weights else {"loaded": 0, "skipped": [], "not_loaded": []}
    if hasattr(model, "eval"):
        model.eval()
    X, _ = pre_mod.prepare_data(csv)
    X = list(X)
    preds, total = [], 0.0
    for s in range(0, len(X), batch_size):
        batch = X[s:s + batch_size]
        t0 = time.perf_counter()
        if callable(getattr(model, "predict", None)):
            out = model.predict(batch)
        else:
            with torch.no_grad():
                out = model(batch)
        total += time.perf_counter() - t0
        if isinstance(out, torch.Tensor):
            out = out.cpu().tolist()
        preds.extend(list(out))
    df = pd.read_csv(csv)
    lat, lon = _column(df.columns, ["Latitude", "latitude", "lat"]), _column(df.columns, ["Longitude", "longitude", "lon"])
    truth = df[[lat, lon]].to_numpy(float)
    pairs = np.asarray([np.asarray(p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p, float).reshape(2)
                        for p in preds])
    n = min(len(pairs), len(truth))
    dists = [haversine(pairs[i], truth[i]) for i in range(n)]
    return {"n": n, "mean_m": float(np.mean(dists)) if dists else float("nan"), "errors_m": dists,
            "predictions": pairs[:n].tolist(), "ms_per_example": 1000.0 * total / max(len(X), 1),
            "total_s": total, "instantiated_with": made, **load, "modules": sorted(m.split(".")[0] for m in sys.modules if "." not in m)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--preprocess", required=True)
    ap.add_argument("--weights")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--site", action="append", default=[], help="folder to add to sys.path (see build_site)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    sys.path.extend(a.site)  # after the standard library, as site-packages would be (cv2 inserts at index 1)
    res = evaluate(a.model, a.preprocess, a.weights, a.csv, a.batch_size)
    res["img2gps_importable"] = importlib.util.find_spec("img2gps") is not None
    res["sys_path"] = list(sys.path)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(res, f)
        os.replace(a.json + ".tmp", a.json)
    print(f"num_examples: {res['n']}\navg_infer_ms: {res['ms_per_example']:.3f}\n"
          f"avg_distance_m: {res['mean_m']:.3f}\ntensors loaded: {res['loaded']}, skipped: {len(res['skipped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
