"""bench/gpu.py, the prepared GPU command, kept from rotting while no GPU is at hand: its plan, the wheels it carries,
and its dry run (the same script on the CPU with a handful of bgu-west photos and one epoch)."""
import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BGU = ROOT / ".." / "shared" / "data" / "bgu-west"


def gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plan_runs_the_four_specs_on_cuda_and_says_how_it_fits_the_time():
    from img2gps.predictors.registry import make_predictor

    g = gpu_script()
    p = g.plan(dry_run=False)
    assert p["protocol"] == "kfold:5" and p["device"] == "cuda"
    modes = []
    for spec in p["specs"]:
        pred = make_predictor(spec)  # every spec parses
        assert pred.config.device == "cuda" and pred.config.backbone == "lite0"
        modes.append((pred.name, pred.config.mode))
        if pred.config.mode == "full":
            assert pred.config.epochs == g.FULL_EPOCHS and pred.config.calib_folds == g.FULL_CALIB_FOLDS
    assert sorted(modes) == [("contrastive", "cached"), ("contrastive", "full"),
                             ("regression", "cached"), ("regression", "full")]
    assert any(str(g.FULL_EPOCHS) in c for c in p["choices"])
    assert any(str(g.FULL_CALIB_FOLDS) in c for c in p["choices"])
    q = g.plan(dry_run=False, epochs=100, calib_folds=3, budget_s=300)  # the paper's recipe, if time allows
    assert q["budget_s"] == 300 and any("100 epochs" in c for c in q["choices"])
    assert [s for s in q["specs"] if "mode=full" in s] == [
        "regression:mode=full:device=cuda:epochs=100:calib_folds=3",
        "contrastive:mode=full:device=cuda:epochs=100:calib_folds=3"]


def test_carried_wheels_need_only_what_the_gpu_image_has():
    from importlib.metadata import requires

    g = gpu_script()
    carried = {w.lower() for w in g.WHEELS}
    for name in g.WHEELS:
        for r in requires(name) or []:
            if "extra ==" in r:
                continue
            dep = re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower()
            assert dep in g.ON_IMAGE or dep in carried, f"{name} needs {dep}"
    assert all(p.count("==") == 1 for p in g.pinned_wheels())


def test_run_without_a_prepared_bundle_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "run", "--bundle", str(tmp_path / "none"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "prepare" in r.stderr and "Traceback" not in r.stderr


def dry_run(tmp_path, *extra):
    if not (BGU / "labels.csv").exists():
        pytest.skip("../shared/data/bgu-west not present")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def check_outputs(g, out: Path, specs: list[str]) -> None:
    files = sorted(p.name for p in out.iterdir())
    # the device tool brings back at most 8 files with plain names
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    assert {f"{g.STEM}.json", f"{g.STEM}.predictions.csv", f"{g.STEM}.epochs.csv", "gpu-run.log"} <= set(files)
    d = json.loads((out / f"{g.STEM}.json").read_text())
    assert list(d["results"]) == ["mean-coordinate", *specs]
    n = g.plan(dry_run=True)["photos"]
    assert d["n"] == n and d["protocol"] == "kfold:2"
    assert d["gpu"]["dry_run"] and d["gpu"]["device"] == "cpu" and not d["gpu"]["skipped"]
    assert d["code"]["source_matches_prepare"] is True
    for spec in specs:
        m = d["gpu"]["methods"][spec]
        # 2 outer folds x (final + 2 inner calibration folds), one epoch each
        assert m["trainings"] == 6 and m["epochs_total"] == 6 and m["final_epochs_mean"] == 1
        assert m["epoch_s_median"] > 0 and m["peak_gpu_mib"] is None
        assert d["results"][spec]["fit_s"] > 0 and d["results"][spec]["epochs_final_mean"] == 1
    assert [row["method"] for row in d["table"]] == specs
    with open(out / f"{g.STEM}.epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * len(specs)
    assert {r["training"] for r in rows} == {"final", "calibration fold 1/2", "calibration fold 2/2"}
    assert {r["fold"] for r in rows} == {"1", "2"}
    with open(out / f"{g.STEM}.predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == n * (1 + len(specs))  # every photo predicted once per method, baseline included


@pytest.mark.slow  # a real fine-tune of a few steps: ~8 s on 2 cores, the slowest fast test (issue 27: fast subset < 60 s)
def test_dry_run_of_the_full_fine_tune_alone(tmp_path):
    """The spec only a GPU makes affordable, through the whole script, with a few steps."""
    g = gpu_script()
    out = dry_run(tmp_path, "--only", "regression:mode=full")
    specs = [s for s in g.plan(dry_run=True)["specs"] if s.startswith("regression:mode=full")]
    assert len(specs) == 1
    check_outputs(g, out, specs)
    # bench/results.md renders the JSON as the GPU run will bring it back: its title and the side-by-side table
    mr = importlib.util.spec_from_file_location("make_results", ROOT / "bench" / "make_results.py")
    make_results = importlib.util.module_from_spec(mr)
    mr.loader.exec_module(make_results)
    md = "\n".join(make_results.section(out / f"{g.STEM}.json"))
    assert md.startswith("## " + make_results.TITLES[g.STEM])
    assert "| method | mean m | median m | radius cover | fit s | epochs (final, mean) |" in md
    assert f"| {specs[0]} |" in md and "Re-run: `python bench/gpu.py --dry-run`" in md


@pytest.mark.slow
def test_dry_run_writes_what_the_gpu_run_brings_back(tmp_path):
    g = gpu_script()
    out = dry_run(tmp_path)
    check_outputs(g, out, g.plan(dry_run=True)["specs"])
