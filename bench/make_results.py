#!/usr/bin/env python3
"""Generate bench/results.md from bench/results/*.json. Nothing in results.md is edited by hand.

Each JSON is one section: it records the command that made it and its date, so a section is re-run alone by
running that command (which rewrites its JSON) and then this script. Optional prose for a section lives in
bench/results/<name>.notes.md (what the numbers mean; written by whoever ran it).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

PAPER = """The reference paper ("Image2GPS Localization via Regression and Contrastive Retrieval") on the same block,
trained on its own ~2,600 photos (we do not have them; our gallery is 91 photos, so compare methods side by side
within one run, never against these): EfficientNet-B0 regression 48.5 m mean, contrastive k-NN 49.5 m,
k-NN over DINO ViT-S/8 54 m, predicting the mean 88.8 m."""

COLS = [("mean m", "mean_m", "f1"), ("median m", "median_m", "f1"), ("P90 m", "p90_m", "f1"),
        ("<=10 m", "acc_10m", "pct"), ("<=25 m", "acc_25m", "pct"), ("<=50 m", "acc_50m", "pct"),
        ("nMSE", "mse_norm", "f3"), ("radius cover", "radius_coverage", "pct"),
        ("radius median m", "radius_median_m", "f1"), ("recognised", "recognised_frac", "pct"),
        ("verified", "verified_frac", "pct"),
        ("recog. median m", "recognised_median_m", "f1"), ("recog. <=25 m", "recognised_acc_25m", "pct"),
        ("chance ECE", "chance_ece", "f3"), ("R@1", "recall_at_1", "pct"), ("R@10", "recall_at_10", "pct"),
        ("fit s", "fit_s", "f1"),
        ("ms/photo p50", "predict_ms_p50", "f0"), ("ms/photo p95", "predict_ms_p95", "f0"),
        ("heading n", "heading_n", "int"), ("heading median °", "heading_median_deg", "f1"),
        ("heading <=15°", "heading_acc_15deg", "pct"), ("heading <=30°", "heading_acc_30deg", "pct"),
        ("heading radius cover", "heading_radius_coverage", "pct")]


def fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "int":
        return str(int(v))
    if kind == "pct":
        return f"{100 * v:.0f}%"
    return f"{v:.{int(kind[1])}f}"


def metrics_table(results: dict) -> list[str]:
    lines = ["| method | " + " | ".join(c for c, _, _ in COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for spec, m in results.items():
        if m.get("based_on"):
            spec = f"{spec} (from {m['based_on']})"
        lines.append(f"| `{spec}` | " + " | ".join(fmt(m.get(k), kind) for _, k, kind in COLS) + " |")
    return lines


KIND_COLS = [("n", "n", "int"), ("share", "share", "pct"), ("radius cover", "radius_coverage", "pct"),
             ("radius median m", "radius_median_m", "f1"), ("error median m", "median_m", "f1"),
             ("<=25 m (precision)", "acc_25m", "pct"), ("mean chance", "chance_mean", "f2")]


def kinds_table(results: dict) -> list[str]:
    """Per method, answer kind (recognised / not / each source) and difficulty bin (difficulty=KIND:SIGNAL=bI,
    the Mondrian group whose radius applied): the radius promise measured per kind and bin."""
    rows = [(spec, kind, v) for spec, m in results.items() for kind, v in (m.get("by_kind") or {}).items()]
    if not rows:
        return []
    out = ["By answer kind:", "", "| method | kind | " + " | ".join(c for c, _, _ in KIND_COLS) + " |",
           "|---" * (len(KIND_COLS) + 2) + "|"]
    for spec, kind, v in rows:
        out.append(f"| `{spec}` | {kind} | " + " | ".join(fmt(v.get(k), f) for _, k, f in KIND_COLS) + " |")
    return out


def generic_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c), "f2" if abs(r.get(c)) < 10 else "f1") if isinstance(r.get(c), float)
                                     else "–" if r.get(c) is None else str(r.get(c))
                                     for c in cols) + " |")
    return out


# Section order and titles for the runs named here; any other JSON follows under its own title or file name.
TITLES = {
    "main-loo": "All methods, leave-one-out (headline)",
    "main-kfold5": "Retrieval methods, random 5-fold",
    "main-kfoldgeo5": "Retrieval methods, location-disjoint 5-fold (10 m buffer)",
    "issue4-kfold5": "The paper's trained models (regression, contrastive), random 5-fold",
    "issue4-kfoldgeo5": "The paper's trained models, location-disjoint 5-fold",
    "rerank-loo": "rerank, leave-one-out (method notes and trade-offs)",
    "rerank-kfold-geo5": "rerank, location-disjoint 5-fold",
    "learning_curve_knn_loo": "Learning curve: k-NN against gallery size, leave-one-out",
    "pose-targets": "Issue 12 targets: camera pose, heading and same-spot-aware radius (measured vs target)",
    "pose-loo": "Camera pose and heading (rerank:pose=...), penn91 leave-one-out",
    "pose-bgu-kfoldgeo5": "Same-spot-aware radius, bgu-west location-disjoint 5-fold (10 m buffer)",
    "pose-bgu-kfold5": "Same-spot-aware radius, bgu-west random 5-fold",
    "paper-bgu-kfoldgeo5": "The paper's models on bgu-west, location-disjoint 5-fold (10 m buffer)",
    "paper-bgu-kfold5": "The paper's models on bgu-west, random 5-fold (CPU, cached frozen-trunk features)",
    "gpu-bgu-kfold5": "The paper's models on a GPU (bench/gpu.py): bgu-west random 5-fold, cached features beside "
                      "full fine-tuning, same folds",
    "scale": "Scale (issue 11): rerank on a 1,000-photo synthetic gallery",
    "scale-vectors": "Scale (issue 11): retrieval alone on many vectors",
    "i24-scale-warm": "Scale (issue 24): fit memory before/after on 500-1,000-photo synthetic galleries, extraction cached",
    "i24-scale-fresh": "Scale (issue 24): one fit from a fresh cache, 1,000 synthetic photos",
    "i31-vectors-1m": "Scale (issue 31): retrieval alone, 1,000,000 gallery-like vectors, IVF-PQ fast scan (the index auto picks)",
    "i31-vectors-100k": "Scale (issue 31): retrieval alone, 100,000 gallery-like vectors, IVF-PQ fast scan (where auto starts)",
    "i31-vectors-1m-pq8": "Scale (issue 31): retrieval alone, 1,000,000 vectors, the 8-bit IVF-PQ it replaced",
    "i31-vectors-100k-pq8": "Scale (issue 31): retrieval alone, 100,000 vectors, 8-bit IVF-PQ, two generators",
    "i31-vectors-100k-hnsw": "Scale (issue 31): retrieval alone, 100,000 vectors, HNSW",
    "i11-noloss-main": "No loss (issue 11): rerank leave-one-out on main before the stage refactor",
    "i11-noloss-branch": "No loss (issue 11): rerank leave-one-out with the keypoint store and bounded fit",
    "i20-targets": "Issue 20 targets: photos as people share them (measured vs target)",
    "i20-landed-penn91-kfold5": "Photos as people share them: landed rerank, penn91 random 5-fold, every kind",
    "i20-penn91-kfold5": "Photos as people share them: rerank with its shared-photo steps, penn91 random 5-fold",
    "i20-bgu-kfold5": "Photos as people share them: rerank prep off (landed) and on, bgu-west random 5-fold",
    "i20-latency": "Photos as people share them: camera-file latency, prep off vs on, back to back",
    "i20-penn91-loo": "Photos as people share them: no loss, rerank leave-one-out on penn91",
    "i29-penn91-kfold5-fold1-crop": "Photos as people share them (issue 29): crops, prep off and on with the crops "
                                    "step, penn91 random 5-fold, fold 1 only",
    "i19-penn-loo": "Answers you can trust (issue 19): penn91 leave-one-out, radius and recognised by answer kind",
    "i19-bgu-kfold5": "Answers you can trust (issue 19): bgu-west random 5-fold, by answer kind",
    "i19-bgu-kfoldgeo5": "Answers you can trust (issue 19): bgu-west location-disjoint 5-fold, by answer kind",
    "i19-in-area": "Telling a photo from elsewhere: ROC AUC of the top similarity (issue 19)",
    "i28-penn-loo": "Promises where people take photos (issue 28): penn91 leave-one-out, by answer kind and bin",
    "i28-bgu-kfold5": "Promises where people take photos (issue 28): bgu-west random 5-fold, by answer kind and bin",
    "i28-bgu-knndm5": "Promises where people take photos (issue 28): bgu-west kNNDM 5-fold (held-out photos as far "
                      "from the rest as points spread over the area)",
    "i28-bgu-kfoldgeo5": "Promises where people take photos (issue 28): bgu-west location-disjoint 5-fold (the "
                         "stress case)",
    "i28b-bgu-kfold5": "Issue 28, second calibration (chance on the area hold-out, whole-block hold-out): bgu-west "
                       "random 5-fold",
    "i28b-bgu-knndm5": "Issue 28, second calibration: bgu-west kNNDM 5-fold",
    "i28b-bgu-kfoldgeo5": "Issue 28, second calibration: bgu-west location-disjoint 5-fold (the stress case)",
    "i28b-penn-loo": "Issue 28, second calibration: penn91 leave-one-out",
}


def revision_line(path: Path, d: dict) -> str:
    """Which code made the figures: the git revision (+ dirty flag) the JSON recorded at run time; for JSONs written
    before revisions were recorded, say so and name the last commit that changed the file (the code was at most that)."""
    code = d.get("code") or {}
    if code.get("git_revision"):
        dirty = " with uncommitted changes" if code.get("git_dirty") else ""
        return f"Code: revision `{code['git_revision'][:10]}`{dirty} (recorded at run time)."
    try:
        added = subprocess.run(["git", "-C", str(HERE), "log", "-1", "--format=%H", "--", str(path)],
                               capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError):
        added = []
    if added:
        return (f"Code: revision not recorded at run time; this JSON was last committed in `{added[0][:10]}` "
                "(re-run the command to record one).")
    return "Code: revision not recorded; this JSON is not committed."


def disagreements(files: list[Path]) -> list[str]:
    """The same method, data and protocol in several JSONs with different figures: named, with their revisions,
    so a reader never compares two numbers made by different code without knowing it."""
    seen: dict = {}
    for p in files:
        d = json.loads(p.read_text())
        for spec, m in (d.get("results") or {}).items():
            if isinstance(m, dict) and m.get("mean_m") is not None and d.get("protocol"):
                seen.setdefault((d.get("data"), d["protocol"], spec), []).append((p.stem, m["mean_m"], d))
    out = []
    for (data, protocol, spec), runs in seen.items():
        if len({round(v, 1) for _, v, _ in runs}) > 1:
            parts = ", ".join(f"{v:.1f} m in {stem} ({(d.get('code') or {}).get('git_revision', 'revision not recorded')})"
                              for stem, v, d in runs)
            out.append(f"- `{spec}` on `{protocol}`: {parts}. The runs used different code, so compare methods within "
                       "one file.")
    return out


def section(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    title = d.get("title") or TITLES.get(path.stem, path.stem)
    out = [f"## {title}", ""]
    meta = []
    if d.get("data"):
        meta.append(f"data `{d['data']}`")
    if d.get("protocol"):
        meta.append(f"protocol `{d['protocol']}`")
    if d.get("n"):
        meta.append(f"{d['n']} held-out predictions")
    if d.get("folds_run"):
        meta.append(f"a partial run: fold(s) {', '.join(map(str, d['folds_run']))} of {d.get('n_folds', '?')} only")
    if d.get("resumed_folds"):
        meta.append(f"{d['resumed_folds']} fold result(s) read from an earlier, stopped run of the same command and code")
    if d.get("train_dropped_by_buffer"):
        meta.append(f"{d['train_dropped_by_buffer']} training photos dropped by the spatial buffer (over all folds)")
    if d.get("folds_info"):
        fi = d["folds_info"]
        meta.append(f"kNNDM: {fi['clusters']} clusters; held-out photos' nearest training photo median "
                    f"{fi['heldout_nnd_median_m']:.1f} m (P90 {fi['heldout_nnd_p90_m']:.1f}) against "
                    f"{fi['area_nnd_median_m']:.1f} m (P90 {fi['area_nnd_p90_m']:.1f}) for points spread over the area")
    if d.get("date"):
        meta.append(f"run {d['date']}")
    if d.get("machine"):
        meta.append(f"{d['machine'].get('cpus', '?')} CPU cores")
        if d["machine"].get("gpu"):
            meta.append(f"GPU {d['machine']['gpu']}")
    out += ["; ".join(meta) + ".", ""]
    out += [revision_line(path, d), ""]
    if d.get("complete") is False:
        out += ["**Partial:** the run was stopped before it finished; the table holds what it had measured (– = not "
                "reached).", ""]
    if d.get("command"):
        out += ["Re-run: `" + d["command"] + "` then `python bench/make_results.py`.", ""]
    if d.get("results_fraction", 1.0) != 1.0:
        out += [f"The headline results are for gallery fraction {d['results_fraction']:g} (the run had no 1.0).", ""]
    if isinstance(d.get("results"), dict) and d["results"] and all(isinstance(v, dict) for v in d["results"].values()):
        if d.get("by_fraction"):
            for f, block in d["by_fraction"].items():
                out += [f"Gallery fraction {f}:", ""] + metrics_table(block["results"]) + [""]
        else:
            out += metrics_table(d["results"]) + [""]
            kt = kinds_table(d["results"])
            out += kt + ([""] if kt else [])
    for key in ("table", "steps", "galleries", "retrieval"):
        if isinstance(d.get(key), list):
            out += generic_table(d[key]) + [""]
    notes = path.with_suffix(".notes.md")
    if notes.exists():
        out += [notes.read_text().strip(), ""]
    return out


def main() -> int:
    order = list(TITLES)
    files = sorted((p for p in RESULTS.glob("*.json") if not p.name.endswith(".predictions.json")),
                   key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name))
    lines = ["# Benchmark results", "",
             "Generated by `python bench/make_results.py` from `bench/results/*.json`; do not edit by hand.",
             "Errors are haversine metres between predicted and labelled positions; `acc` columns are the fraction of",
             "photos within that distance; `radius cover` is the fraction whose truth lies inside the predicted radius",
             "(target ~80%); latency is one photo at a time (decode + predict) on this machine's CPU.", "",
             "### Reference (not measured here)", "", PAPER, ""]
    diff = disagreements(files)
    if diff:
        lines += ["### Figures that differ between files", ""] + diff + [""]
    for p in files:
        lines += section(p)
    (HERE / "results.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {HERE / 'results.md'} ({len(files)} sections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
