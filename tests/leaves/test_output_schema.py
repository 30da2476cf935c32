"""The output schema is defined once (types.output_fields): a field added to Prediction reaches the CLI's json, the
HTTP API's response (and its OpenAPI schema) and the map page's data without editing any of them."""
from __future__ import annotations

import dataclasses
import json

import pytest
from fastapi.testclient import TestClient

import img2gps.types as types
from _use_helpers import jpeg_bytes, model_env, place_image
from img2gps.api import Img2GPS
from img2gps.cli import main
from img2gps.maps import map_data
from img2gps.server import create_app
from img2gps.server.app import response_models


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


def test_http_model_has_exactly_the_schema_keys():
    out, neighbour = response_models()
    assert list(out.model_fields) == [*types.output_fields(), "elapsed_ms"]
    assert list(neighbour.model_fields) == list(types.output_fields("neighbour"))


def test_a_new_prediction_field_reaches_cli_json_http_and_page(model_dir, tmp_path, monkeypatch, capsys):
    extra = dataclasses.make_dataclass(
        "Prediction", [("test_note", str, dataclasses.field(default="from the test", metadata={"doc": "added"}))],
        bases=(types.Prediction,))
    monkeypatch.setattr(types, "Prediction", extra)
    real = Img2GPS.locate

    def locate(self, *a, **kw):  # the method's answer, as the extended Prediction (predict goes through locate)
        p, meta = real(self, *a, **kw)
        return extra(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}, test_note="seen"), meta

    monkeypatch.setattr(Img2GPS, "locate", locate)
    photo = tmp_path / "q.jpg"
    photo.write_bytes(jpeg_bytes(place_image(1, seed=7)))

    assert main(["predict", str(photo), "--model", str(model_dir), "--format", "json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    cli = cli[0] if isinstance(cli, list) else cli
    assert cli["test_note"] == "seen"

    model = Img2GPS.load(model_dir)
    with TestClient(create_app(model=model, warmup=False)) as c:
        r = c.post("/predict", files={"file": ("q.jpg", photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["test_note"] == "seen"
        schema = c.get("/openapi.json").json()["components"]["schemas"]["PredictionOut"]
        assert schema["properties"]["test_note"]["description"] == "added"

    page = map_data([model.predict(photo.read_bytes())])
    assert page["items"][0]["prediction"]["test_note"] == "seen"
