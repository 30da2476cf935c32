"""The GPU path of the trained methods (full fine-tuning), checked on the CPU: a model directory written by a fit on
device=cuda loads and predicts on a CPU-only machine."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from img2gps.data import load_dataset
from img2gps.predictors.registry import load_model, make_predictor

from synth import assert_same_prediction
from trainable_data import make_grid_dataset

TINY_FULL = "mode=full:input_size=64:epochs=1:calib_folds=0:batch=6"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return load_dataset(str(make_grid_dataset(tmp_path_factory.mktemp("grid"))))


def as_if_fitted_on_cuda(model_dir) -> None:
    """What a fit with device=cuda writes: the same files (weights are saved as CPU tensors), with the spec and
    config that name the GPU."""
    path = model_dir / "model.json"
    m = json.loads(path.read_text())
    assert m["config"]["device"] == "cpu"
    m["config"]["device"] = "cuda"
    m["spec"] = m["spec"] + ":device=cuda"
    path.write_text(json.dumps(m))


@pytest.mark.parametrize("method", ["regression", "contrastive"])
def test_a_model_fitted_on_cuda_loads_and_predicts_on_a_cpu_only_machine(grid, tmp_path, method, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI, whatever this machine has
    p = make_predictor(f"{method}:{TINY_FULL}")
    p.fit(grid)
    a = p.predict([grid.read(3)])[0]
    p.save(tmp_path / "m")
    as_if_fitted_on_cuda(tmp_path / "m")
    q = load_model(tmp_path / "m")
    assert q.config.device == "cpu" and q.full  # the full-network layout, run on the CPU
    assert next(q.net.parameters()).device.type == "cpu"
    b = q.predict([grid.read(3)])[0]
    assert b.method == a.method + ":device=cuda"  # the spec it was fitted with, as recorded
    # neighbours are read back from gallery.csv (1e-9 degrees), the rest is bit-identical
    assert_same_prediction(dataclasses.replace(a, method=b.method), b, abs_tol=1e-8)
