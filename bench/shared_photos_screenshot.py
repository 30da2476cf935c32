#!/usr/bin/env python3
"""A screenshot of a gallery photo is recognised (issue 29's target: 30 of 30).

Fits rerank (default spec) on the whole data set, so every queried photo is in the gallery; takes `--n` of its
photos (seeded), makes each a screenshot of a post exactly as `img2gps bench --query-as screenshot` does
(data.shared_photos.as_shared, same seed rule) and locates it with each `--prep` value on the same fitted model
(the option only changes the query path). A screenshot counts as recognised when the answer is `recognised` and
lies within `--within` metres (default 1) of that gallery photo's own position. The photos as taken are located
too, as the reference. Also recorded per photo: whether the border step found the photo (query_region), whether
the answer's best neighbour is the photo itself, and the time per query (a loaded machine: not a latency figure).

    python bench/shared_photos_screenshot.py --json bench/results/j29-screenshot.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402

TAKEN = "as taken"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("IMG2GPS_DATA", "../shared/data/penn91"))
    ap.add_argument("--spec", default="rerank", help="the method fitted once on the whole data set")
    ap.add_argument("--prep", default="none,border,border+upsample+clahe+rotate+crops",
                    help="comma-separated rerank prep values, each tried on the same fitted model")
    ap.add_argument("--n", type=int, default=30, help="gallery photos made into screenshots")
    ap.add_argument("--seed", type=int, default=0, help="picks the photos and seeds the screenshots (as the bench's)")
    ap.add_argument("--within", type=float, default=1.0, help="metres from the photo's own position to count")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    code = code_revision()

    from img2gps.data import load_dataset
    from img2gps.data.shared_photos import as_shared
    from img2gps.geo import haversine_m
    from img2gps.predictors.registry import make_predictor

    ds = load_dataset(a.data)
    picked = np.sort(np.random.default_rng(a.seed).choice(len(ds), size=min(a.n, len(ds)), replace=False))
    t0 = time.perf_counter()
    p = make_predictor(a.spec)
    p.fit(ds)
    fit_s = time.perf_counter() - t0
    fitted = p.config
    preps = [s.strip() for s in a.prep.split(",") if s.strip()]
    shots = {int(i): as_shared(ds.read(int(i)), "screenshot", ds.ids[int(i)], a.seed) for i in picked}
    rows = []
    for label, prep, data_of in [(TAKEN, fitted.prep, lambda i: ds.read(i))] + \
            [(f"screenshot, prep={s}", s, lambda i: shots[i]) for s in preps]:
        p.config = dataclasses.replace(fitted, prep=prep)
        for i in map(int, picked):
            data = data_of(i)
            t1 = time.perf_counter()
            q = p.predict([data])[0]
            ms = (time.perf_counter() - t1) * 1000
            err = float(haversine_m(ds.lat[i], ds.lon[i], q.latitude, q.longitude))
            rows.append({"query": label, "image": ds.ids[i], "source": q.source, "recognised": bool(q.recognised),
                         "error_m": err, "radius_m": q.radius_m, "found": q.query_region is not None,
                         "query_region": list(q.query_region) if q.query_region is not None else None,
                         "query_view": q.query_view,
                         "best_is_photo": bool(q.neighbours) and q.neighbours[0].image_id == ds.ids[i],
                         "ms": ms})
            print(f"{label:50s} {ds.ids[i]:45s} {q.source:9s} {err:8.2f} m  region={q.query_region}", flush=True)
    p.config = fitted
    table = []
    for label in [TAKEN] + [f"screenshot, prep={s}" for s in preps]:
        r = [x for x in rows if x["query"] == label]
        ok = [x["recognised"] and x["error_m"] <= a.within for x in r]
        table.append({"query": label, "photos": len(r),
                      f"recognised within {a.within:g} m": int(sum(ok)),
                      "recognised": int(sum(x["recognised"] for x in r)),
                      "verified": int(sum(x["source"] != "fallback" for x in r)),
                      "photo found in the image": int(sum(x["found"] for x in r)),
                      "best neighbour is the photo": int(sum(x["best_is_photo"] for x in r)),
                      "mean m": float(np.mean([x["error_m"] for x in r])),
                      "ms p50 (loaded machine)": float(np.median([x["ms"] for x in r]))})
    out = {"title": f"Photos as people share them (issue 29): a screenshot of a gallery photo, {len(picked)} "
                    f"{ds.name} photos in the gallery of {a.spec} fitted on all {len(ds)}",
           "command": "python bench/shared_photos_screenshot.py " + " ".join(sys.argv[1:]),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "code": code,
           "data": ds.name, "spec": a.spec, "seed": a.seed, "within_m": a.within, "fit_s": fit_s,
           "load_at_end": list(os.getloadavg()), "table": table, "photos": rows}
    path = Path(a.json)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)  # atomic: a stopped run leaves no half-written JSON
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
