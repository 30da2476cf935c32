"""The GPU path of the trained methods (full fine-tuning), checked on the CPU: a model directory written by a fit on
device=cuda loads and predicts on a CPU-only machine; the on-device batch augmentation's inputs; mixed precision
only where it belongs (a CUDA GPU)."""
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


@pytest.mark.slow
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
    assert next(q.state.net.parameters()).device.type == "cpu"
    b = q.predict([grid.read(3)])[0]
    assert b.method == a.method + ":device=cuda"  # the spec it was fitted with, as recorded
    # neighbours are read back from gallery.csv (1e-9 degrees), the rest is bit-identical
    assert_same_prediction(dataclasses.replace(a, method=b.method), b, abs_tol=1e-8)


def live_data(grid, seed=5, size=64):
    from img2gps.predictors.trained.trunk import AugmentConfig, Trunk, resolve_backbone
    from img2gps.predictors.trained.data import LiveData

    enc, _ = resolve_backbone("lite0")
    trunk = Trunk(enc, 0, size)
    images = [grid.open(i, max_side=enc.load_side) for i in range(len(grid))]
    return trunk, images, LiveData(trunk, images, AugmentConfig(), seed, "cpu")


def test_live_data_clean_inputs_are_the_query_path(grid):
    trunk, images, data = live_data(grid)
    # validation and calibration see exactly what a query sees
    assert torch.equal(data.clean([2, 7]), trunk.preprocess([images[2], images[7]]))


def test_live_data_augments_batches_reproducibly(grid):
    import numpy as np

    trunk, images, a = live_data(grid, seed=5)
    _, _, b = live_data(grid, seed=5)
    _, _, c = live_data(grid, seed=6)
    pairs = a.samples(np.arange(6))
    xa, xb, xc = a.batch(pairs), b.batch(pairs), c.batch(pairs)
    assert xa.shape == (6, 3, 64, 64) and xa.dtype == torch.float32
    assert xa.min() >= -1 and xa.max() <= 1  # Lite's normalisation of [0, 1] pixels
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)  # the seed decides the crops and jitter
    assert not torch.equal(xa, a.batch(pairs))  # a fresh augmentation every time a photo is drawn
    assert float((xa - a.clean(np.arange(6))).abs().mean()) > 0.02  # augmented, not the clean view


def test_mixed_precision_only_for_full_fine_tuning_on_cuda():
    from img2gps.predictors.trained.net import HeadNet

    assert not make_predictor(f"regression:{TINY_FULL}").amp  # the CPU never autocasts
    assert not make_predictor("regression:mode=cached").amp
    net = HeadNet(torch.nn.Identity(), torch.nn.Linear(4, 2), freeze_body_bn=False, amp=True).train()
    x = torch.randn(3, 4)
    assert net(x).dtype == torch.float32 and torch.equal(net(x), net.head(x))  # a CPU input runs in float32
