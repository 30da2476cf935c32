"""The k-NN answer over a gallery's global embeddings, shared by the methods that retrieve (knn, rerank): the cosine
index, the local metric frame, the gallery's east/north metres, an optional calibrated radius model, and the
similarity-weighted position of the top k (localization.aggregate), with the copy rule (localization/recognition.py)
and the difficulty bins of the radius (localization/difficulty.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geo import LocalFrame
from ..retrieval.database import CosineIndex
from .aggregate import aggregate
from .conformal import MondrianRadius, bands
from .difficulty import DifficultyBins


@dataclass
class KNNState:
    """A fitted k-NN gallery: the cosine index of the (N, D) unit vectors, the local metric frame and the gallery's
    (N, 2) east/north metres in it, the calibrated radius model (None where the owner calibrates its own, e.g.
    rerank) and the index report (kind, n, recall@10 vs exact)."""
    index: CosineIndex
    frame: LocalFrame
    en: np.ndarray
    radius_model: MondrianRadius | None = None
    index_report: dict = field(default_factory=dict)
    sim_edges: list = field(default_factory=list)  # top-similarity band edges (models saved before `bins`)
    bins: DifficultyBins | None = None  # the difficulty bins of radius_model's groups
    copy_sim: float = 2.0  # a query at least this similar to its top photo is a copy of it (2 = never)

    def answer(self, q: np.ndarray, k: int, agg: str, top_k: int):
        """locate(), except that a copy of a gallery photo (top similarity >= copy_sim) is answered at that
        photo's position with no spread (localization/recognition.py)."""
        c, spread, idx, sims = self.locate(q, k, agg, top_k)
        if len(idx) and sims[0] >= self.copy_sim:
            c, spread = self.en[idx[0]], 0.0
        return c, spread, idx, sims

    def group(self, top_sim: float, spread10: float) -> str:
        """The difficulty bin (Mondrian group) of an answer with this top cosine similarity and top-10 spread (m)."""
        if self.bins is None:  # a model saved before difficulty bins: bands of the top similarity
            return str(bands([top_sim], self.sim_edges)[0])
        return self.bins.group("model", {"top_sim": top_sim, "spread10": spread10})

    def radius(self, spread: float, group: str) -> float:
        """Calibrated radius (m) of an answer with this neighbour spread (m) in this difficulty bin."""
        return self.radius_model.radius(group, spread)

    @property
    def vectors(self) -> np.ndarray:
        return self.index.vectors

    @classmethod
    def build(cls, index: CosineIndex, gallery) -> "KNNState":
        """Index + gallery table (Latitude, Longitude per row) -> a state without radius model."""
        frame = LocalFrame.around(gallery["Latitude"], gallery["Longitude"])
        report = {"kind": index.kind, "n": len(index), "recall_at_10_vs_exact": index.recall_vs_exact(10)}
        return cls(index, frame, frame.to_en(gallery["Latitude"], gallery["Longitude"]), None, report)

    def locate(self, q: np.ndarray, k: int, agg: str, top_k: int):
        """Query vector (D,) -> (position en (2,), spread m, neighbour idx, sims), max(k, top_k) neighbours
        searched, the first k aggregated (localization.aggregate)."""
        sims, idx = self.index.search(q.reshape(1, -1), max(k, top_k))
        sims, idx = sims[0], idx[0]
        c, spread = aggregate(self.en[idx[:min(k, len(idx))]], sims[:min(k, len(idx))], agg)
        return c, spread, idx, sims

    def save(self, d: Path) -> None:
        """The index files into folder d (embeddings.npy, index.faiss)."""
        self.index.save(d)

    @classmethod
    def load(cls, d: Path, kind: str, gallery, state: dict) -> "KNNState":
        index = CosineIndex.load(d, kind)
        frame = LocalFrame.around(gallery["Latitude"], gallery["Longitude"])
        rm = MondrianRadius.from_dict(state["radius_model"]) if state.get("radius_model") else None
        return cls(index, frame, frame.to_en(gallery["Latitude"], gallery["Longitude"]), rm, state.get("index", {}),
                   list(state.get("sim_edges", [])), copy_sim=float(state.get("copy_sim", 2.0)),
                   bins=DifficultyBins.from_dict(state["difficulty"]) if state.get("difficulty") else None)
