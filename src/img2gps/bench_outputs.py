"""Bench outputs: the console table of a bench's results and the files a bench writes (JSON, predictions CSV,
error CDF and maps), written atomically after every output path has been checked."""
from __future__ import annotations

import math

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .data.shared_photos import ORIGINAL


RESULT_COLUMNS = [("mean m", "mean_m"), ("median m", "median_m"), ("P90 m", "p90_m"),
                  ("<=10m", "acc_10m"), ("<=25m", "acc_25m"), ("<=50m", "acc_50m"), ("nMSE", "mse_norm"),
                  ("radius cov.", "radius_coverage"), ("recog.", "recognised_frac"), ("verified", "verified_frac"),
                  ("R@1", "recall_at_1"), ("R@10", "recall_at_10"), ("fit s", "fit_s"),
                  ("ms/img p50", "predict_ms_p50"), ("heading n", "heading_n"), ("heading° p50", "heading_median_deg"),
                  ("<=15°", "heading_acc_15deg")]
_PERCENT = ("radius_coverage", "recognised_frac", "verified_frac", "heading_acc_15deg")
NO_VALUE = "—"  # a figure the method does not give (e.g. the radius coverage of a baseline without radii)


def _cell(key: str, v) -> str | None:
    """One figure as the table shows it; None when the method gives none."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if key == "heading_n":
        return str(v)
    if key.startswith(("acc", "recall")) or key in _PERCENT:
        return f"{100 * v:.0f}%"
    return f"{v:.3f}" if key == "mse_norm" else f"{v:.1f}"


def results_tables(results: dict, width: int = 0) -> list:
    """The one table of bench and eval results, as rich Tables: a row per method (results: spec -> metrics dict),
    a column per figure that at least one method gives (a figure no method gives is left out; one a method lacks
    shows NO_VALUE). Every column is as wide as its header and values, so no header is cut or wrapped; when the
    columns do not fit in `width` characters (0 = no limit) they continue in further tables below, each
    beginning with the method column."""
    from rich.table import Table

    cells = {spec: [_cell(k, m.get(k)) for _, k in RESULT_COLUMNS] for spec, m in results.items()}
    keep = [j for j in range(len(RESULT_COLUMNS)) if any(row[j] is not None for row in cells.values())]
    cap = min(40, max(16, width // 3)) if width else 40  # a longer spec folds: a value, not a header
    method_w = min(max([len(s) for s in results] + [6]), cap)
    need = {j: max([len(RESULT_COLUMNS[j][0])] + [len(row[j] or NO_VALUE) for row in cells.values()]) for j in keep}
    groups, used = [[]], method_w + 4  # borders and padding: 3 per column plus the closing border
    for j in keep:
        if width and groups[-1] and used + need[j] + 3 > width:
            groups.append([])
            used = method_w + 4
        groups[-1].append(j)
        used += need[j] + 3
    tables = []
    for group in groups:
        t = Table()
        t.add_column("method", justify="left", overflow="fold", min_width=method_w, max_width=method_w)
        for j in group:
            t.add_column(RESULT_COLUMNS[j][0], justify="right", no_wrap=True, min_width=need[j])
        for spec, row in cells.items():
            t.add_row(spec, *[row[j] or NO_VALUE for j in group])
        tables.append(t)
    return tables


def table_width() -> int:
    """Columns to fit a table in: the terminal's width (or $COLUMNS, shutil.get_terminal_size), 0 (no limit)
    when output goes to a file or pipe, where one line per row reads best."""
    import shutil

    return shutil.get_terminal_size(fallback=(0, 0)).columns


def print_results(results: dict, title: str = "", file=None) -> None:
    """Print the results tables (results_tables) sized to the terminal; never a header cut mid-word."""
    from rich.console import Console

    w = table_width()
    con = Console(file=file, width=w or 100_000)
    for g, t in enumerate(results_tables(results, w)):
        if title:  # on its own line, as given: a long path in it is neither folded nor read as markup
            con.print(title + (" (continued)" if g else ""), markup=False, highlight=False, soft_wrap=True)
        con.print(t)


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
