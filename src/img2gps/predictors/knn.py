"""k-NN retrieval over global embeddings (cosine, faiss) with a similarity-weighted position."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..localization.calibration import RadiusModel
from ..errors import ModelError
from ..retrieval.encoders import ENCODERS, get_encoder
from ..features.cache import embed_dataset
from ..indexing import ExtractSpec, ensure_features
from ..geo import LocalFrame
from ..localization.conformal import MondrianRadius, bands
from ..localization.holdout import HOLDOUTS, excluded_rows, holdout_radius_m, same_spot_radius_m
from ..retrieval.database import INDEX_KINDS, CosineIndex, aggregate
from .base import BasePredictor, Prediction


@dataclass
class KNNConfig:
    embed: str = "lite0"  # an encoder name (features/backbones.py) or "regression" (a trained model's 256-d layer)
    k: int = 3
    agg: str = "mean"  # mean (the paper's weighted mean) | softmax | median
    coverage: float = 0.8
    regression_spec: str = "regression"  # used when embed=regression
    index: str = "auto"  # faiss index: auto (exact up to 100k vectors, then IVF-PQ) | flat | hnsw | ivfpq
    calib: int = 2000  # at most this many gallery photos (seeded sample) are held out for radius calibration
    sim_bands: int = 3  # Mondrian groups by the top neighbour's similarity (equal-count bands at calibration)


class KNNPredictor(BasePredictor):
    name = "knn"
    Config = KNNConfig

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        if self.config.k < 1 or self.config.calib < 1:
            raise ModelError(f"{self.spec}: k and calib must be >= 1")
        if self.config.index not in INDEX_KINDS:
            raise ModelError(f"{self.spec}: index must be one of {', '.join(INDEX_KINDS)}")
        if self.config.agg not in ("mean", "softmax", "median"):
            raise ModelError(f"{self.spec}: agg must be mean, softmax or median")
        if self.config.embed != "regression" and self.config.embed not in ENCODERS:
            raise ModelError(f"{self.spec}: unknown embed {self.config.embed!r}; known: {', '.join(ENCODERS)}, regression")
        if self.config.embed in ENCODERS:  # decode queries exactly as large as gallery photos are decoded
            self.query_max_side = get_encoder(self.config.embed).load_side
        self._encoder = None
        self._embedder = None  # a fitted predictor exposing embed_images(), when embed=regression

    # -- embeddings ---------------------------------------------------------------------------------------
    def _embed_gallery(self, train) -> np.ndarray:
        if self.config.embed == "regression":
            from .registry import make_predictor

            self._embedder = make_predictor(self.config.regression_spec)
            self._embedder.fit(train)
            return self._embedder.embed_dataset(train)
        self._encoder = get_encoder(self.config.embed)
        stats = ensure_features(train, ExtractSpec(embed=self.config.embed), self.indexing, label="embedding")
        self.indexing_stats = stats
        return embed_dataset(self._encoder, train)

    @property
    def query_encoder(self):
        """The frozen encoder that embeds queries (None when embed=regression); read by ONNX export."""
        return self._encoder if self._embedder is None else None

    @property
    def embedder(self):
        """The fitted predictor whose 256-d layer embeds queries (embed=regression), else None; read by export."""
        return self._embedder

    def use_query_encoder(self, encoder) -> None:
        """Embed queries with another runtime of the same network (e.g. export.OnnxEncoder); same embed() contract."""
        if self._embedder is not None or self._encoder is None:
            raise ModelError(f"{self.spec}: queries are not embedded by a swappable encoder")
        self._encoder = encoder

    def embed(self, images) -> np.ndarray:
        """Query photos (decoded PIL images) -> (N, D) float32 embeddings, exactly as the gallery was embedded.

        The one query-embedding path: knn's predict and rerank's shortlist both call it.
        """
        if self._embedder is not None:
            return np.asarray(self._embedder.embed_images(list(images)), np.float32)
        return np.asarray(self._encoder.embed(list(images)), np.float32)

    # -- fit / predict ------------------------------------------------------------------------------------
    def _fit(self, train) -> None:
        self.vectors = self._embed_gallery(train)
        self._build()
        self.index_report = {"kind": self.index.kind, "n": len(self.index),
                             "recall_at_10_vs_exact": self.index.recall_vs_exact(10)}
        self._calibrate()

    def _build(self, index: CosineIndex | None = None):
        self.index = index if index is not None else CosineIndex(self.vectors, self.config.index)
        self.frame = LocalFrame.around(self.gallery["Latitude"], self.gallery["Longitude"])
        self.en = self.frame.to_en(self.gallery["Latitude"], self.gallery["Longitude"])

    def _calibrate(self):
        """Held-out gallery photos, near (same-spot siblings left out) and far (a 2R block left out;
        localization/holdout.py): errors normalised by the neighbours' spread, grouped by the top neighbour's
        similarity (localization/conformal.py), set the radius. A query unlike the gallery lands in a low band
        and gets that band's wider radius."""
        n = len(self.vectors)
        self.sim_edges: list[float] = []
        if n < 3:
            self.radius_model = MondrianRadius(pooled=RadiusModel(scale=1.0, floor_m=25.0, area_m=100.0))
            return
        # A bounded seeded subset of held-out photos; memory stays O(rows x n) per block.
        rows_all = np.arange(n) if n <= self.config.calib else np.sort(
            np.random.default_rng(0).choice(n, self.config.calib, replace=False))
        spot = same_spot_radius_m(self.en)
        v = self.index.vectors
        errs, spreads, tops, holdout = [], [], [], []
        for h in HOLDOUTS:
            for a in range(0, len(rows_all), 512):
                rows = rows_all[a:a + 512]
                sim = v[rows] @ v.T
                sim[excluded_rows(self.en, rows, holdout_radius_m(spot, h))] = -np.inf
                for r, srow in zip(rows, sim):
                    idx = np.argsort(-srow)[: self.config.k]
                    idx = idx[np.isfinite(srow[idx])]
                    if not len(idx):  # every other photo stands at this spot
                        continue
                    c, s = aggregate(self.en[idx], srow[idx], self.config.agg)
                    errs.append(np.linalg.norm(c - self.en[r]))
                    spreads.append(s)
                    tops.append(float(srow[idx[0]]))
                    holdout.append(h)
        centre_err = np.linalg.norm(self.en - self.en.mean(0), axis=1)
        area = float(np.quantile(centre_err, self.config.coverage))
        nb = max(1, self.config.sim_bands)
        self.sim_edges = [float(x) for x in np.quantile(tops, np.arange(1, nb) / nb)] if tops else []
        self.radius_model = MondrianRadius.fit(bands(tops, self.sim_edges), holdout, errs, spreads,
                                               coverage=self.config.coverage, area_m=area)

    def radius_for(self, spread: float, top_sim: float) -> float:
        """Calibrated radius (m) of an answer with this neighbour spread (m) and top cosine similarity."""
        return self.radius_model.radius(str(bands([top_sim], self.sim_edges)[0]), spread)

    def locate(self, q: np.ndarray, top_k: int):
        """Query vector -> (position en, spread, neighbour idx, sims) with max(k, top_k) neighbours searched."""
        sims, idx = self.index.search(q.reshape(1, -1), max(self.config.k, top_k))
        sims, idx = sims[0], idx[0]
        k = min(self.config.k, len(idx))
        c, spread = aggregate(self.en[idx[:k]], sims[:k], self.config.agg)
        return c, spread, idx, sims

    def _predict_ranked_one(self, image, top_k: int, n: int):
        q = self.embed([image])
        c, spread, idx, sims = self.locate(q, max(top_k, n))
        lat, lon = self.frame.to_latlon(c)
        r = self.radius_for(spread, float(sims[0]))
        return (Prediction(float(lat), float(lon), r, self.radius_model.pooled.confidence(r), False, self.spec,
                           self.neighbours(idx, sims, top_k)), idx[:n])

    def add_refusal(self):
        if self.config.embed == "regression":
            return f"{self.spec}: embed=regression is trained on the gallery; re-fit it with `img2gps fit`"
        return None

    def _add(self, new) -> None:
        """New photos' embeddings (cached, computed by self.indexing) appended to the index; existing rows untouched."""
        self._encoder = self._encoder or get_encoder(self.config.embed)
        self.indexing_stats = ensure_features(new, ExtractSpec(embed=self.config.embed), self.indexing, label="embedding")
        self.index.add(embed_dataset(self._encoder, new))
        self.vectors = self.index.vectors
        self._build(self.index)
        self.index_report = {"kind": self.index.kind, "n": len(self.index),
                             "recall_at_10_vs_exact": self.index.recall_vs_exact(10)}
        self._calibrate()

    def fit_report(self):
        return {"index": self.index_report}

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d: Path) -> None:
        self.index.save(d)
        if self._embedder is not None:
            self._embedder.save(d / "embedder", thumbnails=False)

    def _state(self):
        return {"radius_model": self.radius_model.to_dict(), "sim_edges": self.sim_edges, "dim": int(self.vectors.shape[1]),
                "index": self.index_report}

    def _load_files(self, d: Path, state):
        self.index = CosineIndex.load(d, self.config.index)
        self.index_report = state.get("index", {})
        self.vectors = self.index.vectors
        self._build(self.index)
        self.radius_model = MondrianRadius.from_dict(state.get("radius_model"))
        self.sim_edges = list(state.get("sim_edges", []))
        if self.config.embed == "regression":
            from .registry import load_model

            self._embedder = load_model(d / "embedder")
        else:
            self._encoder = get_encoder(self.config.embed)
