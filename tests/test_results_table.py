"""The one results table of bench and eval: a method without radii shows no coverage (not 0%), and headers are
never cut, whatever the terminal's width (issue 30, fresh-user finds)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from img2gps import bench_outputs
from img2gps.bench_outputs import NO_VALUE, RESULT_COLUMNS, print_results, table_width
from img2gps.evaluate import metrics


def _rows(radius):
    e = np.array([5.0, 20.0, 40.0, 80.0])
    return pd.DataFrame({"error_m": e, "radius_m": radius, "recognised": False, "z2": 1.0, "predict_ms": 1.0})


def _full(**over):
    m = {k: 0.5 for _, k in RESULT_COLUMNS} | {"heading_n": 7, "mean_m": 33.3, "predict_ms_p50": 1234.5}
    return m | over


def _printed(results, columns, monkeypatch) -> str:
    monkeypatch.setattr(bench_outputs, "table_width", lambda: columns)  # 0: output to a file or pipe
    buf = io.StringIO()
    print_results(results, "penn91 — loo — n=91", file=buf)
    return buf.getvalue()


def test_a_baseline_without_radii_has_no_coverage(monkeypatch):
    base = metrics(_rows(np.nan))  # eval's gallery-centre baseline gives no radius
    assert base["radius_coverage"] is None and base["radius_median_m"] is None
    model = metrics(_rows(np.array([10.0, 10.0, 50.0, 50.0])))
    assert model["radius_coverage"] == 0.5 and model["radius_median_m"] == 30.0
    partial = metrics(_rows(np.array([10.0, np.nan, 50.0, np.nan])))  # coverage over the rows with a radius
    assert partial["radius_coverage"] == 1.0
    out = _printed({"mean-coordinate (gallery centre)": base, "knn": model}, 0, monkeypatch)
    base_line = next(ln for ln in out.splitlines() if "mean-coordinate" in ln)
    cov = [ln for ln in out.splitlines() if "radius cov." in ln][0].index("radius cov.")
    assert NO_VALUE in base_line and "0%" not in base_line[cov - 2:cov + 13]
    knn_line = next(ln for ln in out.splitlines() if "│ knn" in ln)
    assert "50%" in knn_line


def test_headers_are_never_cut(monkeypatch):
    results = {"mean-coordinate (gallery centre)": _full(fit_s=None, radius_coverage=None),
               "rerank:topn=10:min_inliers=15": _full()}
    for columns in (0, 160, 100, 80):
        out = _printed(results, columns, monkeypatch)
        assert "…" not in out, columns
        if columns:
            assert max(len(ln) for ln in out.splitlines()) <= columns, columns
        for head, _ in RESULT_COLUMNS:  # every header whole on one line, every method named whole
            assert any(head in ln for ln in out.splitlines()), (columns, head)
        first = "".join("".join(ln.split("│")[1].split()) for ln in out.splitlines() if ln.startswith("│"))
        assert "mean-coordinate(gallerycentre)" in first and "rerank:topn=10:min_inliers=15" in first, columns
    assert len(_printed(results, 0, monkeypatch).splitlines()) == 7  # piped: one table, one line a row
    monkeypatch.undo()
    monkeypatch.setenv("COLUMNS", "123")
    assert table_width() == 123  # the terminal's width (shutil.get_terminal_size reads $COLUMNS first)


def test_a_figure_no_method_gives_is_left_out(monkeypatch):
    out = _printed({"knn": _full(heading_n=None, heading_median_deg=None, heading_acc_15deg=None)}, 0, monkeypatch)
    assert "heading" not in out and "<=15°" not in out and "radius cov." in out
