"""The regression net's hidden layer as an embedding (knn:embed=regression), as functions of this package: train
it on a gallery, embed photos with it, save and load it. knn composes these; it never builds a method through the
registry. The saved form is a regression model directory (knn's `embedder/`), so older knn models still load.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ModelError
from ..spec import config_from_params, parse_spec
from .regression import RegressionConfig, RegressionPredictor
from .state import RegressionState


@dataclass
class RegressionEmbedding:
    """A trained regression net used as an embedder: its fitted state and config (what the leaderboard export
    reads), its spec, and the fitted model that `save_embedding` writes."""
    state: RegressionState
    config: RegressionConfig
    spec: str
    model: RegressionPredictor

    @property
    def width(self) -> int:
        """Embedding dimension (the config's hidden size)."""
        return int(self.config.hidden)


def _wrap(model: RegressionPredictor) -> RegressionEmbedding:
    return RegressionEmbedding(model.state, model.config, model.spec, model)


def train_embedding(spec: str, train) -> RegressionEmbedding:
    """Train the regression net given by `spec` (a `regression[:key=value...]` spec, validated by predictors/spec.py)
    on GeoDataset `train`. Raises ModelError for another method's spec."""
    name, params = parse_spec(spec)
    if name != RegressionPredictor.name:
        raise ModelError(f"regression_spec must be a regression spec, not {spec!r}")
    model = RegressionPredictor(config_from_params(RegressionConfig, params, spec), spec=spec)
    model.fit(train)
    return _wrap(model)


def embed_gallery(emb: RegressionEmbedding, ds) -> np.ndarray:
    """(N, width) float32 embeddings of every photo of a GeoDataset (clean views)."""
    return emb.model.embed_dataset(ds)


def embed_queries(emb: RegressionEmbedding, queries) -> np.ndarray:
    """(N, width) float32 embeddings of decoded photos (types.Query or RGB PIL images)."""
    return np.asarray(emb.model.embed_images(list(queries)), np.float32)


def save_embedding(emb: RegressionEmbedding, d: Path) -> None:
    """Write the embedder as a regression model directory at d (no thumbnails)."""
    emb.model.save(d, thumbnails=False)


def load_embedding(d: Path) -> RegressionEmbedding:
    """The embedder saved at d by save_embedding."""
    return _wrap(RegressionPredictor.load(d))
