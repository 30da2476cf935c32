"""Bench outputs: the console table of a bench's results and the files a bench writes (JSON, predictions CSV,
error CDF and maps), written atomically after every output path has been checked."""
from __future__ import annotations

import math

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .data.shared_photos import ORIGINAL


def results_table(results: dict, title: str = "") -> "rich.table.Table":  # noqa: F821
    from rich.table import Table

    t = Table(title=title or None)
    cols = [("method", None), ("mean m", "mean_m"), ("median m", "median_m"), ("P90 m", "p90_m"),
            ("<=10m", "acc_10m"), ("<=25m", "acc_25m"), ("<=50m", "acc_50m"), ("nMSE", "mse_norm"),
            ("radius cov.", "radius_coverage"), ("recog.", "recognised_frac"), ("verified", "verified_frac"),
            ("R@1", "recall_at_1"),
            ("R@10", "recall_at_10"), ("fit s", "fit_s"),
            ("ms/img p50", "predict_ms_p50"), ("heading n", "heading_n"), ("heading° p50", "heading_median_deg"),
            ("<=15°", "heading_acc_15deg")]
    for c, _ in cols:
        t.add_column(c, justify="left" if c == "method" else "right")
    for spec, m in results.items():
        cells = [spec]
        for _, k in cols[1:]:
            v = m.get(k)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                cells.append("-")
            elif k == "heading_n":
                cells.append(str(v))
            elif k.startswith("acc") or k.startswith("recall") or k in ("radius_coverage", "recognised_frac",
                                                                         "verified_frac", "heading_acc_15deg"):
                cells.append(f"{100 * v:.0f}%")
            elif k == "mse_norm":
                cells.append(f"{v:.3f}")
            else:
                cells.append(f"{v:.1f}")
        t.add_row(*cells)
    return t


def _safe(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def strict_json(o):
    """o with numpy scalars made plain and NaN / infinity made null, so the JSON is strict (RFC 8259): a figure
    that does not exist (e.g. the median radius of an empty group) must not break a strict reader."""
    if isinstance(o, dict):
        return {str(k): strict_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict_json(v) for v in o]
    if hasattr(o, "item") and not hasattr(o, "__len__"):
        o = o.item()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if o is None or isinstance(o, (str, int, bool)):
        return o
    return str(o)


def write_outputs(json_path, result: dict, preds: pd.DataFrame, plots: bool = True,
                  check: Callable[[Path, str], None] | None = None) -> list:
    """OUT.json, OUT.predictions.csv, OUT.cdf.png and one error-line map per method (at full gallery size).

    check(path, kind) (e.g. outputs.check_file with the command's inputs bound) is called for every file before
    any is written; it raises to refuse one (DataError).
    """
    import json

    from .outputs import atomic_write
    from .provenance import code_revision

    json_path = Path(json_path)
    result = {**result, "code": result.get("code") or code_revision()}  # git revision + dirty flag
    stem = json_path.with_suffix("")
    full = preds
    if plots and len(preds):
        full = preds[preds["fraction"] >= preds["fraction"].max()]
        if "query_as" in full:  # the plots show the photos as taken
            full = full[full["query_as"] == ORIGINAL]
    planned = [(json_path, "bench-json")]
    if len(preds):
        planned.append((Path(f"{stem}.predictions.csv"), "predictions-csv"))
    if plots and len(preds):
        planned.append((Path(f"{stem}.cdf.png"), "plot-png"))
        planned += [(Path(f"{stem}.{_safe(s)}.map.png"), "plot-png") for s in full["spec"].unique()]
    for path, kind in planned if check else ():
        check(path, kind)
    text = json.dumps(strict_json(result), indent=2, allow_nan=False)
    written = [atomic_write(json_path, lambda tmp: tmp.write_text(text))]
    if len(preds):
        cols = ["spec", "query_as", "image", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_m", "radius_m",
                "confidence", "chance_25m", "recognised", "difficulty", "source", "true_heading", "heading_deg", "heading_radius_deg",
                "copy_heading", "predict_ms", "fraction", "query_region", "query_view"]
        table = preds[[c for c in cols if c in preds.columns]]
        written.append(atomic_write(planned[1][0], lambda tmp: table.to_csv(tmp, index=False, float_format="%.7f")))
    if plots and len(preds):
        from .plots import error_cdf, error_lines_map

        errs = {s: g["error_m"].to_numpy() for s, g in full.groupby("spec", sort=False)}
        written.append(error_cdf(Path(f"{stem}.cdf.png"), errs, f"Error CDF — {result['protocol']}"))
        for s, g in full.groupby("spec", sort=False):
            written.append(error_lines_map(Path(f"{stem}.{_safe(s)}.map.png"), g["true_lat"], g["true_lon"],
                                           g["pred_lat"], g["pred_lon"], f"{s} — {result['protocol']}"))
    return written
