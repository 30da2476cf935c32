"""Does any signal the query shows tell a photo with a same-spot sibling in the gallery from one without?

knn only (fast): per protocol fold, the calibration records of the training gallery (predictors.knn.
calibration_records: near / area / block / self hold-outs) and the fold's held-out photos answered as queries, then
the share within 25 m per quantile bin of each signal (top similarity, top-10 spread), per hold-out and protocol,
and each protocol's coverage, median radius and chance ECE. Usage (small, a minute on bgu-west):
    python bench/knn_signals.py --data ../shared/data/bgu-west --protocols kfold:5,knndm:5,kfold-geo:5
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from img2gps.data.sources import load_dataset
from img2gps.data.splits import folds_for_protocol
from img2gps.features.cache import embed_dataset
from img2gps.features.encoders import get_encoder
from img2gps.localization.chance import CHANCE_M, ece
from img2gps.localization.difficulty import SHORTLIST_N, positions_spread
from img2gps.localization.knn import KNNState
from img2gps.predictors.knn import KNNConfig, calibrate_radius, calibration_records
from img2gps.retrieval.database import CosineIndex


def fold_records(v, ds, fold, cfg):
    gal = pd.DataFrame({"Latitude": ds.lat[fold.train], "Longitude": ds.lon[fold.train]})
    st = KNNState.build(CosineIndex(v[fold.train], "flat"), gal)
    st.radius_models, st.bins = calibrate_radius(st, cfg)
    rec = calibration_records(st, cfg)
    cal = pd.DataFrame({"src": ["cal:" + h for h in rec["holdout"]], "hit": rec["err"] <= CHANCE_M,
                        "top_sim": rec["top_sim"], "spread10": rec["spread10"]})
    rows = []
    for q in fold.val:
        pos, spread, idx, sims = st.answer(v[q], cfg.k, cfg.agg, SHORTLIST_N)
        s10 = positions_spread(st.en[idx[:SHORTLIST_N]])
        r = st.radius(spread, st.group(float(sims[0]), s10, 0, st.sim_drop(sims, idx, cfg.k)))
        err = float(np.linalg.norm(pos - st.plane.areas[0].frame.to_en(ds.lat[q], ds.lon[q])))
        rows.append({"hit": err <= CHANCE_M, "inside": err <= r, "radius": r, "top_sim": float(sims[0]),
                     "spread10": s10, "chance": st.radius_models[0].pooled.chance(r)})
    return cal, pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocols", default="kfold:5,knndm:5,kfold-geo:5")
    a = ap.parse_args()
    ds, cfg = load_dataset(a.data), KNNConfig()
    v = embed_dataset(get_encoder(cfg.embed), ds)
    all_rows = []
    for proto in a.protocols.split(","):
        cals, tests = zip(*(fold_records(v, ds, f, cfg) for f in folds_for_protocol(proto, ds)))
        t = pd.concat(tests)
        print(f"{proto}: coverage {t.inside.mean():.3f}, radius median {t.radius.median():.1f} m, "
              f"within 25 m {t.hit.mean():.3f}, chance mean {t.chance.mean():.3f}, ECE {ece(t.chance, t.hit):.3f}")
        all_rows.append(t.assign(src="test:" + proto)[["src", "hit", "top_sim", "spread10"]])
        if not any(r["src"].str.startswith("cal:").any() for r in all_rows[:-1]):
            all_rows.append(pd.concat(cals))
    a_ = pd.concat(all_rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    for sig in ("top_sim", "spread10"):
        a_["bin"] = pd.qcut(a_[sig], 5)
        tab = a_.pivot_table(index="bin", columns="src", values="hit", aggfunc="mean", observed=False).round(2)
        print(f"\nshare within {CHANCE_M:g} m by {sig} quintile (calibration records of the first protocol's folds):")
        print(tab.to_string())


if __name__ == "__main__":
    main()
