"""Contrastive k-NN: the paper's loss by hand, learning on a toy set, honest calibration, save/load round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from img2gps.data import load_dataset
from img2gps.errors import ModelError
from img2gps.predictors.trained.contrastive import geo_contrastive_loss, similarity_targets
from img2gps.predictors.registry import load_model, make_predictor

from synth import assert_same_prediction
from trainable_data import held_out_errors, make_grid_dataset

FAST = "contrastive:input_size=64:views=1:calib_folds=2:tau_m=40:dim=32:hidden=128"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("IMG2GPS_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield load_dataset(make_grid_dataset(tmp_path_factory.mktemp("grid")))
    mp.undo()


@pytest.fixture(scope="module")
def fitted(grid):
    p = make_predictor(FAST + ":epochs=20:patience=20")
    p.fit(grid)
    return p


def test_loss_matches_a_hand_computed_value():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # unit vectors: dots f1.f2=0, f1.f3=0.6, f2.f3=0.8
    t = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.9], [0.2, 0.9, 1.0]])
    # 1/(B(B-1)) * sum over ordered pairs i != j: 2 * ((0-.5)^2 + (.6-.2)^2 + (.8-.9)^2) / 6 = 0.14
    assert float(geo_contrastive_loss(f, t)) == pytest.approx(0.14, abs=1e-6)
    assert float(geo_contrastive_loss(f[:1], t[:1, :1])) == 0.0  # a batch of one has no pairs


def test_similarity_targets_decay_with_distance_in_metres():
    lat = np.array([39.95, 39.95, 39.95 + 50 / 111_195.0])
    t = similarity_targets(lat, np.array([-75.19, -75.19, -75.19]), tau_m=25.0)
    assert t.shape == (3, 3) and np.allclose(np.diag(t), 1.0)
    assert t[0, 1] == pytest.approx(1.0) and t[0, 2] == pytest.approx(np.exp(-2.0), rel=1e-3)


@pytest.mark.slow
def test_fit_learns_and_retrieves_with_a_calibrated_radius(fitted, grid):
    h = fitted.state.history
    assert min(h.train_loss[-5:]) < 0.7 * h.train_loss[0]
    assert fitted.state.vectors.shape == (12, 32)
    assert np.allclose(np.linalg.norm(fitted.state.vectors, axis=1), 1.0, atol=1e-5)
    p = fitted.predict([grid.read(4)], top_k=5)[0]
    assert len(p.neighbours) == 5 and p.neighbours[0].image_id == "p04.jpg"
    assert p.radius_m > 0 and 0 <= p.confidence <= 1 and p.recognised is False
    # radius calibrated on inner folds (each photo held out once, never in-sample)
    assert fitted.state.calibration["folds"] == 2 and fitted.state.radius_model.n_calibration == 12


@pytest.mark.slow
def test_held_out_photos_are_located_near_their_place(fitted):
    """Fresh photos of the 12 places (not gallery photos): the centre is ~52 m off on average; the contrastive
    k-NN was measured at ~21 m. A model that retrieved at random would not beat 0.75 x the centre."""
    errs, base, radii = held_out_errors(fitted)
    assert errs.mean() < 0.75 * base.mean(), (errs.mean(), base.mean())
    assert np.mean(errs <= radii) >= 0.75


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_predictions(fitted, grid, tmp_path):
    fitted.save(tmp_path / "m")
    for name in ("model.json", "weights.pt", "embeddings.npy", "loss_curves.png", "train.log"):
        assert (tmp_path / "m" / name).is_file()
    loaded = load_model(tmp_path / "m")
    imgs = [grid.read(i) for i in (1, 7)]
    a, b = fitted.predict(imgs), loaded.predict(imgs)
    for x, y in zip(a, b):
        assert_same_prediction(x, y, abs_tol=1e-8)  # the saved gallery table rounds positions to 1e-8 deg (~1 mm)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ModelError, match="tau_m"):
        make_predictor("contrastive:tau_m=0")
    with pytest.raises(ModelError, match="pool"):
        make_predictor("contrastive:pool=max")
