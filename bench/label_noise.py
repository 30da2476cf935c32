#!/usr/bin/env python3
"""Label-noise bench (issue 22): inject seeded label errors into copies of penn91 and bgu-west, run
`img2gps data check` on each, and measure what it finds and what its corrections are worth.

Kinds of injected error (seeded; the corrupted labels live only in memory and in a temp dir, never the repo):
  a  10% of the photos moved 30-150 m in random directions
  b  every label + 8 m Gaussian noise (per axis 8/sqrt(2) m, so 8 m RMS)
  c  every photo of one capture session moved 40 m in one random direction. A session is one device on one
     day (EXIF time and model; bgu-west has no EXIF, so the time and the device stand-in come from its phone-style
     file names, 20251222_094711.jpg / IMG20251224101500.jpg, i.e. one day of one phone). penn91 has one date for
     90 of its 91 photos, so a whole "date" would be the whole gallery: a session there is date + phone model.
     The session is drawn (seeded) among those holding 5-50% of the photos.

Per dataset and kind: precision/recall of `wrong` (and of `wrong`+`doubtful`) against the injected errors, recall
among moved photos that have a verified view (any verified sibling), the share of them that have one, the median
distance of the corrupted label and of the proposed position from the original label (moved photos; a photo with no
proposal keeps its label), the copies in which the injected session was found as shifted (kind c) and those in
which a session that was not moved was flagged as shifted (any kind), and the pose fixes per copy. Detection
figures pool `--repeats` seeded copies per kind (seeds seed + 100 k); the
rerank figures use the first copy., and rerank kfold:5 mean error fitted on the original / corrupted / corrected copy and
on the corrupted copy with the `wrong` photos left out (what `fit --exclude REPORT/wrong.txt` does) or with the
`wrong` and `doubtful` ones left out (`fit --exclude REPORT/flagged.txt`), and
on the corrupted copy after the paper's two cleaning steps (drop drift dates, drop singletons within 5 m),
always evaluated against the original labels. Also: the check on the original data (photos flagged wrong) and its
time. JSON to bench/results/label-noise.json; `python bench/make_results.py` renders it.

  python bench/label_noise.py                       # both sets, kinds a,b,c, with rerank
  python bench/label_noise.py --data penn91 --no-rerank
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

from img2gps.capture_time import session_of  # noqa: E402
from img2gps.data import cleaning as cl  # noqa: E402
from img2gps.labelcheck import CheckConfig, check_dataset  # noqa: E402
from img2gps.labelcheck.apply import corrected_table  # noqa: E402
from img2gps.labelcheck.evidence import capture_meta  # noqa: E402
from img2gps.data.sources import GeoDataset, from_folder  # noqa: E402
from img2gps.geo import LocalFrame, haversine_m  # noqa: E402
from img2gps.provenance import code_revision  # noqa: E402

KINDS = {"a": "10% moved 30-150 m", "b": "all + 8 m Gaussian", "c": "one capture session moved 40 m"}


def sessions(ds) -> tuple[list[str | None], list[str]]:
    cap = capture_meta(ds)
    return [session_of(t, d) for t, d in zip(cap.times, cap.devices)], cap.sources


def corrupt(ds, kind: str, seed: int, sess: list[str | None]) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """(corrupted table, injected mask, details) for one kind; the original table is not modified."""
    rng = np.random.default_rng(seed)
    frame = LocalFrame.around(ds.lat, ds.lon)
    en = frame.to_en(ds.lat, ds.lon)
    n = len(ds)
    moved = np.zeros(n, bool)
    info: dict = {}
    if kind == "a":
        idx = rng.choice(n, max(1, round(0.1 * n)), replace=False)
        ang = rng.uniform(0, 2 * np.pi, len(idx))
        dist = rng.uniform(30, 150, len(idx))
        en[idx] += np.c_[np.sin(ang), np.cos(ang)] * dist[:, None]
        moved[idx] = True
    elif kind == "b":
        en += rng.normal(0, 8 / np.sqrt(2), en.shape)
        moved[:] = True
    elif kind == "c":
        counts = pd.Series([s for s in sess if s is not None]).value_counts()
        ok = [s for s, c in counts.items() if 0.05 * n <= c <= 0.5 * n]
        if not ok:
            raise SystemExit(f"{ds.name}: no capture session holds 5-50% of the photos")
        pick = sorted(ok)[int(rng.integers(len(ok)))]
        idx = np.array([i for i, s in enumerate(sess) if s == pick])
        a = rng.uniform(0, 2 * np.pi)
        en[idx] += 40 * np.array([np.sin(a), np.cos(a)])
        moved[idx] = True
        info = {"session": pick, "photos": int(len(idx)), "bearing_deg": round(float(np.degrees(a)) % 360, 1)}
    lat, lon = frame.to_latlon(en)
    t = ds.table.copy()
    t["Latitude"], t["Longitude"] = lat, lon
    return t, moved, info


def dist_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    return np.asarray(haversine_m(lat1, lon1, lat2, lon2), float)


RERANK_CACHE: dict = {}  # gallery labels + rows kept -> result: a deterministic fit on identical input is not re-run


def _key(ds_name: str, table: pd.DataFrame, keep: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha1(ds_name.encode())
    h.update(np.ascontiguousarray(table[["Latitude", "Longitude"]].to_numpy(float)).tobytes())
    h.update(np.ascontiguousarray(keep).tobytes())
    return h.hexdigest()


def rerank_kfold(ds_truth, tables: dict[str, pd.DataFrame | None], keep: dict[str, np.ndarray], k: int = 5,
                 out: dict | None = None, on_variant=None) -> dict:
    """rerank kfold:k mean/median error of galleries with each table's labels (rows `keep`), against the truth."""
    from img2gps.evaluate import score_queries
    from img2gps.data.splits import folds_for_protocol
    from img2gps.geo import latlon_sd
    from img2gps.predictors.registry import make_predictor

    folds = folds_for_protocol(f"kfold:{k}", ds_truth)
    out = {} if out is None else out
    for name, table in tables.items():
        key = _key(ds_truth.name, table, keep[name])
        if key in RERANK_CACHE:  # e.g. the original for every kind, or a corrected copy that changed nothing
            out[name] = dict(RERANK_CACHE[key], same_input_as=RERANK_CACHE[key]["variant"])
            print(f"  rerank {name}: same gallery as {out[name]['same_input_as']}", file=sys.stderr, flush=True)
            continue
        ds = GeoDataset(table, ds_truth.reader, ds_truth.name)
        errs, fit_s = [], 0.0
        smallest = min(int(keep[name][f.train].sum()) for f in folds)
        if smallest < 2:  # e.g. drift dates on a one-date gallery: the step drops (almost) every photo
            out[name] = {"mean_m": None, "median_m": None, "gallery_kept": int(keep[name].sum()),
                         "note": f"not fitted: a fold keeps {smallest} gallery photo(s)"}
            print(f"  rerank {name}: {out[name]['note']}", file=sys.stderr, flush=True)
            continue
        for f in folds:
            train = np.array([i for i in f.train if keep[name][i]], int)
            p = make_predictor("rerank")
            t0 = time.perf_counter()
            p.fit(ds.subset(train))
            fit_s += time.perf_counter() - t0
            sd = latlon_sd(ds.lat[train], ds.lon[train])
            errs += [r["error_m"] for r in score_queries(p, ds_truth, f.val, *sd)]
        out[name] = {"mean_m": round(float(np.mean(errs)), 2), "median_m": round(float(np.median(errs)), 2),
                     "gallery_kept": int(keep[name].sum()), "fit_s": round(fit_s, 1)}
        RERANK_CACHE[key] = dict(out[name], variant=name)
        if on_variant is not None:
            on_variant()
        print(f"  rerank {name}: mean {out[name]['mean_m']} m", file=sys.stderr, flush=True)
    return out


def detect(ds, kind: str, seed: int, sess) -> dict:
    """One seeded corrupted copy, checked: per-photo arrays plus the copy itself."""
    table, moved, info = corrupt(ds, kind, seed, sess)
    dsc = GeoDataset(table, ds.reader, ds.name)
    t0 = time.perf_counter()
    res = check_dataset(dsc, CheckConfig())
    secs = time.perf_counter() - t0
    r = res.table
    fixed = corrected_table(table, res)
    prop = r["proposed_lat"].notna().to_numpy()
    plat = np.where(prop, pd.to_numeric(r["proposed_lat"]), table["Latitude"])
    plon = np.where(prop, pd.to_numeric(r["proposed_lon"]), table["Longitude"])
    return {"table": table, "fixed": fixed, "dsc": dsc, "res": res, "info": info, "seconds": secs,
            "moved": moved, "wrong": (r["verdict"] == "wrong").to_numpy(), "flag": (r["verdict"] != "ok").to_numpy(),
            "sib": ((r["same_spot"] + r["overlap"]) > 0).to_numpy(),
            "before": dist_m(table["Latitude"], table["Longitude"], ds.lat, ds.lon),
            "proposed": dist_m(plat, plon, ds.lat, ds.lon),
            "after": dist_m(fixed["Latitude"], fixed["Longitude"], ds.lat, ds.lon)}


VARIANTS = ("original", "corrupted", "corrected", "corrupted_leave_out_wrong", "corrupted_leave_out_flagged",
            "corrupted_drop_drift_dates",
            "corrupted_drop_singletons_5m")


def run_kind(ds, kind: str, seed: int, sess, src, rerank: bool, repeats: int, variants=VARIANTS,
             sink: list | None = None, on_variant=None) -> dict:
    runs = [detect(ds, kind, seed + 100 * k, sess) for k in range(repeats)]
    cat = {key: np.concatenate([x[key] for x in runs]) for key in ("moved", "wrong", "flag", "sib", "before",
                                                                    "proposed", "after")}
    moved, wrong, flag, sib = cat["moved"], cat["wrong"], cat["flag"], cat["sib"]
    first = runs[0]
    table, fixed, dsc, res = first["table"], first["fixed"], first["dsc"], first["res"]

    def pr(pred, truth):
        tp = int((pred & truth).sum())
        return (round(tp / pred.sum(), 4) if pred.sum() else None), (round(tp / truth.sum(), 4) if truth.sum() else None)

    p_w, r_w = pr(wrong, moved)
    p_f, r_f = pr(flag, moved)
    _, r_w_sib = pr(wrong & sib, moved & sib)
    _, r_f_sib = pr(flag & sib, moved & sib)
    ms = moved & sib

    def med(x, m):
        return round(float(np.median(x[m])), 2) if m.any() else None

    out = {"kind": kind, "what": KINDS[kind], "repeats": repeats, "seeds": [seed + 100 * k for k in range(repeats)],
           **({"session": [x["info"] for x in runs]} if first["info"] else {}),
           "injected": int(moved.sum()), "injected_with_verified_view": int(ms.sum()),
           "flagged_wrong": int(wrong.sum()), "flagged_doubtful": int((flag & ~wrong).sum()),
           "false_wrong": int((wrong & ~moved).sum()),
           "precision_wrong": p_w, "recall_wrong": r_w, "precision_flagged": p_f, "recall_flagged": r_f,
           "moved_with_verified_view": round(float(ms.sum() / max(moved.sum(), 1)), 3),
           "recall_wrong_with_view": r_w_sib, "recall_flagged_with_view": r_f_sib,
           "median_label_to_original_m": med(cat["before"], moved),
           "median_proposed_to_original_m": med(cat["proposed"], moved),
           "median_label_to_original_with_view_m": med(cat["before"], ms),
           "median_proposed_to_original_with_view_m": med(cat["proposed"], ms),
           "median_corrected_label_to_original_m": med(cat["after"], moved),
           "mean_corrected_label_to_original_all_m": round(float(cat["after"].mean()), 2),
           "mean_corrupted_label_to_original_all_m": round(float(cat["before"].mean()), 2),
           "check_s": [round(x["seconds"], 1) for x in runs],
           "shifted_sessions": [x["res"].summary["shifted_sessions"] for x in runs],
           # a session flagged as shifted: the injected one found (kind c), and an unmoved one flagged (any kind)
           "copies_session_found": sum(bool(x["info"]) and any(s["session"] == x["info"]["session"] for s in
                                                               x["res"].summary["shifted_sessions"]) for x in runs),
           "copies_unmoved_session_flagged": sum(any(s["session"] != x["info"].get("session") for s in
                                                     x["res"].summary["shifted_sessions"]) for x in runs),
           "pose_fixes": [x["res"].summary["pairs"].get("pose_fixes") for x in runs]}
    wrong = first["wrong"]
    print(f" {ds.name} kind {kind}: {json.dumps({k: v for k, v in out.items() if k != 'shifted_sessions'})}",
          file=sys.stderr, flush=True)
    if sink is not None:
        sink.append(out)
    if rerank:
        # the paper's cleaning steps on the corrupted copy: drift dates and singletons (5 m) dropped
        en = LocalFrame.around(dsc.lat, dsc.lon).to_en(dsc.lat, dsc.lon)
        cap = capture_meta(dsc)
        tm, devs = cap.times, cap.devices
        rep = cl.drift_dates(tm, devs, en, dsc.ids)
        dates = [cl.date_of(t) for t in tm]
        keep_drift = np.array([d not in rep.flagged for d in dates], bool)
        keep_single = ~cl.singleton_mask(en, 5.0)
        n = len(ds)
        tables = {"original": ds.table, "corrupted": table, "corrected": fixed, "corrupted_leave_out_wrong": table,
                  "corrupted_leave_out_flagged": table,
                  "corrupted_drop_drift_dates": table, "corrupted_drop_singletons_5m": table}
        keep = {"original": np.ones(n, bool), "corrupted": np.ones(n, bool), "corrected": np.ones(n, bool),
                "corrupted_leave_out_wrong": ~wrong, "corrupted_leave_out_flagged": ~first["flag"],
                "corrupted_drop_drift_dates": keep_drift, "corrupted_drop_singletons_5m": keep_single}
        out["drift_dates_flagged"] = rep.flagged
        out["rerank_kfold5"] = rr = {}
        rerank_kfold(ds, {v: tables[v] for v in variants}, keep, out=rr, on_variant=on_variant)
        out["corruption_cost_m"] = round(rr["corrupted"]["mean_m"] - rr["original"]["mean_m"], 2)
        out["recovered_share"] = _recovered(rr)
    return out


def _recovered(rr: dict) -> float | None:
    """Share of the accuracy the corruption cost that the corrected copy wins back (None until both are known)."""
    try:
        cost = rr["corrupted"]["mean_m"] - rr["original"]["mean_m"]
        return round((rr["corrupted"]["mean_m"] - rr["corrected"]["mean_m"]) / cost, 3) if cost > 0 else None
    except KeyError:
        return None


def table_rows(results: dict) -> list[dict]:
    rows = []
    for data, d in results.items():
        for k in d["kinds"]:
            rr = k.get("rerank_kfold5", {})
            rows.append({
                "data": data, "kind": f"{k['kind']}: {k['what']}", "injected": k["injected"],
                "prec. wrong": k["precision_wrong"], "rec. wrong": k["recall_wrong"],
                "with view": k["injected_with_verified_view"], "false wrong": k["false_wrong"],
                "rec. wrong (with view)": k["recall_wrong_with_view"], "prec. flagged": k["precision_flagged"],
                "rec. flagged": k["recall_flagged"], "moved with view": k["moved_with_verified_view"],
                "median label->orig m (with view)": k["median_label_to_original_with_view_m"],
                "median proposed->orig m (with view)": k["median_proposed_to_original_with_view_m"],
                "rerank orig m": rr.get("original", {}).get("mean_m"),
                "rerank corrupted m": rr.get("corrupted", {}).get("mean_m"),
                "rerank corrected m": rr.get("corrected", {}).get("mean_m"),
                "rerank wrong left out m": rr.get("corrupted_leave_out_wrong", {}).get("mean_m"),
                "rerank flagged left out m": rr.get("corrupted_leave_out_flagged", {}).get("mean_m"),
                "rerank drop drift dates m": rr.get("corrupted_drop_drift_dates", {}).get("mean_m"),
                "rerank drop singletons m": rr.get("corrupted_drop_singletons_5m", {}).get("mean_m"),
                "recovered": _recovered(rr), "check s": float(np.median(k["check_s"]))})
    return rows


def write(a, results: dict, done: bool) -> None:
    """The bench JSON, replaced atomically (also after each kind, marked "complete": false until the end)."""
    out = {"title": f"Label noise (issue 22): `data check` against injected label errors, {a.data}",
           "command": "python bench/label_noise.py " + " ".join(sys.argv[1:]),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "code": a.code,
           "complete": done, "seed": a.seed, "repeats": a.repeats, "results_by_data": results,
           "table": table_rows(results)}
    p = Path(a.json)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkstemp(dir=p.parent, suffix=".tmp")[1])
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(p)
    print(f"wrote {p}" + ("" if done else " (partial)"), file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="penn91,bgu-west")
    ap.add_argument("--kinds", default="a,b,c")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rerank", default="penn91,bgu-west", help="datasets on which rerank kfold:5 is fitted")
    ap.add_argument("--rerank-kinds", default="a,b,c", help="kinds on which rerank kfold:5 is fitted")
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="galleries rerank is fitted on (subset of: "
                                                                    + ", ".join(VARIANTS) + ")")
    ap.add_argument("--repeats", type=int, default=5,
                    help="seeded corrupted copies per kind for the detection figures (rerank uses the first)")
    ap.add_argument("--json", default=str(HERE / "results" / "label-noise.json"))
    a = ap.parse_args()
    a.code = code_revision()  # the code this run started with (a later commit must not be credited with it)
    results: dict = {}
    for name in a.data.split(","):
        ds = from_folder(DATA / name)
        sess, src = sessions(ds)
        t0 = time.perf_counter()
        base = check_dataset(ds, CheckConfig())
        secs = time.perf_counter() - t0
        bt = base.table
        wrong = bt[bt["verdict"] == "wrong"]
        results[name] = {
            "photos": len(ds), "time_source": pd.Series(src).value_counts().to_dict(),
            "original_check": {"seconds": round(secs, 1), "wrong": int(len(wrong)),
                               "wrong_share": round(len(wrong) / len(ds), 4),
                               "doubtful": int((bt["verdict"] == "doubtful").sum()),
                               "with_verified_view": base.summary["with_verified_view"],
                               "same_spot_tolerance_m": base.summary["same_spot_tolerance_m"],
                               "shifted_sessions": base.summary["shifted_sessions"],
                               "pairs": base.summary["pairs"],
                               "wrong_photos": [{"image": r.image, "reason": r.reason} for r in wrong.itertuples()]},
            "kinds": []}
        print(f"{name}: original check {secs:.1f} s, {len(wrong)} wrong", file=sys.stderr, flush=True)
        for i, kind in enumerate(a.kinds.split(",")):
            # partial results (after each kind and each rerank gallery) survive an interrupted run
            run_kind(ds, kind, a.seed + i, sess, src, not a.no_rerank and name in a.rerank.split(",")
                     and kind in a.rerank_kinds.split(","), a.repeats, a.variants.split(","),
                     sink=results[name]["kinds"], on_variant=lambda: write(a, results, done=False))
            write(a, results, done=False)
    write(a, results, done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
