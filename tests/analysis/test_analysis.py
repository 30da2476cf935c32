"""The paper's analyses as tools: learning curve, backbone scaling, feature shaping, coverage map (synthetic data)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from img2gps.analysis import coverage as cov
from img2gps.analysis.backbones import BackboneConfig, count_parameters, onnx_parameters, specs_for
from img2gps.analysis.learning_curve import CurveConfig, fit_curves, gallery_sizes, verdict
from img2gps.analysis.shaping import ShapingConfig, change, paired
from img2gps.cli import main
from img2gps.data import load_dataset
from img2gps.errors import DataError, ModelError
from synth import offset, scene, write_jpeg


# ----- learning curve ----------------------------------------------------------------------------------------
def synthetic_bench(slope_per_doubling: float, flat: float = 30.0, photos: int = 60, seed: int = 0):
    """A bench result + predictions where 'learns' loses slope_per_doubling metres per doubling, 'flat' does not."""
    rng = np.random.default_rng(seed)
    sizes = {"0.25": 20.0, "0.5": 40.0, "1": 80.0}
    base = rng.gamma(4.0, 10.0, photos)  # per-photo difficulty, shared across fractions (paired)
    rows, bf = [], {}
    for k, n in sizes.items():
        for spec, e in (("learns", base + slope_per_doubling * np.log2(n / 80) * -1 + rng.normal(0, 2, photos)),
                        ("flat", flat + base - base.mean() + rng.normal(0, 2, photos))):
            e = np.clip(e, 0, None)
            rows += [{"spec": spec, "image": f"p{i}", "error_m": v, "fraction": float(k)} for i, v in enumerate(e)]
            bf.setdefault(k, {"results": {}, "gallery_n_mean": n})["results"][spec] = {"mean_m": e.mean(),
                                                                                      "median_m": np.median(e)}
    return {"data": "synthetic", "protocol": "kfold:5", "n": photos, "n_folds": 5, "by_fraction": bf}, pd.DataFrame(rows)


def test_learning_curve_recovers_the_slope_and_says_how_sure():
    result, preds = synthetic_bench(slope_per_doubling=8.0)
    fit = fit_curves(result, preds, CurveConfig(n_boot=500))
    learns, flat = fit["methods"]["learns"], fit["methods"]["flat"]
    assert fit["sizes_exact"] and fit["target_n"] == pytest.approx(160)
    assert learns["per_doubling_m"] == pytest.approx(-8.0, abs=1.5)
    lo, hi = learns["per_doubling_ci"]
    assert lo < -8.0 < hi and hi < 0  # the interval holds the truth and excludes "no change"
    assert "measurably help" in verdict("learns", learns, "mean", 0.9, fit["target_n"])
    assert flat["per_doubling_ci"][0] < 0 < flat["per_doubling_ci"][1]
    assert "cannot tell" in verdict("flat", flat, "mean", 0.9, fit["target_n"])
    # one more doubling of a method losing 8 m per doubling: ~8 m below the last measured mean (never below 0)
    assert learns["predicted_m"] == pytest.approx(learns["error"][-1] - 8.0, abs=3.0)
    assert 0 <= learns["predicted_ci"][0] < learns["predicted_m"] < learns["predicted_ci"][1]


def test_learning_curve_refuses_far_extrapolation_and_missing_fractions():
    with pytest.raises(DataError, match="extrapolate"):
        CurveConfig(extrapolate=4.0)
    with pytest.raises(DataError, match="metric"):
        CurveConfig(metric="p90")
    with pytest.raises(DataError, match="by_fraction"):
        fit_curves({"results": {}}, None)
    # without per-photo predictions: a fit, but no interval
    result, _ = synthetic_bench(5.0)
    fit = fit_curves(result, None)
    assert "per_doubling_ci" not in fit["methods"]["learns"]


def test_gallery_sizes_estimated_from_the_protocol_when_not_recorded():
    bf = {"0.5": {"results": {}}, "1": {"results": {}}}
    sizes, exact = gallery_sizes({"n": 10, "n_folds": 10, "by_fraction": bf})  # loo: 9 training photos per fold
    assert not exact and sizes == {"0.5": 4.5, "1": 9.0}


@pytest.mark.slow
def test_bench_fractions_write_a_learning_curve(gallery_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--data", str(gallery_dir), "--protocol", "kfold:3", "--methods", "mean-coordinate",
                 "--fractions", "0.5,1.0", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["by_fraction"]["1"]["gallery_n_mean"] == 12  # 18 photos, 3 folds
    assert 5 <= res["by_fraction"]["0.5"]["gallery_n_mean"] <= 7
    assert (tmp_path / "b.learning_curve.png").stat().st_size > 5000
    assert "per doubling" in capsys.readouterr().out
    lc = tmp_path / "lc"
    assert main(["analyze", "learning-curve", "--bench", str(out), "--out", str(lc)]) == 0
    doc = json.loads((lc / "learning_curve.json").read_text())
    assert doc["title"].startswith("Learning curve") and doc["table"][0]["method"] == "mean-coordinate"
    assert "date" in doc and "command" in doc
    assert "![learning_curve](learning_curve.png)" in (lc / "learning_curve.md").read_text()
    assert main(["analyze", "learning-curve", "--out", str(lc)]) == 2  # neither --bench nor --data


# ----- backbones ---------------------------------------------------------------------------------------------
def test_parameter_counts_from_the_torch_module_and_from_onnx(tmp_path):
    from img2gps.features.encoders import get_encoder

    total, feat = count_parameters(get_encoder("lite0"))
    assert total == 4_652_008 and feat == total - 1_281_000  # the published 4.7 M, minus the 1000-class layer
    import onnx
    from onnx import TensorProto, helper

    from img2gps.features.cache import user_cache_dir

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.zeros(12).tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], np.zeros(4).tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b])
    p = user_cache_dir() / "onnx" / "toy-backbone.onnx"
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(g), str(p))

    class Toy:
        name = "toy"

    assert onnx_parameters(Toy()) == 16


def test_backbone_specs_skip_trained_methods_on_onnx_backbones():
    cfg = BackboneConfig(backbones=("lite0", "dinov2s-imgfocus"), methods=("knn", "regression"))
    assert specs_for(cfg) == [("lite0", "knn", "knn:embed=lite0"), ("lite0", "regression", "regression:backbone=lite0"),
                              ("dinov2s-imgfocus", "knn", "knn:embed=dinov2s-imgfocus")]
    assert specs_for(BackboneConfig(backbones=("lite1",), methods=("knn:embed={b}:k=1",)))[0][2] == "knn:embed=lite1:k=1"
    with pytest.raises(ModelError, match="unknown backbone"):
        specs_for(BackboneConfig(backbones=("resnet",)))
    with pytest.raises(ModelError, match="template"):
        specs_for(BackboneConfig(methods=("mean-coordinate",)))


@pytest.mark.slow
def test_backbones_cli_writes_one_table(gallery_dir, tmp_path):
    out = tmp_path / "bb"
    assert main(["analyze", "backbones", "--data", str(gallery_dir), "--out", str(out), "--backbones", "lite0",
                 "--methods", "knn:embed={b}:k=1", "--protocol", "kfold:3"]) == 0
    doc = json.loads((out / "backbones.json").read_text())
    row, base = doc["table"]
    assert row["method"] == "knn:embed=lite0:k=1" and row["params (M)"] == pytest.approx(4.65, abs=0.01)
    assert row["embed ms/photo"] > 0 and row["n"] == 18
    assert row["mean m"] < base["mean m"]  # distinct synthetic scenes: retrieval beats the centre
    assert (out / "backbones.png").stat().st_size > 5000 and (out / "backbones.md").exists()


# ----- feature shaping ---------------------------------------------------------------------------------------
def test_shaping_change_is_paired_and_counts_photos():
    preds = pd.DataFrame(
        [{"spec": "a", "image": f"p{i}", "true_lat": 0, "true_lon": 0, "pred_lat": 0, "pred_lon": 0, "error_m": 20.0}
         for i in range(10)]
        + [{"spec": "b", "image": f"p{i}", "true_lat": 0, "true_lon": 0, "pred_lat": 0, "pred_lon": 0,
            "error_m": 10.0 if i < 6 else 30.0 if i < 8 else 20.5} for i in range(10)])
    pairs = paired(preds, "a", "b")
    ch = change(pairs, ShapingConfig(n_boot=300))
    assert (ch["improved"], ch["worse"], ch["unchanged"]) == (6, 2, 2)
    assert ch["mean_change_m"] == pytest.approx((6 * -10 + 2 * 10 + 2 * 0.5) / 10)
    assert ch["mean_change_ci"][0] <= ch["mean_change_m"] <= ch["mean_change_ci"][1]
    with pytest.raises(DataError, match="both"):
        paired(preds, "a", "c")


@pytest.mark.slow
def test_shaping_cli_maps_the_same_photos(gallery_dir, tmp_path):
    out = tmp_path / "sh"
    assert main(["analyze", "shaping", "--data", str(gallery_dir), "--out", str(out), "--before", "mean-coordinate",
                 "--after", "knn:k=1", "--protocol", "kfold:3"]) == 0
    doc = json.loads((out / "shaping.json").read_text())
    assert doc["change"]["n"] == 18 and doc["change"]["mean_change_m"] < 0  # retrieval beats the centre here
    pairs = pd.read_csv(out / "shaping.predictions.csv")
    assert len(pairs) == 18 and {"error_m_before", "error_m_after"} <= set(pairs.columns)
    assert (out / "shaping.png").stat().st_size > 5000


# ----- coverage ----------------------------------------------------------------------------------------------
def coverage_gallery(root, with_heading: bool = True):
    """A 60 m x 60 m square with photos on its edge and corners only: its middle is an obvious gap."""
    from PIL.TiffImagePlugin import IFDRational

    rows = ["image,Latitude,Longitude"]
    spots = [(x, y) for x in range(0, 61, 10) for y in (0, 60)] + [(x, y) for x in (0, 60) for y in range(10, 51, 10)]
    for i, (x, y) in enumerate(spots):
        for d in range(2 if (x, y) == (0, 0) else 1):
            lat, lon = offset(x, y)
            gps = {1: "N", 2: (40.0, 0.0, 0.0), 3: "W", 4: (75.0, 0.0, 0.0)}
            if with_heading:
                gps.update({16: "T", 17: IFDRational(int(90 * d + 10), 1), 31: IFDRational(47, 10)})
            name = f"s{i:02d}_{d}.jpg"
            write_jpeg(root / "images" / name, scene(i, 48), raw_gps=gps)
            rows.append(f"{name},{lat:.8f},{lon:.8f}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_coverage_measures_the_gap_against_the_protocol(tmp_path):
    ds = load_dataset(coverage_gallery(tmp_path / "g"))
    assert cov.read_heading(ds.read(0)) == (pytest.approx(10.0), pytest.approx(4.7))
    r = cov.analyse(ds, cov.CoverageConfig(cell_m=10, error="none"))
    g = r["gap"]
    assert g["photos"] == 25 and g["capture_points"] == 24 and g["photos_with_heading"] == 25
    assert g["capture_point_spacing_median_m"] == pytest.approx(10, abs=0.5)
    assert g["hull_area_m2"] == pytest.approx(3600, rel=0.02)
    # photos sit on cell corners/edges of a 6x6-cell square: its 16 inner cells are empty
    assert 0.3 < g["occupied_fraction"] < 0.8
    assert g["photos_per_occupied_cell_median"] == 1 and g["cells_with_8_or_more_photos"] == 0
    assert g["gps_error_reported_median_m"] == pytest.approx(4.7)
    cells = r["cells"]
    corner = cells[(cells["photos"] == 2)]
    assert len(corner) == 1 and int(corner["sectors"].iloc[0]) == 2  # headings 10 and 100 degrees: 2 sectors
    first = r["spots"][0]
    assert 15 < first["east_m"] - r["photos"]["e"].min() < 45 and 15 < first["north_m"] - r["photos"]["n"].min() < 45
    assert "no photo within" in first["why"]
    seps = [np.hypot(a["east_m"] - b["east_m"], a["north_m"] - b["north_m"]) for a in r["spots"] for b in r["spots"]
            if a is not b]
    assert min(seps) >= 20  # spots kept two cells apart


def test_coverage_errors_from_a_predictions_csv_and_the_cli(tmp_path):
    root = coverage_gallery(tmp_path / "g", with_heading=False)
    ds = load_dataset(root)
    preds = pd.DataFrame({"spec": ["mean-coordinate"] * len(ds) + ["knn"] * len(ds), "image": ds.ids * 2,
                          "error_m": [5.0] * len(ds) + [80.0 if i == 3 else 2.0 for i in range(len(ds))]})
    pp = tmp_path / "p.predictions.csv"
    preds.to_csv(pp, index=False)
    r = cov.analyse(ds, cov.CoverageConfig(), predictions=pp)
    assert "knn" in r["error_source"] and any("80 m off" in s["why"] for s in r["spots"])
    assert r["gap"]["photos_with_heading"] == 0
    by = r["by_neighbour"]  # every photo's nearest other is 0 m (the corner pair) or 10 m away
    assert {x["nearest other photo"] for x in by} == {"any direction"} and sum(x["photos"] for x in by) == len(ds)
    assert by[0]["distance"] == "0-5 m" and by[0]["photos"] == 2 and by[0]["mean error m"] == 2.0
    out = tmp_path / "cov"
    assert main(["analyze", "coverage", "--data", str(root), "--out", str(out), "--predictions", str(pp),
                 "--cell", "15"]) == 0
    md = (out / "coverage.md").read_text()
    assert "cannot be measured" in md and "Collect here next" in md
    assert json.loads((out / "coverage.json").read_text())["protocol_gap"]["cell_m"] == 15
    assert (out / "coverage.png").stat().st_size < 300_000 and (out / "coverage_cells.csv").exists()
    assert main(["analyze", "coverage", "--data", str(root), "--out", str(out), "--cell", "0"]) == 2
    missing = str(tmp_path / "x.csv")
    assert main(["analyze", "coverage", "--data", str(root), "--out", str(out), "--predictions", missing]) == 2
