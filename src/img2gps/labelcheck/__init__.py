"""`img2gps data check`: find and fix bad GPS labels of a gallery from the photos themselves.

evidence.py gathers, per photo and at bounded cost, what other photos say about its label (verified same-spot
and overlapping views, capture-time neighbours, the phone's reported accuracy, retrieval neighbours);
judge.py turns that into a label score, a verdict with its reason and a proposed position; report.py writes
the Markdown/JSON report and the HTML map; apply.py writes a corrected copy of the dataset.
(data/labels_csv.py is the other, earlier check: a --labels CSV against the photos' own EXIF GPS.)
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..geo import LocalFrame
from .evidence import EvidenceConfig, gather
from .judge import DOUBTFUL, OK, WRONG, JudgeConfig, judge

__all__ = ["CheckConfig", "CheckResult", "check_dataset", "OK", "DOUBTFUL", "WRONG"]


@dataclass
class CheckConfig:
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class CheckResult:
    """table: one row per photo (image, Latitude, Longitude, verdict, score, reason, proposed_lat/lon,
    proposed_sigma_m, moved_m, same_spot, overlap, time_links, h_error_m, time_source, device, siblings,
    retrieval); summary: counts, tolerance, shifted sessions, timings (the report's JSON head)."""
    table: pd.DataFrame
    summary: dict

    def flagged(self) -> pd.DataFrame:
        return self.table[self.table["verdict"] != OK]


def check_dataset(ds, cfg: CheckConfig | None = None) -> CheckResult:
    """Check every label of GeoDataset `ds` against the other photos (see the package docstring)."""
    cfg = cfg or CheckConfig()
    t0 = time.perf_counter()
    frame = LocalFrame.around(ds.lat, ds.lon)
    en = frame.to_en(ds.lat, ds.lon)
    ev = gather(ds, en, cfg.evidence)
    t1 = time.perf_counter()
    verdicts, shifts, tol = judge(en, ev, cfg.judge)
    names = ds.ids
    rows = []
    for i, v in enumerate(verdicts):
        plat = plon = None
        moved = None
        if v.proposed_en is not None:
            la, lo = frame.to_latlon(v.proposed_en)
            plat, plon = float(la), float(lo)
            moved = float(np.linalg.norm(v.proposed_en - en[i]))
        links = ev.links[i]
        sib = sorted((l for l in links if l.kind != "time"), key=lambda l: -l.inliers)
        rows.append({
            "image": names[i], "Latitude": float(ds.lat[i]), "Longitude": float(ds.lon[i]),
            "verdict": v.verdict, "score": v.score, "reason": v.reason,
            "proposed_lat": plat, "proposed_lon": plon, "proposed_sigma_m": v.proposed_sigma_m, "moved_m": moved,
            "same_spot": sum(l.kind == "same-spot" for l in links), "overlap": sum(l.kind == "overlap" for l in links),
            "time_links": sum(l.kind == "time" for l in links),
            "h_error_m": None if not np.isfinite(ev.h_error_m[i]) else float(ev.h_error_m[i]),
            "time_source": ev.time_source[i], "device": ev.devices[i],
            "siblings": ";".join(f"{names[l.j]}:{l.kind}:{l.inliers}" for l in sib[:6]),
            "retrieval": ";".join(names[j] for j in ev.retrieval[i][:3]),
        })
    table = pd.DataFrame(rows)
    counts = table["verdict"].value_counts().to_dict()
    summary = {
        "photos": len(ds), "ok": int(counts.get(OK, 0)), "doubtful": int(counts.get(DOUBTFUL, 0)),
        "wrong": int(counts.get(WRONG, 0)), "unchecked": int(table["score"].isna().sum()),
        "with_verified_view": int(((table["same_spot"] + table["overlap"]) > 0).sum()),
        "same_spot_tolerance_m": round(tol, 2),
        "shifted_sessions": [{"session": s.session, "photos": len(s.photos), "links": s.links,
                              "offset_m": round(float(np.linalg.norm(s.offset_en)), 1),
                              "offset_en_m": [round(float(x), 1) for x in s.offset_en], "se_m": round(s.se_m, 1)}
                             for s in shifts],
        "time_sources": {k: int(v) for k, v in pd.Series(ev.time_source).value_counts().items()},
        "unreadable": [{"image": n, "reason": r} for n, r in ev.unreadable],
        "pairs": ev.stats, "seconds": {"evidence": round(t1 - t0, 2), "total": round(time.perf_counter() - t0, 2)},
        "config": asdict(cfg),
    }
    return CheckResult(table, summary)
