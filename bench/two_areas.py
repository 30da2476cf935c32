"""One gallery over two far-apart areas (issue 30): Penn + Ben-Gurion in one dataset, 9,300 km apart.

    python bench/two_areas.py [--a ../shared/data/penn91] [--b ../shared/data/bgu-west] [--methods knn,rerank]
                              [--holdout 0.2] [--json bench/results/i30-two-areas.json]

A combined dataset is made in a temp dir (labels of both sets, images linked, never copied into the repo). From
each area a seeded `--holdout` fraction of photos is held out as queries. Each method is fitted three times on the
same training photos: on both areas together, on A's alone and on B's alone; every query is scored by the one
scoring path (evaluate.score_queries) against the combined model and against its own area's model. Reported per
method and area: mean / median error of both models and their ratio (target: combined within 1.1x of the area
alone), how many answers lie inside an area's region (area.Area.contains, MARGIN_M), inside the query's own area,
the largest radius and the radius coverage.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402

MARGIN_M = 25.0  # an answer this close to an area's region counts as inside it (phone GPS noise)


def combined_dataset(a: Path, b: Path, out: Path) -> Path:
    """out/images (symbolic links to both sets' photos) + out/labels.csv (both label tables). Raises ValueError
    when the two sets share an image name."""
    (out / "images").mkdir(parents=True)
    tables = []
    for src in (a, b):
        t = pd.read_csv(src / "labels.csv")[["image", "Latitude", "Longitude"]]
        for name in t["image"]:
            link = out / "images" / name
            if link.exists():
                raise ValueError(f"{name}: in both {a} and {b}")
            link.symlink_to((src / "images" / name).resolve())
        tables.append(t)
    pd.concat(tables).to_csv(out / "labels.csv", index=False)
    return out


def score(spec: str, train, ds, queries) -> tuple[pd.DataFrame, float]:
    """Fit spec on train, score ds's query rows: (rows, fit seconds)."""
    from img2gps.evaluate import score_queries
    from img2gps.predictors import make_predictor

    p = make_predictor(spec)
    t0 = time.perf_counter()
    p.fit(train)
    fit_s = time.perf_counter() - t0
    return pd.DataFrame(score_queries(p, ds, queries)), fit_s


def summary(both: pd.DataFrame, alone: pd.DataFrame, areas, own: int) -> dict:
    """Per-area figures of one method: combined model (both) against the area's own model (alone)."""
    inside = np.array([[bool(a.contains(la, lo, MARGIN_M)) for a in areas]
                       for la, lo in zip(both["pred_lat"], both["pred_lon"])])
    return {"n": int(len(both)),
            "combined_mean_m": float(both["error_m"].mean()), "combined_median_m": float(both["error_m"].median()),
            "alone_mean_m": float(alone["error_m"].mean()), "alone_median_m": float(alone["error_m"].median()),
            "ratio_mean": float(both["error_m"].mean() / alone["error_m"].mean()),
            "answers_in_one_area": int((inside.sum(1) == 1).sum()),
            "answers_in_own_area": int(inside[:, own].sum()),
            "combined_max_radius_m": float(both["radius_m"].max()),
            "alone_max_radius_m": float(alone["radius_m"].max()),
            "combined_coverage": float((both["error_m"] <= both["radius_m"]).mean()),
            "alone_coverage": float((alone["error_m"] <= alone["radius_m"]).mean())}


def area_pair_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of the two-area benches: --a and --b, the two areas' data sets (default: the shared
    penn91 and bgu-west)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    ap.add_argument("--a", default=str(data / "penn91"))
    ap.add_argument("--b", default=str(data / "bgu-west"))
    return ap


def main() -> None:
    ap = area_pair_parser(__doc__)
    ap.add_argument("--methods", default="knn,rerank")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from img2gps.area import describe, split_areas
    from img2gps.data import load_dataset

    a, b = Path(args.a), Path(args.b)
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(combined_dataset(a, b, Path(tmp) / "combined"))
        areas = split_areas(ds.lat, ds.lon)
        rng = np.random.default_rng(args.seed)
        held = [np.sort(rng.choice(ar.rows, max(1, round(args.holdout * ar.n_photos)), replace=False))
                for ar in areas]
        is_held = np.zeros(len(ds), bool)
        is_held[np.concatenate(held)] = True
        train = ds.subset(np.flatnonzero(~is_held))
        out = {"data": [str(a), str(b)], "areas": describe(areas), "holdout": args.holdout, "seed": args.seed,
               "code": code_revision(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": "python " + " ".join(sys.argv), "margin_m": MARGIN_M, "by_method": {}, "table": []}
        for spec in args.methods.split(","):
            both, fit_both = score(spec, train, ds, np.concatenate(held))
            res = {"fit_s_combined": fit_both}
            for i, ar in enumerate(areas):
                alone_train = ds.subset(np.setdiff1d(ar.rows, held[i]))
                alone, fit_alone = score(spec, alone_train, ds, held[i])
                mine = both[both["image"].isin(alone["image"])].set_index("image").loc[alone["image"]].reset_index()
                res[f"area{i + 1}"] = r = {**summary(mine, alone, areas, i), "fit_s_alone": fit_alone}
                print(spec, f"area {i + 1}", json.dumps(r), flush=True)
                out["table"].append({"method": spec, "area": f"{i + 1} ({ar.n_photos} photos)", "n": r["n"],
                                     "combined mean m": r["combined_mean_m"], "alone mean m": r["alone_mean_m"],
                                     "ratio": r["ratio_mean"], "in one area": r["answers_in_one_area"],
                                     "in own area": r["answers_in_own_area"],
                                     "coverage combined": r["combined_coverage"]})
            out["by_method"][spec] = res  # (not "results": make_results.py reads that as a bench metrics table)
    out["wall_s"] = round(time.time() - t_start, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
