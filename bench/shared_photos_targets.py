#!/usr/bin/env python3
"""Issue 20's targets table (photos as people share them), computed from stored bench JSON (never typed by hand).

Reads bench/results/i20-landed-penn91-kfold5.json (landed rerank) and i20-penn91-kfold5.json (rerank with its
shared-photo steps, rerank:prep=...), both `--query-as all` on penn91 kfold:5; i20-latency.json (bench/shared_photos_latency.py)
and i20-penn91-loo.json when present. Writes bench/results/i20-targets.json, which bench/make_results.py renders.
Re-run: python bench/shared_photos_targets.py
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The targets: recognised share as a ratio to the same photos as taken, same run (kinds not named: none).
RECOGNISED = {"reencode": 0.95, "crop": 0.9, "screenshot": 0.9, "filter": 0.85, "lowlight": 0.85, "thumbnail": 0.8}
MEAN_RATIO, COVERAGE, LOO_MEAN_M, P50_RATIO = 1.25, 0.75, 34.0, 1.2


def load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def kind_rows(d: dict | None) -> dict:
    """{kind: ratio row} of the run's one method besides the mean-coordinate baseline."""
    rows = [r for r in (d or {}).get("table", []) if r["method"] != "mean-coordinate"]
    return {r["query as"]: r for r in rows}


def rows() -> list[dict]:
    out = []
    landed, new = kind_rows(load("i20-landed-penn91-kfold5")), kind_rows(load("i20-penn91-kfold5"))

    def cell(r: dict | None, key: str, pct: bool = False) -> str:
        if r is None or r.get(key) is None:
            return "–"
        return f"{100 * r[key]:.0f}%" if pct else f"{r[key]:.2f}"

    def add(target: str, key: str, kind: str, ok, pct: bool = False):
        n = new.get(kind)
        met = "–" if n is None or n.get(key) is None or ok is None else ("yes" if ok(n[key]) else "no")
        out.append({"target (penn91 kfold:5, rerank)": target, "landed": cell(landed.get(kind), key, pct),
                    "now": cell(n, key, pct), "met now": met})

    for kind in sorted(set(landed) | set(new), key=lambda k: list(RECOGNISED).index(k) if k in RECOGNISED else 99):
        t = RECOGNISED.get(kind)
        add(f"{kind}: recognised ratio >= {t}" if t else f"{kind}: recognised ratio (no target)", "recognised ratio",
            kind, (lambda v, t=t: v >= t) if t else None)
        add(f"{kind}: mean error ratio <= {MEAN_RATIO}", "mean ratio", kind, lambda v: v <= MEAN_RATIO)
        add(f"{kind}: radius covers >= {COVERAGE:.0%}", "radius cover", kind, lambda v: v >= COVERAGE, pct=True)
    loo = load("i20-penn91-loo")
    if loo and "rerank" in loo["results"]:
        m = loo["results"]["rerank"]["mean_m"]
        out.append({"target (penn91 kfold:5, rerank)": f"no loss: penn91 loo rerank mean <= {LOO_MEAN_M:.0f} m",
                    "landed": "33.3 (main-loo)", "now": f"{m:.1f}", "met now": "yes" if m <= LOO_MEAN_M else "no"})
    lat = load("i20-latency")
    if lat:
        r = lat["table"][0]["p50 ratio on/off"]
        out.append({"target (penn91 kfold:5, rerank)": f"camera files' query p50 <= {P50_RATIO}x landed (back to back)",
                    "landed": f"{lat['table'][0]['prep off p50 ms']:.0f} ms",
                    "now": f"{lat['table'][0]['prep on p50 ms']:.0f} ms ({r:.2f}x)",
                    "met now": "yes" if r <= P50_RATIO else "no"})
    return out


def main() -> None:
    doc = {"title": "Issue 20 targets: photos as people share them, measured against target "
                    "(computed by bench/shared_photos_targets.py)",
           "command": "python bench/shared_photos_targets.py",
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "table": rows()}
    (RESULTS / "i20-targets.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS / 'i20-targets.json'} ({len(doc['table'])} rows)")


if __name__ == "__main__":
    main()
