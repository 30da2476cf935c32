"""Compare two bench runs photo by photo: same predictions (before/after a refactor), and query latency.

    python bench/compare_predictions.py bench/results/i18-before-loo.json bench/results/i18-after-loo.json

Reads each JSON and its predictions CSV (written beside it by `img2gps bench --json X.json`). Per spec, prints
the number of photos, the largest difference of error_m (metres, the CSV keeps 7 decimals: 1e-7 m), of
pred_lat / pred_lon (degrees, 7 decimals: about 1 cm) and of radius_m, whether recognised/source agree on every
photo, and predict_ms_p50 before and after. Exits 1 when a prediction differs by more than --tol metres.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def predictions(json_path: Path) -> pd.DataFrame:
    csv = json_path.with_suffix(".predictions.csv")
    return pd.read_csv(csv).set_index(["spec", "image"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tol", type=float, default=1e-6, help="largest allowed error_m difference (metres)")
    a = ap.parse_args(argv)
    jb, ja = (json.loads(p.read_text())["results"] for p in (a.before, a.after))
    pb, pa = predictions(a.before), predictions(a.after)
    ok = True
    print(f"{'spec':<18} {'n':>4} {'max|d error_m|':>15} {'max|d lat|':>11} {'max|d lon|':>11} {'max|d radius|':>14} "
          f"{'rec/src same':>12} {'p50 ms before':>14} {'after':>8}")
    for spec in pb.index.get_level_values(0).unique():
        b, f = pb.loc[spec], pa.loc[spec]
        if sorted(b.index) != sorted(f.index):
            print(f"{spec}: different photos"), sys.exit(1)
        f = f.loc[b.index]
        d_err = (b["error_m"] - f["error_m"]).abs().max()
        d_lat = (b["pred_lat"] - f["pred_lat"]).abs().max()
        d_lon = (b["pred_lon"] - f["pred_lon"]).abs().max()
        d_rad = (b["radius_m"] - f["radius_m"]).abs().max()
        same = bool((b["recognised"] == f["recognised"]).all() and (b["source"].fillna("") == f["source"].fillna("")).all())
        ok &= bool(d_err <= a.tol) and same
        print(f"{spec:<18} {len(b):>4} {d_err:>15.2e} {d_lat:>11.1e} {d_lon:>11.1e} {d_rad:>14.2e} {str(same):>12} "
              f"{jb.get(spec, {}).get('predict_ms_p50', float('nan')):>14.1f} "
              f"{ja.get(spec, {}).get('predict_ms_p50', float('nan')):>8.1f}")
    print("same predictions" if ok else "PREDICTIONS DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
