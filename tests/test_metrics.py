"""evaluate.metrics() against a hand-built table whose every column has a known answer (the headline claims in
README and bench/results.md rest on these numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from img2gps.evaluate import metrics


def table() -> pd.DataFrame:
    return pd.DataFrame({
        "error_m":    [2, 4, 6, 8, 10, 20, 30, 40, 60, 100],
        "radius_m":   [1, 5, 5, 5, 10, 25, 25, 25, 25, 25],   # covered: 4<=5, 10<=10 (inclusive), 20<=25
        "recognised": [True, True, False, True, False, False, False, False, False, True],
        "z2":         [2.0] * 10,
        "predict_ms": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        "hit_1":      [1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        "hit_5":      [1, 1, 0, 1, 0, 1, 0, 0, 0, 0],
        "hit_10":     [1, 1, 1, 1, 0, 1, 0, 0, 0, 1],
    })


def test_every_column_has_its_known_value():
    m = metrics(table(), fit_s=12.5)
    expected = {
        "n": 10,
        "mean_m": 28.0,            # 280 / 10
        "median_m": 15.0,          # (10 + 20) / 2
        "p90_m": 64.0,             # linear interpolation: 60 + 0.1 * (100 - 60)
        "acc_10m": 0.5,            # 2, 4, 6, 8, 10 (inclusive)
        "acc_25m": 0.6,
        "acc_50m": 0.8,
        "mse_norm": 1.0,           # mean z2 / 2 coordinates
        "fit_s": 12.5,
        "predict_ms_p50": 55.0,
        "predict_ms_p95": 95.5,    # 90 + 0.55 * 10
        "radius_coverage": 0.3,
        "radius_median_m": 17.5,   # radii sorted: 1 5 5 5 10 | 25 ...: (10 + 25) / 2
        "recognised_frac": 0.4,
        "recognised_median_m": 6.0,  # recognised errors 2, 4, 8, 100
        "recognised_acc_25m": 0.75,  # 2, 4, 8 of 2, 4, 8, 100
        "chance_ece": None,          # no chance column
        "recall_at_1": 0.2,
        "recall_at_5": 0.4,
        "recall_at_10": 0.6,
    }
    assert set(m) == set(expected)
    for k, v in expected.items():
        assert m[k] == pytest.approx(v) if v is not None else m[k] is None, k


def test_no_recognised_no_retrieval_and_empty():
    t = table().drop(columns=["hit_1", "hit_5", "hit_10"]).assign(recognised=False)
    m = metrics(t)
    assert m["recognised_frac"] == 0.0 and m["recognised_median_m"] is None
    assert m["recall_at_1"] is None and m["recall_at_10"] is None and np.isnan(m["fit_s"])
    empty = metrics(t.iloc[:0])
    assert empty["n"] == 0 and np.isnan(empty["mean_m"])


def test_by_kind_measures_the_radius_promise_per_answer_kind():
    t = table()
    t["source"] = ["consensus", "consensus", "scene", "consensus", "fallback", "fallback", "fallback", "fallback",
                   "fallback", "consensus"]
    k = metrics(t)["by_kind"]
    assert k["recognised"] == {"n": 4, "share": 0.4, "radius_coverage": 0.25, "radius_median_m": 5.0,
                               "median_m": 6.0, "acc_25m": 0.75, "chance_mean": None}
    # recognised: errors 2 4 8 100, radii 1 5 5 25 -> only 4<=5
    t["difficulty"] = ["consensus:inliers=b0"] * 2 + ["scene"] + ["consensus:inliers=b1"] + ["fallback"] * 6
    t["chance_25m"] = np.linspace(0.1, 1.0, 10)
    k = metrics(t)["by_kind"]
    assert k["difficulty=consensus:inliers=b0"]["n"] == 2 and "difficulty=scene" not in k
    assert k["difficulty=consensus:inliers=b1"]["chance_mean"] == pytest.approx(0.4)
    assert k["not recognised"]["n"] == 6 and k["source=fallback"]["n"] == 5 and k["source=scene"]["n"] == 1
    assert k["source=fallback"]["radius_coverage"] == pytest.approx(0.4)  # 10<=10, 20<=25 of 10 20 30 40 60
