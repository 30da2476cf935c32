"""Fitted states built by hand: for tests of refusals and loading, which need a saved model but not a fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def hand_built_knn(model_dir: Path, spec: str, dim: int) -> Path:
    """A saved k-NN model whose state is built by hand (three random unit vectors): what a refusal test needs,
    without fitting (and without loading the encoder's weights)."""
    from img2gps.localization.conformal import MondrianRadius
    from img2gps.localization.difficulty import DifficultyBins
    from img2gps.predictors import make_predictor
    from img2gps.localization.knn import KNNState
    from img2gps.retrieval.database import CosineIndex

    p = make_predictor(spec)
    p.gallery = pd.DataFrame({"image": ["a.jpg", "b.jpg", "c.jpg"], "Latitude": [39.95, 39.9501, 39.9502],
                              "Longitude": [-75.19, -75.1901, -75.1902]})
    p.gallery_fingerprint = "hand-built"
    v = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    p.state = KNNState.build(CosineIndex(v / np.linalg.norm(v, axis=1, keepdims=True), "flat"), p.gallery)
    p.state.radius_models, p.state.bins = [MondrianRadius()], [DifficultyBins()]
    p.save(model_dir)
    return model_dir
