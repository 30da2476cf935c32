"""k-NN retrieval over global embeddings (cosine, faiss) with a similarity-weighted position."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..localization.calibration import RadiusModel
from ..errors import ModelError
from ..retrieval.encoders import ENCODERS, get_encoder
from ..features.cache import embed_dataset
from ..indexing import ExtractSpec, ensure_features
from ..area import GalleryPlane
from ..geo import LocalFrame
from ..localization.conformal import MondrianRadius, bands
from ..localization.holdout import HOLDOUTS, excluded_rows, holdout_radius_m, same_spot_radius_m
from ..localization.aggregate import aggregate
from ..retrieval.database import INDEX_KINDS, CosineIndex
from ..types import Prediction
from .base import BasePredictor
from .spec import opt


AGGS = ("mean", "softmax", "median")


def _embed_names():
    return (*ENCODERS, "regression")


@dataclass
class KNNConfig:
    # an encoder (features/backbones.py) or "regression" (a trained model's 256-d layer)
    embed: str = opt("lite0", choices=_embed_names, export="fit")
    k: int = opt(3, ge=1, export="model")
    agg: str = opt("mean", choices=AGGS, export="model")  # mean (the paper's weighted mean) | softmax | median
    coverage: float = opt(0.8, gt=0, lt=1, export="fit")
    regression_spec: str = opt("regression", export="fit")  # used when embed=regression
    # faiss index: auto (exact up to 100k vectors, then IVF-PQ) | flat | hnsw | ivfpq
    index: str = opt("auto", choices=INDEX_KINDS, export="fit")
    calib: int = opt(2000, ge=1)  # at most this many gallery photos (seeded sample) are held out for calibration
    sim_bands: int = opt(3, ge=1)  # Mondrian groups by the top neighbour's similarity (equal-count bands)


@dataclass
class KNNState:
    """A fitted k-NN gallery: the cosine index of the (N, D) unit vectors, the gallery's plane (area.GalleryPlane:
    its areas, each photo's area and (N, 2) east/north metres in its area's frame), one calibrated radius model
    and top-similarity band edges per area (empty where the owner calibrates its own, e.g. rerank) and the index
    report (kind, n, recall@10 vs exact). An answer averages the neighbours of one area only: the top neighbour's."""
    index: CosineIndex
    plane: GalleryPlane
    radius_models: list[MondrianRadius] = field(default_factory=list)  # per area, in plane order
    index_report: dict = field(default_factory=dict)
    sim_edges: list = field(default_factory=list)  # per area: top-similarity band edges of its radius model's kinds

    @property
    def en(self) -> np.ndarray:
        return self.plane.en

    @property
    def frame(self) -> LocalFrame:
        """The metric frame of a one-area gallery. Raises ModelError for a gallery of several areas."""
        if self.plane.n_areas != 1:
            raise ModelError(f"the gallery covers {self.plane.n_areas} far-apart areas, each with its own frame; "
                             "an output with one frame (e.g. the leaderboard export) cannot hold it")
        return self.plane.areas[0].frame

    def radius(self, spread: float, top_sim: float, area: int = 0) -> float:
        """Calibrated radius (m) of an answer in `area` with this neighbour spread (m) and top cosine similarity."""
        return self.radius_models[area].radius(str(bands([top_sim], self.sim_edges[area])[0]), spread)

    @property
    def vectors(self) -> np.ndarray:
        return self.index.vectors

    @classmethod
    def build(cls, index: CosineIndex, gallery) -> "KNNState":
        """Index + gallery table (Latitude, Longitude per row) -> a state without radius models."""
        report = {"kind": index.kind, "n": len(index), "recall_at_10_vs_exact": index.recall_vs_exact(10)}
        return cls(index, GalleryPlane.of(gallery["Latitude"], gallery["Longitude"]), [], report)

    def locate(self, q: np.ndarray, k: int, agg: str, top_k: int, area: int | None = None):
        """Query vector (D,) -> (position en (2,), spread m, neighbour idx, sims), max(k, top_k) neighbours
        searched, the first k aggregated (localization.aggregate). Neighbours come from one area: `area`, else
        the top neighbour's."""
        n = max(k, top_k)
        if self.plane.n_areas == 1:
            sims, idx = self.index.search(q.reshape(1, -1), n)
            sims, idx = sims[0], idx[0]
        else:
            sims, idx = in_area(self.index.similarities(q), self.plane.label, n, area)
        c, spread = aggregate(self.en[idx[:min(k, len(idx))]], sims[:min(k, len(idx))], agg)
        return c, spread, idx, sims

    def save(self, d: Path) -> None:
        """The index files into folder d (embeddings.npy, index.faiss)."""
        self.index.save(d)

    @classmethod
    def load(cls, d: Path, kind: str, gallery, state: dict) -> "KNNState":
        index = CosineIndex.load(d, kind)
        rms = [MondrianRadius.from_dict(r) for r in state.get("radius_models", [])]
        return cls(index, GalleryPlane.of(gallery["Latitude"], gallery["Longitude"]), rms, state.get("index", {}),
                   [list(e) for e in state.get("sim_edges", [])])


def in_area(sims: np.ndarray, label: np.ndarray, n: int, area: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sims, idx) of the n most similar gallery photos (sims: (N,) over the gallery, -inf = left out) within one
    area: `area`, else the most similar photo's. Best first; fewer than n when the area has fewer."""
    if area is None:
        area = int(label[int(np.argmax(sims))])
    s = np.where(label == area, sims, -np.inf)
    idx = np.argsort(-s, kind="stable")[:n]
    idx = idx[np.isfinite(s[idx])]
    return s[idx], idx


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
        sim = v[block] @ v.T
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

    def embed(self, queries) -> np.ndarray:
        """Queries (types.Query) -> (N, D) float32 embeddings, exactly as the gallery was embedded."""
        if self._embedder is not None:
            return np.asarray(self._embedder.embed_images(list(queries)), np.float32)
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
        self.indexing_stats = ensure_features(new, ExtractSpec(embed=self.config.embed), self.indexing, label="embedding")
        index = self.state.index
        index.add(embed_dataset(self._encoder, new))
        self.state = KNNState.build(index, self.gallery)
        self.state.radius_models, self.state.sim_edges = calibrate_radius(self.state, self.config)

    def fit_report(self):
        return {"index": self.state.index_report}

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d: Path) -> None:
        self.state.save(d)
        if self._embedder is not None:
            self._embedder.save(d / "embedder", thumbnails=False)

    def _state(self):
        return {"radius_models": [r.to_dict() for r in self.state.radius_models], "sim_edges": self.state.sim_edges,
                "dim": int(self.state.vectors.shape[1]),
                "index": self.state.index_report}

    def _load_files(self, d: Path, state):
        self.state = KNNState.load(d, self.config.index, self.gallery, state)
        if self.config.embed == "regression":
            from .registry import load_model

            self._embedder = load_model(d / "embedder")
        else:
            self._encoder = get_encoder(self.config.embed)
