"""predictors/spec.py: a spec and a saved model's config are checked in one place, in one line each."""
from __future__ import annotations

import json

import pytest

from img2gps.errors import ModelError
from img2gps.predictors import load_model, make_predictor
from img2gps.predictors.spec import config_from_saved, parse_spec
from img2gps.predictors.knn import KNNConfig
from img2gps.predictors.trained.regression import RegressionPredictor
from states import hand_built_knn


@pytest.mark.parametrize("spec, problem", [
    ("regression:device=tpu", "device must be cpu, cuda or cuda:N, not 'tpu'"),
    ("regression:mode=fast", "mode must be one of auto, cached, full"),
    ("knn:k=0", "k must be >= 1, not 0"),
    ("knn:index=lsh", "index must be one of"),
    ("rerank:ratio=1.5", "ratio must be <= 1, not 1.5"),
    ("rerank:coverage=1", "coverage must be < 1"),
    ("contrastive:tau_m=-3", "tau_m must be > 0"),
    ("knn:k=three", "k='three' is not a valid int"),
    ("knn:kk=3", "unknown option(s) kk"),
    ("mean-coordinate:coverage=7", "coverage must be < 1, not 7.0"),
    ("regression:backbone=nope", "backbone must be one of lite0, lite1, lite2, b0, b1, b2, b3, not 'nope'"),
    ("rerank:coarse_m=-5", "coarse_m must be >= 0, not -5.0"),
    ("regression:seed=-1", "seed must be >= 0"),
])
def test_bad_specs_are_refused_at_spec_time_in_one_line(spec, problem):
    with pytest.raises(ModelError) as e:
        make_predictor(spec)
    assert problem in str(e.value) and spec in str(e.value) and "\n" not in str(e.value)


def test_a_config_built_in_code_is_checked_the_same_way():
    from img2gps.predictors.knn import KNNPredictor

    with pytest.raises(ModelError, match="agg must be one of mean, softmax, median"):
        KNNPredictor(KNNConfig(agg="max"))


def test_every_method_config_field_declares_its_checks():
    from img2gps.predictors.registry import REGISTRY, predictor_class
    from img2gps.predictors.spec import undeclared_fields

    bare = {name: undeclared_fields(predictor_class(name).Config) for name in REGISTRY}
    assert not any(bare.values()), bare


def test_a_value_of_the_wrong_type_is_refused():
    from img2gps.predictors.knn import KNNPredictor

    with pytest.raises(ModelError, match="k must be of type int, not .3."):
        KNNPredictor(KNNConfig(k="3"))


def test_parse_spec():
    assert parse_spec("knn:embed=lite0:k=3") == ("knn", {"embed": "lite0", "k": "3"})
    with pytest.raises(ModelError, match="not key=value"):
        parse_spec("knn:k")


def test_loading_refuses_unknown_or_bad_config_keys(tmp_path):
    md = hand_built_knn(tmp_path / "m", "knn:k=2", 8)
    assert load_model(md).config.k == 2
    man = json.loads((md / "model.json").read_text())
    for change, problem in (({"bogus": 1}, "unknown option(s) bogus"), ({"k": 0}, "k must be >= 1")):
        (md / "model.json").write_text(json.dumps({**man, "config": {**man["config"], **change}}))
        with pytest.raises(ModelError) as e:
            load_model(md)
        assert problem in str(e.value) and "model.json" in str(e.value) and "\n" not in str(e.value)


def test_saved_config_runs_a_gpu_trained_model_here(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    manifest = {"config": {"device": "cuda", "mode": "auto", "backbone": "b0", "fallback": True},
                "state": {"mode_used": "full", "backbone_used": "lite0"}}
    cfg = RegressionPredictor.saved_config(manifest)
    assert cfg["device"] == "cpu" and cfg["mode"] == "full" and (cfg["backbone"], cfg["fallback"]) == ("lite0", False)
    assert manifest["config"]["device"] == "cuda"  # the manifest itself is left as saved
    c = config_from_saved(RegressionPredictor.Config, cfg, "m/model.json")
    assert c.device == "cpu" and c.mode == "full"
