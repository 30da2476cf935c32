"""Issue 21, section 2: the first hour of a new user (help, errors with the next step, demo output, the page's
labels and map, test-run noise). Each test failed on 1bf23d7."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from img2gps.cli import main

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "img2gps" / "server" / "static"


# ------------------------------------------------------------------------------------------------ help

def test_root_help_shows_whole_command_descriptions(capsys):
    """`img2gps --help` used to cut every description with '...' (click's 45-column short help)."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out.split("Commands:")[1]
    assert "..." not in commands, commands
    assert "locate the held-out photos" in " ".join(commands.split())  # the demo line, whole


@pytest.mark.parametrize("command", ["fit", "bench"])
def test_fit_and_bench_help_list_methods_and_protocols(command, capsys):
    from img2gps.predictors.registry import REGISTRY

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert f"\n    {name} " in out, (name, out)
    assert "(the default)" in out
    if command == "bench":
        for proto, words in (("loo", "leave-one-out"), ("kfold:K", "random folds"),
                             ("kfold-geo:K[:R]", "spatial folds"), ("knndm:K", "K folds whose held-out"),
                             ("split:DIR", "train.csv")):
            line = next((ln for ln in out.splitlines() if ln.strip().startswith(proto + " ")), "")
            assert words in line, (proto, out)


# ------------------------------------------------------------------------------------ next-step errors

def test_fit_on_a_raw_photo_folder_points_to_data_build(tmp_path, capsys):
    from synth import scene, write_jpeg

    write_jpeg(tmp_path / "photos" / "IMG_0001.jpg", scene(1, 64), 40.0, -75.0)
    assert main(["fit", "--data", str(tmp_path / "photos"), "--method", "knn", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "img2gps data build" in err and str(tmp_path / "photos") in err, err


def test_build_without_gps_points_to_labels_csv(tmp_path, capsys):
    from synth import scene, write_jpeg

    for i in range(2):
        write_jpeg(tmp_path / "photos" / f"chat_{i}.jpg", scene(i, 64))  # as messaging apps deliver them: no EXIF
    assert main(["data", "build", str(tmp_path / "photos"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "--labels CSV" in err and "image,Latitude,Longitude" in err, err


def test_bench_checks_every_spec_and_encoder_before_any_work(gallery_dir, monkeypatch, capsys):
    """`knn:embed=b0` (an online-only encoder) used to fail only after the earlier methods' folds were fitted."""
    import img2gps.evaluate as ev

    calls = []
    monkeypatch.setattr(ev, "run_bench", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    rc = main(["bench", "--data", str(gallery_dir), "--protocol", "kfold:2", "--methods", "knn:k=1,knn:embed=b0"])
    err = capsys.readouterr().err
    assert rc == 2 and calls == [], err
    assert "b0" in err and "lite0" in err  # names the offline equivalent


# ------------------------------------------------------------------------------------------ the demo

def test_demo_export_writes_into_the_ignored_demo_folder(tmp_path):
    """The export command the demo prints wrote `submission/` (~40 MiB) loose into the working tree, not ignored."""
    import shlex

    from img2gps.cli.demo import next_steps

    lines = next_steps(tmp_path / "model", True, Path("img2gps-demo"))
    cmd = shlex.split(next(ln for ln in lines if "--format leaderboard" in ln).split("#")[0])
    out = Path(cmd[cmd.index("--out") + 1])
    assert out.parts[0] == "img2gps-demo", out
    if shutil.which("git") and (ROOT / ".git").exists():
        r = subprocess.run(["git", "check-ignore", "-q", str(out / "model.pt")], cwd=ROOT)
        assert r.returncode == 0, f"{out} is not git-ignored"


@pytest.mark.slow
def test_demo_png_has_one_panel_per_photo():
    """Ten overlapping circles on one demo map could not be told apart: one panel per photo, each with its own
    truth, answer and circle, all on one scale."""
    from matplotlib.patches import Circle

    from img2gps.plots import photo_panels_figure

    rng = np.random.default_rng(0)
    lat = 39.95 + rng.normal(0, 3e-4, 10)
    lon = -75.19 + rng.normal(0, 3e-4, 10)
    fig = photo_panels_figure(lat, lon, lat + 1e-4, lon, np.full(10, 40.0), [f"p{i}.jpg" for i in range(10)],
                              "demo", lat, lon)
    assert len(fig.axes) == 10
    assert all(sum(isinstance(p, Circle) for p in ax.patches) == 1 for ax in fig.axes)
    assert [ax.get_title().split(".")[0] for ax in fig.axes] == [str(i) for i in range(1, 11)]
    assert len({ax.get_xlim() for ax in fig.axes}) == 1  # one scale


# ----------------------------------------------------------------------------- the page (map.js, app.js)

NODE = shutil.which("node") or shutil.which("nodejs")


def _map_js(expr: str):
    """Evaluate a JS expression against server/static/map.js in node (the page's own drawing module)."""
    if NODE is None:
        pytest.skip("node is not installed (needed to run the page's map.js outside a browser)")
    script = textwrap.dedent(f"""
        global.window = {{}};
        require({json.dumps(str(STATIC / "map.js"))});
        const M = window.Img2GPSMap;
        process.stdout.write(JSON.stringify({expr}));
    """)
    r = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_page_neighbour_score_says_what_it_is():
    """A match's score is an inlier count (was shown as 'score 65.000'), a fallback's a cosine similarity."""
    got = _map_js('[M.scoreLabel({score: 65}, "inliers"), M.scoreLabel({score: 0.4271}, "cosine similarity")]')
    assert got == ["inliers 65", "cosine similarity 0.427"]  # the page showing it: tests/server/test_page.py


def test_far_exif_position_does_not_zoom_the_map_out():
    """A photo whose own EXIF position is 3,825 km away: the map keeps the gallery in view and points at it."""
    gallery = [[39.9515, -75.1915], [39.9525, -75.1930], [39.9505, -75.1900]]
    far, near, bearing = _map_js(
        f"[M.isFar({gallery}, [47.6, -122.3]), M.isFar({gallery}, [39.9530, -75.1915]), "
        f"M.compass(M.bearingDeg([39.9515, -75.1915], [47.6, -122.3]))]")
    assert far is True and near is False and bearing in ("NW", "W")  # the page drawing it: tests/server/test_page.py
    assert _map_js("M.fmtM(3825000)") == "3,825 km"


# ------------------------------------------------------------------------------------ test-run noise

@pytest.mark.slow
def test_progress_bars_stay_out_of_redirected_output(gallery_dir, tmp_path):
    """With stdout and stderr redirected (not a terminal), no carriage-return progress bar is written."""
    env = dict(os.environ, IMG2GPS_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", "from img2gps.cli import run; run()", "bench", "--data",
                        str(gallery_dir), "--protocol", "kfold:2", "--methods", "mean-coordinate"],
                       capture_output=True, env=env, timeout=300)  # bytes: text mode would turn \r into \n
    assert r.returncode == 0, r.stderr
    assert b"\r" not in r.stderr and b"\r" not in r.stdout, r.stderr
    assert b"fit/s" not in r.stderr and b"it/s" not in r.stderr


@pytest.mark.slow
def test_test_runs_show_skip_reasons_and_no_library_deprecations(tmp_path):
    """`python -m pytest` lists why a test skipped (the browser test without chromium), the test client uses
    httpx2 (Starlette deprecates httpx), and Ray Data's own deprecation warnings are not repeated on every run."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(dep.startswith("httpx2") for dep in cfg["project"]["optional-dependencies"]["test"])
    assert "-rs" in cfg["tool"]["pytest"]["ini_options"]["addopts"].split()
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent("""
        import pytest

        def test_ray_context():
            pytest.importorskip("ray.data")
            import ray.data
            ray.data.DataContext.get_current()

        def test_client():
            from fastapi.testclient import TestClient  # noqa: F401

        def test_skipped():
            pytest.skip("because of a stated reason")
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
                        str(tmp_path), "-p", "no:cacheprovider", str(probe)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Warning" not in r.stdout, r.stdout
    assert "because of a stated reason" in r.stdout


def test_scene_answer_scores_are_labelled_as_inliers():
    """A verified scene seen from elsewhere is not recognised, but its neighbours' scores are still inlier counts
    (after the answer-kinds change they were labelled cosine similarities: 'cosine similarity 32.000')."""
    from img2gps.types import Neighbour, Prediction

    scene = Prediction(1.0, 2.0, 40.0, 0.5, False, "rerank", [Neighbour("g.jpg", 1.0, 2.0, 32.0)], source="scene")
    fallback = Prediction(1.0, 2.0, 90.0, 0.2, False, "rerank", [Neighbour("g.jpg", 1.0, 2.0, 0.43)],
                          source="fallback")
    assert scene.to_dict()["score_kind"] == "inliers" and fallback.to_dict()["score_kind"] == "cosine similarity"
    from img2gps.cli.use import as_text

    from img2gps.types import prediction_dict

    text = as_text(prediction_dict(scene, photo="q.jpg"))  # the one Prediction-to-dict the CLI prints from
    assert "inliers 32" in text and "cosine similarity 32" not in text


def test_root_help_has_an_example_and_points_to_demo(capsys):
    """Issue 30: `img2gps --help` had no example and did not point to `demo`."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = {ln.split()[0] for ln in out.split("Commands:")[1].split("\n\n")[0].splitlines() if ln.startswith("  ")
                and not ln.startswith("   ")}
    assert "`img2gps demo`" in out.split("Commands:")[1]
    examples = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("    img2gps ")]
    assert len(examples) >= 2, out
    for words in examples:  # each example names a real command with options it really takes
        assert words[0] in commands, words
        args = words[:2] if words[0] in ("data", "index", "analyze") else words[:1]
        rest = [w for w in words[len(args):] if w.startswith("--")]
        assert main(args + [w for w in words[len(args):]] + ["--help"]) == 0, (words, capsys.readouterr().err)
        shown = capsys.readouterr().out
        assert all(f in shown for f in rest), (words, shown)


def test_use_md_quotes_only_wording_the_tool_prints():
    """docs/use.md quoted answer lines ("not recognised: a wide estimate") that the tool never prints: every
    double-quoted phrase in its prose must be wording of the tool, i.e. in its source or one of the answer lines
    it composes (answer words + what the answer rests on)."""
    import re

    from img2gps.types import Prediction

    src = " ".join(" ".join(p.read_text().split()) for p in (ROOT / "src" / "img2gps").rglob("*")
                   if p.suffix in (".py", ".js", ".html"))
    words = [Prediction(0.0, 0.0, 1.0, 0.5, r, "m", source=s).to_dict() for r in (True, False)
             for s in ("pose", "consensus", "scene", "fallback", "model")]  # the answer lines the text output prints
    composed = {f"{d['answer']}: {d['source_note']}" for d in words} | {f"the radius {d['radius_note']}" for d in words}
    text = (ROOT / "docs" / "use.md").read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = "\n".join(ln for ln in prose.splitlines() if not ln.startswith("    "))  # no code blocks
    quotes = [" ".join(q.split()) for q in re.findall(r'"([^"`]+)"', prose)]
    quotes = [q for q in quotes if not q.startswith("Hand in to")]  # a README section title, not tool output
    assert quotes, "no quoted wording found"
    for q in quotes:
        assert q in src or any(q in c for c in composed), q


def test_readme_results_are_a_short_current_table_and_tests_have_a_fast_subset():
    """The README's results read like a lab notebook (revision hashes, two different "recognised" figures), and the
    fast test subset was far from the test command; .ci/run must still run exactly the README's test command."""
    import re

    readme = (ROOT / "README.md").read_text()
    results = readme.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    assert "(bench/results.md)" in results and not re.search(r"\b[0-9a-f]{7,40}\b", results)
    header = next(ln for ln in results.splitlines() if ln.startswith("| data set"))
    assert header.count("recognised") == 1 and results.count("recognised (") == 0
    test_cmd = next(ln.strip() for ln in readme.splitlines() if ln.strip().startswith("pip install")
                    and ln.strip().endswith("python -m pytest"))
    after = readme.split(test_cmd, 1)[1].lstrip("\n").split("\n\n")[0]
    assert 'python -m pytest -m "not slow"' in after, after
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[ci.index("# --- the README's test command (keep identical) ---") + 1] == test_cmd


def test_readme_names_every_file_the_demo_writes():
    """The demo wrote demo_predictions.csv, but the README named only its map and PNG (issue 30's fresh read)."""
    from img2gps.cli.demo import DEMO_FILES

    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("**Run the main job.**", 1)[1].split("**Run the tests", 1)[0]
    assert [n for n in DEMO_FILES if f"`{n}`" not in quick_start] == []
