"""Every user-facing command the README and `img2gps --help` document, end to end, on both shared data sets
(penn91: full-size photos with EXIF GPS; bgu-west: tiny photos, labels only), in temp dirs (issue 30: a
documented command crashed on the default data and no test noticed).

Kept as fast as it can be: a small slice of each set (tiny fits), one default-method (rerank) model shared by the
commands that use a model, the demo on the same slice, analyses on 2 folds, the project's caches in the
session's temp dir, and each test's first command (and serve, the demo, the export harness) in a fresh process
through the console-script entry, the others through the same entry (cli.main) in the test's process. `test_every_documented_command_is_run` fails when the README or --help gains a command that
this file does not run.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from _use_helpers import SHARED_DATA
from img2gps.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# (group, command) pairs run below; the README's "Command line" block and `--help` must name no other.
RUN = {("data", "build"), ("data", "split"), ("data", "check"), ("fit", None), ("index", "add"), ("index", "remove"),
       ("index", "replace"), ("bench", None),
       ("eval", None), ("verify", None), ("predict", None), ("serve", None), ("export", None),
       ("analyze", "learning-curve"), ("analyze", "backbones"), ("analyze", "shaping"), ("analyze", "coverage"),
       ("demo", None)}
SLICE = {"penn91": 24, "bgu-west": 30}  # photos per set: a gallery of ~20 + a few queries


def _documented() -> set[tuple[str, str | None]]:
    """(command, subcommand) pairs named by `img2gps ...` lines in the README's command block and by --help."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("\n\n", 2)[1]
    found = set()
    groups = {"data", "index", "analyze"}
    for ln in block.splitlines():  # a line may hold two invocations: "img2gps index remove ... | img2gps index ..."
        for cmd, sub in re.findall(r"img2gps (\S+)(?: (\S+))?", ln.split("#")[0]):
            found |= {(cmd, x) for x in sub.split("|")} if cmd in groups else {(cmd, None)}
    return found


def test_every_documented_command_is_run(capsys):
    documented = _documented()
    assert main(["--help"]) == 0
    out = capsys.readouterr().out.split("Commands:")[1].split("\n\n")[0]
    top = {m.group(1) for m in (re.match(r"^  (\S+)", ln) for ln in out.splitlines()) if m}
    assert top == {c for c, _ in RUN}, top ^ {c for c, _ in RUN}
    assert documented <= RUN, documented - RUN


def _cli(*args, ok=(0,), fresh: bool = False) -> str:
    """Run one command as a user would; its stdout. Fails with its stderr. fresh: in a new process through the
    console-script entry point (each test starts its chain so); else through the same entry (cli.main) in this
    process, which skips a Python and torch start (a few seconds) per command."""
    args = [str(a) for a in args]
    if fresh:
        cmd = [sys.executable, "-c", "import sys; from img2gps.cli import run; sys.argv[0] = 'img2gps'; run()"]
        r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=900, env=_ENV)
        rc, out, err = r.returncode, r.stdout, r.stderr
    else:
        out_buf, err_buf = io.StringIO(), io.StringIO()
        env = {k: _ENV[k] for k in ("IMG2GPS_CACHE", "IMG2GPS_DATA")}
        with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out_buf), \
                contextlib.redirect_stderr(err_buf):
            rc = main(args)
        out, err = out_buf.getvalue(), err_buf.getvalue()
    assert rc in ok, f"img2gps {' '.join(args)} -> {rc}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    return out


_ENV: dict = {}


@pytest.fixture(scope="module", params=list(SLICE))
def work(request, tmp_path_factory):
    """A slice of one shared set copied as a photo folder (+ labels CSV for bgu-west, whose photos have no EXIF),
    a few photos set aside as queries, and the environment every command runs in."""
    name = request.param
    root = SHARED_DATA / name
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root} not present")
    tmp = tmp_path_factory.mktemp(name)
    labels = pd.read_csv(root / "labels.csv")
    pick = labels.iloc[:: max(1, len(labels) // SLICE[name])].head(SLICE[name]).reset_index(drop=True)
    queries = pick.iloc[::6].reset_index(drop=True)
    gallery = pick.drop(index=pick.index[::6]).reset_index(drop=True)
    for part, rows in (("photos", gallery), ("queries", queries)):
        (tmp / part).mkdir()
        for img in rows["image"]:
            shutil.copy(root / "images" / img, tmp / part / img)
        rows.to_csv(tmp / f"{part}.csv", index=False)
    _ENV.clear()
    _ENV.update(os.environ, IMG2GPS_CACHE=str(tmp_path_factory.getbasetemp() / "cache"), IMG2GPS_DATA=str(tmp / "ds"),
                PYTHONPATH=os.pathsep.join([str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(
                    os.pathsep) if p]))
    return name, tmp


def test_data_commands(work):
    name, t = work
    labels = ["--labels", t / "photos.csv"] if name == "bgu-west" else []
    _cli("data", "build", t / "photos", t / "ds", *labels, fresh=True)
    assert len(pd.read_csv(t / "ds" / "labels.csv")) >= 15
    qlabels = ["--labels", t / "queries.csv"] if name == "bgu-west" else []
    _cli("data", "build", t / "queries", t / "qds", *qlabels)
    _cli("data", "split", t / "ds", "--out", t / "splits")
    assert (t / "splits" / "random" / "train.csv").is_file() and (t / "splits" / "geo" / "val.csv").is_file()
    _cli("data", "check", t / "ds", "--out", t / "check")
    assert (t / "check" / "report.md").is_file()
    _cli("data", "check", t / "ds", "--apply", "--out", t / "fixed")
    assert (t / "fixed" / "labels.csv").is_file()


def test_fit_verify_eval_bench(work):
    name, t = work
    _cli("fit", "--data", t / "ds", "--method", "rerank", "--out", t / "model", fresh=True)
    _cli("verify", "--model", t / "model")
    out = _cli("eval", "--model", t / "model", "--data", t / "qds")
    assert "mean" in out
    val = t / "splits" / "random" / "val.csv"  # a saved split: a gallery without it, then eval on it
    _cli("fit", "--data", t / "ds", "--method", "mean-coordinate", "--exclude", val, "--out", t / "mc")
    out = _cli("eval", "--model", t / "mc", "--data", t / "ds", "--split", val, "--no-save-metrics")
    assert f"{len(pd.read_csv(val))} held-out photo" in out and "(gallery centre)" in out
    _cli("bench", "--data", t / "ds", "--protocol", "kfold:2", "--methods", "knn", "--json", t / "r.json", "--no-plots")
    assert "knn" in json.loads((t / "r.json").read_text())["results"]


def test_predict_and_its_outputs(work):
    name, t = work
    photo = next((t / "queries").iterdir())
    out = _cli("predict", photo, t / "queries", "--model", t / "model", fresh=True)
    assert "prediction" in out and "supporting gallery photos" in out
    rows = json.loads(_cli("predict", t / "queries", "--model", t / "model", "--format", "json", "--map", t / "p.html",
                           "--geojson", t / "p.geojson", "--kml", t / "p.kml"))
    assert len(rows) == len(list((t / "queries").iterdir()))
    assert len(json.loads((t / "p.geojson").read_text())["features"]) == len(rows) and (t / "p.html").is_file()
    assert _cli("predict", photo, "--model", t / "model", "--format", "csv").startswith("photo,")
    if photo.suffix.lower() in (".jpg", ".jpeg"):
        before = photo.read_bytes()
        _cli("predict", photo, "--model", t / "model", "--write-exif", t / "tagged.jpg")
        assert photo.read_bytes() == before and (t / "tagged.jpg").is_file()


def test_export_onnx_and_leaderboard(work):
    name, t = work
    _cli("export", "--model", t / "model", "--onnx", t / "model" / "encoder.onnx", fresh=True)
    photo = next((t / "queries").iterdir())
    assert "prediction" in _cli("predict", photo, "--model", t / "model", "--runtime", "onnx")
    _cli("export", "--model", t / "model", "--format", "leaderboard", "--out", t / "sub", "--max-mb", "100")
    val = pd.read_csv(t / "queries.csv").assign(image_path=lambda d: [str(t / "queries" / i) for i in d["image"]])
    val.to_csv(t / "val.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "img2gps.export.harness", "--model", t / "sub" / "model.py",
                        "--preprocess", t / "sub" / "preprocess.py", "--weights", t / "sub" / "model.pt",
                        "--csv", t / "val.csv"], capture_output=True, text=True, timeout=600, env=_ENV)
    assert r.returncode == 0, r.stderr[-3000:]


def test_serve(work):
    name, t = work
    from _browser import free_port

    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from img2gps.cli import run; sys.argv[0] = 'img2gps'; run()",
           "serve", "--model", str(t / "model"), "--port", str(port), "--no-tiles"]
    proc = subprocess.Popen(cmd, env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        health = None
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()[-3000:]
                time.sleep(0.5)
        assert health is not None and health["status"] == "ok", health
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert b"img2gps" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_index_commands(work):
    """index add, and the other index commands where the README documents them."""
    name, t = work
    shutil.copytree(t / "model", t / "model2")
    labels = ["--labels", t / "queries.csv"] if name == "bgu-west" else []
    n = len(pd.read_csv(t / "model" / "gallery.csv"))
    _cli("index", "add", "--model", t / "model2", t / "queries", *labels, fresh=True)
    added = len(pd.read_csv(t / "model2" / "gallery.csv"))
    assert added > n
    documented = _documented()
    if ("index", "replace") in documented:
        _cli("index", "replace", "--model", t / "model2", t / "queries", *labels)
        assert len(pd.read_csv(t / "model2" / "gallery.csv")) == added
    if ("index", "remove") in documented:
        _cli("index", "remove", "--model", t / "model2", next((t / "queries").iterdir()).name)
        assert len(pd.read_csv(t / "model2" / "gallery.csv")) == added - 1


def test_analyses(work):
    name, t = work
    ds = t / "ds"
    _cli("analyze", "learning-curve", "--data", ds, "--out", t / "lc", "--protocol", "kfold:2", "--fractions", "0.5,1",
         fresh=True)
    _cli("analyze", "backbones", "--data", ds, "--out", t / "bb", "--protocol", "kfold:2", "--backbones", "lite0")
    _cli("analyze", "shaping", "--data", ds, "--out", t / "sh", "--protocol", "kfold:2",  # a tiny training
         "--after", "contrastive:backbone=lite0:k=1:epochs=3:views=1:calib_folds=2")
    _cli("analyze", "coverage", "--data", ds, "--out", t / "cov")
    for d, f in (("lc", "learning_curve.md"), ("bb", "backbones.md"), ("sh", "shaping.md"), ("cov", "coverage.md")):
        assert (t / d / f).is_file(), (d, f)


def test_demo_and_help(work):
    name, t = work
    out = _cli("demo", "--out", t / "demo", fresh=True)  # IMG2GPS_DATA points at this slice's dataset
    assert "mean error" in out and (t / "demo" / "demo_map.html").is_file() and (t / "demo" / "demo_map.png").is_file()
    import shlex

    cmds = [shlex.split(ln.split("#")[0]) for ln in out.splitlines() if ln.strip().startswith("img2gps ")]
    assert any(c[1] == "predict" for c in cmds)
    for c in cmds:  # the commands the demo prints run as printed
        if c[1] == "predict":
            c = [x if x != "PHOTO.jpg" else str(next((t / "queries").iterdir())) for x in c]
            _cli(*c[1:])
    if name == "penn91":  # the help pages, once
        for group, sub in sorted(RUN, key=str):
            _cli(*([group] + ([sub] if sub else []) + ["--help"]))
        assert re.search(r"img2gps \S+", _cli("--version"))
