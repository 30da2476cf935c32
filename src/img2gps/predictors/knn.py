"""k-NN retrieval over global embeddings (cosine, faiss) with a similarity-weighted position."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..features.cache import embed_dataset
from ..features.encoders import ENCODERS, get_encoder
from ..features.indexing import ExtractSpec, ensure_features
from ..localization.aggregate import aggregate
from ..localization.calibration import RadiusModel
from ..localization.conformal import MondrianRadius, bands
from ..localization.holdout import HOLDOUTS, excluded_rows, holdout_radius_m, same_spot_radius_m
from ..localization.knn import KNNState, in_area
from ..retrieval.database import INDEX_KINDS, CosineIndex
from ..types import Prediction
from .base import BasePredictor
from .spec import opt


AGGS = ("mean", "softmax", "median")


def _embed_names():
    return (*ENCODERS, "regression")


@dataclass
class KNNConfig:
    # an encoder (features/encoders.py) or "regression" (a trained model's 256-d layer)
    embed: str = opt("lite0", choices=_embed_names, export="fit")
    k: int = opt(3, ge=1, export="model")
    agg: str = opt("mean", choices=AGGS, export="model")  # mean (the paper's weighted mean) | softmax | median
    coverage: float = opt(0.8, gt=0, lt=1, export="fit")
    regression_spec: str = opt("regression", export="fit")  # used when embed=regression
    # faiss index: auto (exact up to 100k vectors, then IVF-PQ) | flat | hnsw | ivfpq
    index: str = opt("auto", choices=INDEX_KINDS, export="fit")
    calib: int = opt(2000, ge=1)  # at most this many gallery photos (seeded sample) are held out for calibration
    sim_bands: int = opt(3, ge=1)  # Mondrian groups by the top neighbour's similarity (equal-count bands)


def calibrate_radius(state: KNNState, cfg: KNNConfig) -> tuple[list[MondrianRadius], list[list[float]]]:
    """Per area (radius model, similarity band edges) from held-out gallery photos, near (same-spot siblings left
    out) and far (a 2R block left out; localization/holdout.py): errors normalised by the neighbours' spread,
    grouped by the top neighbour's similarity (Mondrian, localization/conformal.py) and by the area the answer
    fell in. A query unlike the gallery lands in a low band and gets that band's wider radius."""
    n, plane = len(state.en), state.plane
    if n < 3:
        return [MondrianRadius(pooled=RadiusModel(scale=1.0, floor_m=25.0, area_m=100.0))] * plane.n_areas, \
            [[] for _ in plane.areas]
    rows_all = np.arange(n) if n <= cfg.calib else np.sort(np.random.default_rng(0).choice(n, cfg.calib, replace=False))
    en = state.en
    errs, spreads, tops, holdout, areas = [], [], [], [], []
    for h in HOLDOUTS:
        for i in range(plane.n_areas):  # a held-out photo leaves out what lies within its own area's radius
            radius = holdout_radius_m(same_spot_radius_m(en[plane.rows(i)]), h)
            for r, c, s, idx, srow in _held_out(state, cfg, rows_all[plane.label[rows_all] == i], radius):
                errs.append(plane.distance_m(c, en[r]))
                spreads.append(s)
                tops.append(float(srow[idx[0]]))
                holdout.append(h)
                areas.append(int(plane.label[idx[0]]))
    models, all_edges = [], []
    errs, spreads, tops, holdout, areas = (np.asarray(x) for x in (errs, spreads, tops, holdout, areas))
    for i in range(plane.n_areas):
        m = areas == i
        own = en[plane.rows(i)]
        area = float(np.quantile(np.linalg.norm(own - own.mean(0), axis=1), cfg.coverage))
        edges = [float(x) for x in np.quantile(tops[m], np.arange(1, cfg.sim_bands) / cfg.sim_bands)] if m.any() else []
        models.append(MondrianRadius.fit(bands(tops[m], edges), holdout[m], errs[m], spreads[m],
                                         coverage=cfg.coverage, area_m=area))
        all_edges.append(edges)
    return models, all_edges


def _held_out(state: KNNState, cfg: KNNConfig, rows: np.ndarray, radius_m: float):
    """Per held-out gallery row (everything within radius_m of it left out): (row, answer en, spread, the
    aggregated neighbours' idx, the row's similarities), the neighbours from one area as at query time."""
    en, v, plane = state.en, state.index.vectors, state.plane
    for a in range(0, len(rows), 512):  # memory stays O(rows x n) per block
        block = rows[a:a + 512]
        sim = state.index.dot(v[block])
        sim[excluded_rows(en, block, radius_m)] = -np.inf
        for r, srow in zip(block, sim):
            if plane.n_areas == 1:
                idx = np.argsort(-srow)[: cfg.k]
                idx = idx[np.isfinite(srow[idx])]
            else:
                idx = in_area(srow, plane.label, cfg.k)[1] if np.isfinite(srow).any() else []
            if len(idx):  # else every other photo stands at this spot
                c, s = aggregate(en[idx], srow[idx], cfg.agg)
                yield r, c, s, idx, srow


class KNNPredictor(BasePredictor):
    name = "knn"
    Config = KNNConfig

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        if self.config.embed in ENCODERS:  # decode queries exactly as large as gallery photos are decoded
            self.query_max_side = get_encoder(self.config.embed).load_side
        self.state: KNNState | None = None
        self._encoder = None
        self._embedder = None  # a trained RegressionEmbedding (predictors/trained/embedding.py), when embed=regression

    # -- embeddings ---------------------------------------------------------------------------------------
    def _embed_gallery(self, train) -> np.ndarray:
        if self.config.embed == "regression":
            from .trained.embedding import embed_gallery, train_embedding  # torch training: only when asked for

            self._embedder = train_embedding(self.config.regression_spec, train)
            return embed_gallery(self._embedder, train)
        self._encoder = get_encoder(self.config.embed)
        keys = [train.content_key(i) for i in range(len(train))]  # each photo hashed once
        self.indexing_stats = ensure_features(train, ExtractSpec(embed=self.config.embed), self.indexing, keys=keys,
                                              label="embedding")
        return embed_dataset(self._encoder, train, keys=keys)

    @property
    def query_encoder(self):
        """The frozen encoder that embeds queries (None when embed=regression); read by ONNX export."""
        return self._encoder if self._embedder is None else None

    @property
    def embedder(self):
        """The RegressionEmbedding (state, config, spec) whose 256-d layer embeds queries (embed=regression), else
        None; read by export."""
        return self._embedder

    def use_query_encoder(self, encoder) -> None:
        """Embed queries with another runtime of the same network (e.g. export.OnnxEncoder); same embed() contract."""
        if self._embedder is not None or self._encoder is None:
            raise ModelError(f"{self.spec}: queries are not embedded by a swappable encoder")
        self._encoder = encoder

    def embed(self, queries) -> np.ndarray:
        """Queries (types.Query) -> (N, D) float32 embeddings, exactly as the gallery was embedded."""
        if self._embedder is not None:
            from .trained.embedding import embed_queries

            return embed_queries(self._embedder, queries)
        return np.asarray(self._encoder.embed([q.image() for q in queries]), np.float32)

    # -- fit / predict ------------------------------------------------------------------------------------
    def _fit(self, train) -> None:
        self.state = KNNState.build(CosineIndex(self._embed_gallery(train), self.config.index), self.gallery)
        self.state.radius_models, self.state.sim_edges = calibrate_radius(self.state, self.config)

    def _predict_ranked_one(self, query, top_k: int, n: int):
        s, c = self.state, self.config
        pos, spread, idx, sims = s.locate(self.embed([query])[0], c.k, c.agg, max(top_k, n))
        lat, lon = s.plane.to_latlon(pos)
        area = int(s.plane.label[idx[0]])
        r = s.radius(spread, float(sims[0]), area)
        return (Prediction(float(lat), float(lon), r, s.radius_models[area].pooled.confidence(r), False, self.spec,
                           self.neighbours(idx, sims, top_k)), idx[:n])

    def add_refusal(self):
        if self.config.embed == "regression":
            return f"{self.spec}: embed=regression is trained on the gallery; re-fit it with `img2gps fit`"
        return None

    def _add(self, new) -> None:
        """New photos' embeddings (cached, computed by self.indexing) appended to the index; existing rows untouched."""
        self._encoder = self._encoder or get_encoder(self.config.embed)
        keys = [new.content_key(i) for i in range(len(new))]
        self.indexing_stats = ensure_features(new, ExtractSpec(embed=self.config.embed), self.indexing, keys=keys,
                                              label="embedding")
        index = self.state.index
        index.add(embed_dataset(self._encoder, new, keys=keys))
        self.state = KNNState.build(index, self.gallery)
        self.state.radius_models, self.state.sim_edges = calibrate_radius(self.state, self.config)

    def _remove(self, keep, recalibrate) -> None:
        """The kept rows' stored vectors re-indexed (no photo is embedded again); calibration redone (it is cheap)."""
        old = self.state.index
        self.state = KNNState.build(CosineIndex(old.vectors[keep], old.kind, old.refine), self.gallery)
        self.state.radius_models, self.state.sim_edges = calibrate_radius(self.state, self.config)

    def fit_report(self):
        return {"index": self.state.index_report}

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d: Path) -> None:
        self.state.save(d)
        if self._embedder is not None:
            from .trained.embedding import save_embedding

            save_embedding(self._embedder, d / "embedder")

    def _state(self):
        return {"radius_models": [r.to_dict() for r in self.state.radius_models], "sim_edges": self.state.sim_edges,
                "dim": int(self.state.vectors.shape[1]),
                "index": self.state.index_report}

    def _load_files(self, d: Path, state):
        self.state = KNNState.load(d, self.config.index, self.gallery, state)
        if self.config.embed == "regression":
            from .trained.embedding import load_embedding

            self._embedder = load_embedding(d / "embedder")
        else:
            self._encoder = get_encoder(self.config.embed)
