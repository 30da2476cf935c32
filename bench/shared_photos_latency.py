#!/usr/bin/env python3
"""Camera files stay as fast: rerank query latency with its shared-photo steps (prep, docs/shared-photos.md) on
and off, back to back on one fitted model.

    python bench/shared_photos_latency.py [--data ../shared/data/penn91] [--repeat 3] [--json OUT]

Fits `rerank` (prep is a query-time option, so one fit serves both) on the first random 5-fold split's training photos, then times each held-out camera file (its own
bytes, EXIF kept: decode + predict, batch 1, warm, wall clock) with prep off (the landed query path) and on, in
turn A B A B..., so drifting machine load hits both alike. Writes p50/p95 of each and the pairwise ratio.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(root / ".." / "shared" / "data" / "penn91"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--prep", default="border+upsample+clahe+rotate", help="the prep steps timed against none")
    a = ap.parse_args()
    code = code_revision()

    from img2gps.data import load_dataset
    from img2gps.data.splits import folds_for_protocol
    from img2gps.predictors.registry import make_predictor

    ds = load_dataset(a.data)
    fold = folds_for_protocol("kfold:5", ds)[0]
    p = make_predictor("rerank")
    p.fit(ds.subset(fold.train))
    on, off = dataclasses.replace(p.config, prep=a.prep), dataclasses.replace(p.config, prep="none")
    queries = [ds.read(int(i)) for i in fold.val]
    p.predict([queries[0]])  # warm: lazy loading is not latency
    ms = {"off": [], "on": []}
    same = True
    for _ in range(a.repeat):
        for q in queries:
            got = {}
            for mode in ("off", "on"):
                p.config = off if mode == "off" else on
                t0 = time.perf_counter()
                got[mode] = p.predict([q])[0]
                ms[mode].append((time.perf_counter() - t0) * 1000)
            same &= (got["off"].latitude, got["off"].longitude) == (got["on"].latitude, got["on"].longitude)
    off, onv = np.array(ms["off"]), np.array(ms["on"])
    out = {
        "title": "Shared photos (issue 20): camera-file query latency, rerank prep off vs on, back to back",
        "command": "python bench/shared_photos_latency.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "code": code, "data": ds.name,
        "table": [{"queries": len(queries), "repeats": a.repeat,
                   "prep off p50 ms": float(np.median(off)), "prep on p50 ms": float(np.median(onv)),
                   "prep off p95 ms": float(np.quantile(off, 0.95)), "prep on p95 ms": float(np.quantile(onv, 0.95)),
                   "p50 ratio on/off": float(np.median(onv) / np.median(off)),
                   "median pairwise ratio": float(np.median(onv / off)),
                   "same answers": "yes" if same else "no"}],
    }
    print(json.dumps(out["table"], indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
