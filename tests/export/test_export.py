"""ONNX export of the query encoder: outputs checked against PyTorch, and `--runtime onnx` gives the same answers."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from _use_helpers import build_model, jpeg_bytes, model_env, place_image
from img2gps import Img2GPS, ModelError
from img2gps.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "encoder.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["export", "--model", str(model_dir), "--onnx", str(out), "--check-images", "4"])
    assert code == 0
    return out, buf.getvalue().strip()


@pytest.mark.slow
def test_export_writes_onnx_and_reports_the_difference(exported):
    import onnx

    path, line = exported
    assert path.is_file() and path.stat().st_size > 1_000_000
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["img2gps.encoder"] == "lite0" and props["img2gps.model_spec"] == "knn:k=2"
    assert "max abs diff vs PyTorch on 4 images" in line
    assert float(line.rsplit(":", 1)[1]) < 1e-3


@pytest.mark.slow
def test_onnx_runtime_gives_the_same_predictions(exported, model_dir, tmp_path, capsys):
    exported = exported[0]
    q = tmp_path / "q.jpg"
    q.write_bytes(jpeg_bytes(place_image(2, seed=4242)))
    outs = {}
    for rt in ("torch", "onnx"):
        code = main(["predict", str(q), "--model", str(model_dir), "-f", "json", "--top-k", "4", "--runtime", rt,
                     "--onnx", str(exported)])
        assert code == 0
        outs[rt] = json.loads(capsys.readouterr().out)[0]
    a, b = outs["torch"], outs["onnx"]
    assert [n["image_id"] for n in a["neighbours"]] == [n["image_id"] for n in b["neighbours"]]
    assert b["latitude"] == pytest.approx(a["latitude"], abs=1e-7)
    assert [n["score"] for n in b["neighbours"]] == pytest.approx([n["score"] for n in a["neighbours"]], abs=1e-4)


@pytest.mark.slow
def test_runtime_onnx_without_a_file_exports_once_into_the_cache(model_dir):
    from img2gps.export import OnnxEncoder

    m = Img2GPS.load(model_dir, runtime="onnx")
    assert isinstance(m.predictor.query_encoder, OnnxEncoder)
    assert m.predictor.query_encoder.path.is_file() and "onnx" in str(m.predictor.query_encoder.path.parent)
    assert m.predict(jpeg_bytes(place_image(0, seed=3)), top_k=1).neighbours[0].image_id.startswith("place0_")
    m2 = Img2GPS.load(model_dir, runtime="onnx")  # second load reuses the cached file
    assert m2.predictor.query_encoder.path == m.predictor.query_encoder.path


@pytest.mark.slow
def test_onnx_file_from_another_encoder_is_refused(exported, model_dir, tmp_path):
    import onnx

    m = onnx.load(str(exported[0]))
    for p in m.metadata_props:
        if p.key == "img2gps.encoder":
            p.value = "lite2"
    other = tmp_path / "other.onnx"
    onnx.save(m, str(other))
    with pytest.raises(ModelError, match="exported from encoder lite2, but this model uses lite0"):
        Img2GPS.load(model_dir, runtime="onnx", onnx_path=other)
    with pytest.raises(ModelError, match="ONNX file not found"):
        Img2GPS.load(model_dir, runtime="onnx", onnx_path=tmp_path / "nope.onnx")


def test_methods_without_an_encoder_cannot_export(tmp_path, capsys):
    md = build_model(tmp_path, "mean-coordinate")
    code = main(["export", "--model", str(md), "--onnx", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "needs a method that embeds queries" in err and len(err.strip().splitlines()) == 1
