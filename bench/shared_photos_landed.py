#!/usr/bin/env python3
"""The landed rerank (prep=none) on the same queries as a `--query-as` bench run of rerank, and what each
shared-photo step of rerank changed, from that run's predictions without re-running all of it.

    python bench/shared_photos_landed.py --run bench/results/i20-penn91-kfold5.json [--check 10] --json OUT.json

With prep on, rerank answers exactly as with prep=none unless it cut a border (query_region) or a retry view
verified (query_view): the first view is the landed query path, and the cascade runs only when it verified
nothing. So for every held-out photo that neither happened to, the landed answer is the run's answer; this script
refits each fold (cached features) and re-predicts with prep=none only the photos whose answer a step changed,
plus `--check` unchanged ones per fold, which must come out identical (else it stops: the premise is wrong).
Writes the landed results per kind in the bench JSON format, their ratio table, and a table of what each step did.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="bench JSON of a `--methods rerank --query-as ...` run")
    ap.add_argument("--spec", default="rerank", help="the method (with prep on) whose answers the run holds")
    ap.add_argument("--name", default="rerank", help="the name the landed results are written under")
    ap.add_argument("--check", type=int, default=3, help="unchanged photos per fold re-predicted as a check")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    code = code_revision()

    from img2gps.data import load_dataset
    from img2gps.data.shared_photos import ORIGINAL, as_shared, kind_ratios
    from img2gps.data.splits import folds_for_protocol
    from img2gps.evaluate import metrics
    from img2gps.geo import haversine_m
    from img2gps.predictors.registry import make_predictor

    run = json.loads(Path(a.run).read_text())
    preds = pd.read_csv(Path(a.run).with_suffix(".predictions.csv"))
    preds = preds[preds["spec"] == a.spec].copy()
    for col in ("query_region", "query_view"):
        preds[col] = preds[col].fillna("").astype(str)
    kinds, seed = run["query_as"]["kinds"], run["query_as"]["seed"]
    ds = load_dataset(run["data"] if Path(run["data"]).exists() else f"../shared/data/{run['data']}")
    ds = ds.with_camera_meta()
    folds = folds_for_protocol(run["protocol"], ds)
    if run.get("folds_run"):  # a partial run: only those folds
        folds = [folds[f - 1] for f in run["folds_run"]]
    changed = (preds["query_region"].astype(str) != "") | (preds["query_view"].astype(str) != "")
    landed = preds.copy()
    index = {name: i for i, name in enumerate(ds.ids)}
    rng = np.random.default_rng(0)
    n_checked = 0
    for fold in folds:
        names = set(ds.ids[i] for i in fold.val)
        todo = preds.index[changed & preds["image"].isin(names)].tolist()
        same = preds.index[~changed & preds["image"].isin(names)].tolist()
        check = [int(x) for x in rng.choice(same, size=min(a.check, len(same)), replace=False)] if same else []
        p = make_predictor(a.spec)
        p.fit(ds.subset(fold.train))
        p.config = dataclasses.replace(p.config, prep="none")
        for r in todo + check:
            row = preds.loc[r]
            i = index[row["image"]]
            data = as_shared(ds.read(i), row["query_as"], row["image"], seed)
            t0 = time.perf_counter()
            q = p.predict([data])[0]
            ms = (time.perf_counter() - t0) * 1000
            err = float(haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude))
            if r in check:
                n_checked += 1
                if abs(err - row["error_m"]) > 1e-6 or bool(q.recognised) != bool(row["recognised"]):
                    print(f"check failed: {row['image']} as {row['query_as']}: {err:.3f} m vs {row['error_m']:.3f} m")
                    return 1
                continue
            landed.loc[r, ["error_m", "radius_m", "confidence", "recognised", "source", "heading_deg",
                           "heading_radius_deg", "predict_ms", "query_region", "query_view"]] = [
                err, q.radius_m, q.confidence, bool(q.recognised), q.source,
                np.nan if q.heading_deg is None else q.heading_deg,
                np.nan if q.heading_radius_deg is None else q.heading_radius_deg, ms, "", ""]
            landed.loc[r, ["pred_lat", "pred_lon"]] = [q.latitude, q.longitude]
    landed["recognised"] = landed["recognised"].astype(bool)
    landed["z2"] = np.nan
    results = {}
    for kind in kinds:
        rows = landed[landed["query_as"] == kind]
        key = a.name if kind == ORIGINAL else f"{a.name} as {kind}"
        results[key] = metrics(rows.assign(source=rows["source"].astype(str)))
    steps = []
    for kind in kinds:
        new = preds[preds["query_as"] == kind]
        old = landed[landed["query_as"] == kind]
        for label, mask in (("border (photo found in the image)", new["query_region"].astype(str) != ""),
                            *((f"retry: {v}", new["query_view"] == v) for v in sorted(set(new["query_view"]) - {""}))):
            if not mask.any():
                continue
            steps.append({"query as": kind, "step": label, "photos": int(mask.sum()),
                          "recognised before": float(old.loc[mask[mask].index, "recognised"].mean()),
                          "recognised after": float(new.loc[mask, "recognised"].astype(str).isin(["True", "true", "1"]).mean()),
                          "mean m before": float(old.loc[mask[mask].index, "error_m"].mean()),
                          "mean m after": float(new.loc[mask, "error_m"].mean())})
    out = {
        "title": "Photos as people share them: landed rerank (prep=none), penn91 random 5-fold, every kind "
                 "(unchanged answers from the prep-on run, changed ones re-predicted)",
        "command": "python bench/shared_photos_landed.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "code": code,
        "data": run["data"], "protocol": run["protocol"], "n": int((preds["query_as"] == ORIGINAL).sum()),
        "folds_run": run.get("folds_run"), "from_run": Path(a.run).name,
        "repredicted": int(changed.sum()), "checked_identical": n_checked,
        "query_as": run["query_as"], "results": results,
        "table": kind_ratios(results, [a.name], kinds[1:]), "steps": steps,
    }
    out_path = Path(a.json)
    out_path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    landed.to_csv(out_path.with_suffix(".predictions.csv"), index=False, float_format="%.7f")
    print(json.dumps(out["table"] + steps, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
