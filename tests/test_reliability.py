"""Issue 7: every entry point over a corpus of bad/odd inputs: one-line errors or reported skips, no traceback,
nothing written outside the named output; crash-safe model directories."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus import build_csv_corpus, build_photo_corpus
from img2gps.cli import main
from img2gps.errors import Img2GPSError, ModelError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    entries = build_photo_corpus(root / "photos")
    assert len(entries) >= 40
    return root / "photos", entries


@pytest.fixture(scope="module")
def model_dir(gallery_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "knn"
    assert main(["fit", "--data", str(gallery_dir), "--method", "knn:k=1", "--out", str(out)]) == 0
    return out


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _one_line_errors(err: str) -> None:
    assert "Traceback" not in err
    for line in err.splitlines():
        assert len(line) < 600


def test_data_build_over_corpus(corpus, tmp_path, capsys):
    src, entries = corpus
    before = _tree(src)
    out = tmp_path / "ds"
    assert main(["data", "build", str(src), str(out)]) == 0
    cap = capsys.readouterr()
    _one_line_errors(cap.err)
    assert _tree(src) == before  # SRC untouched
    assert set(os.listdir(tmp_path)) == {"ds"}  # nothing beside the output
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    for name, _, expect in entries:
        if expect == "skip" and name != "dir-named.jpg":
            assert name in text, f"{name} should be listed as skipped"
    kept = (out / "labels.csv").read_text()
    assert "good.jpg" in kept or "good" in kept


def test_data_build_empty_and_no_gps_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "build", str(tmp_path / "empty"), str(tmp_path / "o1")]) == 2
    from synth import scene

    (tmp_path / "nogps").mkdir()
    scene(1, 40).save(tmp_path / "nogps" / "a.jpg")
    assert main(["data", "build", str(tmp_path / "nogps"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    _one_line_errors(err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_predict_cli_and_api_over_corpus(corpus, model_dir, capsys):
    from img2gps.api import Img2GPS

    src, entries = corpus
    code = main(["predict", str(src), "--model", str(model_dir), "--format", "json"])
    cap = capsys.readouterr()
    assert code == 1  # some inputs were skipped, and it says so
    _one_line_errors(cap.err)
    located = {Path(r["photo"]).name for r in json.loads(cap.out)}
    m = Img2GPS.load(model_dir)
    for name, path, expect in entries:
        if expect == "ok":
            assert name in located, name
        if path.is_dir():
            continue
        try:
            p = m.predict(path)
            assert expect != "skip", f"{name} should have been rejected"
            assert p.radius_m > 0
        except Img2GPSError as e:
            assert expect != "ok", f"{name}: {e}"
            assert "\n" not in str(e)


def test_server_over_corpus(corpus, model_dir):
    from fastapi.testclient import TestClient

    from img2gps.server.app import create_app

    src, entries = corpus
    client = TestClient(create_app(model_dir))
    for name, path, expect in entries:
        if path.is_dir() or not path.exists():
            continue
        r = client.post("/predict", files={"file": (name, path.read_bytes(), "application/octet-stream")})
        assert r.status_code < 500, (name, r.status_code, r.text)
        if expect == "ok":
            assert r.status_code == 200, (name, r.text)
        if expect == "skip":
            assert 400 <= r.status_code < 500, name
    for bad in ("../../etc/passwd", "..%2F..%2Fmodel.json", "/etc/passwd", "model.json"):
        assert client.get(f"/gallery/{bad}").status_code in (400, 404)


def test_fit_and_bench_over_bad_csvs(gallery_dir, tmp_path, capsys):
    image = sorted(os.listdir(gallery_dir / "images"))[0]
    for name, text in build_csv_corpus(tmp_path, image).items():
        ds = tmp_path / name.replace(".", "_")
        (ds / "images").mkdir(parents=True)
        os.symlink(gallery_dir / "images" / image, ds / "images" / image)
        (ds / "labels.csv").write_text(text)
        before = _tree(tmp_path)
        for argv in (["fit", "--data", str(ds), "--method", "knn:k=1", "--out", str(tmp_path / "m" / name)],
                     ["bench", "--data", str(ds), "--protocol", "loo", "--methods", "knn:k=1"]):
            code = main(argv)
            err = capsys.readouterr().err
            _one_line_errors(err)
            assert code in (0, 2), (name, argv[0], err)
            if code == 2:
                assert err.strip().splitlines()[-1].startswith("error:"), (name, err)
        new = _tree(tmp_path) - before
        assert all(p.startswith("m") for p in new), (name, new)  # only the named model output


def test_model_dir_damage_is_named(model_dir, tmp_path, capsys):
    import shutil

    from img2gps.predictors import load_model

    cases = {}
    for case in ("missing", "corrupt", "version", "badjson"):
        d = tmp_path / case
        shutil.copytree(model_dir, d)
        man = json.loads((d / "model.json").read_text())
        if case == "missing":
            (d / "embeddings.npy").unlink()
        elif case == "corrupt":
            (d / "index.faiss").write_bytes(b"\0" * 10)
        elif case == "version":
            man["format_version"] = 999
            (d / "model.json").write_text(json.dumps(man))
        else:
            (d / "model.json").write_text("{not json")
        cases[case] = d
    expect = {"missing": "missing file embeddings.npy", "corrupt": "index.faiss is corrupted",
              "version": "format version 999", "badjson": "corrupted manifest"}
    for case, d in cases.items():
        with pytest.raises(ModelError, match=expect[case]):
            load_model(d)
        assert main(["predict", str(model_dir / "thumbs"), "--model", str(d)]) == 2
        err = capsys.readouterr().err
        _one_line_errors(err)
        assert expect[case] in err


def test_sigterm_during_fit_keeps_previous_model(model_dir, gallery_dir, tmp_path):
    """Interrupting a re-fit leaves the previous model intact (atomic replace), never a half-written one."""
    import shutil

    from img2gps.predictors import load_model

    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from img2gps.cli import main; sys.exit(main())",
                             "fit", "--data", str(gallery_dir), "--method", "knn:embed=lite1:k=1", "--out", str(target),
                             "--overwrite"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
    m = load_model(target)  # checksums verified: either the old model or a complete new one
    assert m.spec in ("knn:k=1", "knn:embed=lite1:k=1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # temp dirs cleaned up


def test_short_load_test_has_no_5xx(model_dir, gallery_dir, tmp_path):
    """A short version of bench/load_test.py: concurrent good and bad uploads against a real server process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("load_test", Path(__file__).parents[1] / "bench" / "load_test.py")
    lt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lt)
    from corpus import build_photo_corpus

    good = [(p.name, p.read_bytes()) for p in sorted((gallery_dir / "images").glob("*.jpg"))[:3]]
    bad = [(n, p.read_bytes()) for n, p, _ in build_photo_corpus(tmp_path / "c") if p.is_file()][:12]
    stats = lt.run(model_dir, good + bad, n=60, concurrency=6)
    assert stats["requests"] == 60 and stats["status_5xx"] == 0
    assert stats["status_2xx"] > 0 and stats["status_4xx"] > 0
