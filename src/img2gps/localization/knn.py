"""The k-NN answer over a gallery's global embeddings, shared by the methods that retrieve (knn, rerank): the cosine
index, the gallery's plane (area.GalleryPlane: each area in its own metric frame), optional calibrated radius
models (one per area), and the similarity-weighted position of the top k of one area (localization.aggregate),
with the copy rule (localization/recognition.py) and the difficulty bins of the radius (localization/difficulty.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..area import GalleryPlane
from ..errors import ModelError
from ..geo import LocalFrame
from ..retrieval.database import CosineIndex
from .aggregate import aggregate
from .area_choice import AreaClassifier
from .conformal import MondrianRadius
from .difficulty import DifficultyBins

BEST_OTHER = "best_other.npy"  # KNNState.best_other, beside the index files


@dataclass
class KNNState:
    """A fitted k-NN gallery: the cosine index of the (N, D) unit vectors, the gallery's plane (area.GalleryPlane:
    its areas, each photo's area and (N, 2) east/north metres in its area's frame), one calibrated radius model
    and its difficulty bins per area (empty where the owner calibrates its own, e.g. rerank), the index report
    (kind, n, recall@10 vs exact), the copy threshold and, for a gallery of several areas, the area classifier
    (localization/area_choice.py). An answer averages the neighbours of one area only (choose_area)."""
    index: CosineIndex
    plane: GalleryPlane
    radius_models: list[MondrianRadius] = field(default_factory=list)  # per area, in plane order
    index_report: dict = field(default_factory=dict)
    bins: list[DifficultyBins] = field(default_factory=list)  # per area: the difficulty bins of its radius model
    copy_sim: float = 2.0  # a query at least this similar to its top photo is a copy of it (2 = never)
    areas: AreaClassifier | None = None  # None for a one-area gallery
    # (N,) each photo's similarity to its most similar other photo (sim_drop's reference; saved with the index)
    best_other: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def choose_area(self, q: np.ndarray, sims: np.ndarray) -> int:
        """The area a query with vector q (D,) and gallery similarities sims (N,; -inf = left out) is answered in
        (localization/area_choice.py): 0 for a one-area gallery. Never an area whose photos are all left out (a
        one-photo area holding a held-out photo itself): then the most similar remaining photo's."""
        if self.plane.n_areas == 1:
            return 0
        top = int(self.plane.label[int(np.argmax(sims))])
        if self.areas is None:
            self.areas = AreaClassifier.fit(self.vectors, self.plane.label, self.plane.n_areas)
        area = self.areas.choose(q, top)
        return area if np.isfinite(sims[self.plane.label == area]).any() else top

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

    def answer(self, q: np.ndarray, k: int, agg: str, top_k: int, area: int | None = None):
        """locate(), except that a copy of a gallery photo (top similarity >= copy_sim) is answered at that
        photo's position with no spread (localization/recognition.py)."""
        c, spread, idx, sims = self.locate(q, k, agg, top_k, area)
        if len(idx) and sims[0] >= self.copy_sim:
            c, spread = self.en[idx[0]], 0.0
        return c, spread, idx, sims

    def sim_drop(self, sims, idx, k: int, left_out: np.ndarray | None = None) -> float:
        """How much less similar a query is to its top k photos (sims, idx: best first) than those photos are to
        their own most similar other gallery photo (left_out: (N,) bool, photos a calibration hold-out removed):
        the mean over the k of (that best similarity - the query's). A query taken at a spot the gallery covers
        sits about as close to its neighbours as they sit to theirs (~0); one taken in a hole of the gallery, next
        to look-alikes only, sits further (> 0). NaN without neighbours. A query reads best_other (no second pass
        over the gallery); a calibration record, whose hold-out removed photos, computes it without them."""
        top = np.asarray(idx[:k], int)
        if not len(top) or (left_out is None and len(self.best_other) != len(self.index)):
            return float("nan")
        if left_out is None:
            best = self.best_other[top].astype(float)
        else:
            s = np.atleast_2d(self.index.dot(self.vectors[top])).astype(float)  # (k, N)
            s[np.arange(len(top)), top] = -np.inf
            s[:, np.asarray(left_out, bool)] = -np.inf
            best = s.max(1)
        ok = np.isfinite(best)
        return float(np.mean(best[ok] - np.asarray(sims[:k], float)[ok])) if ok.any() else float("nan")

    def group(self, top_sim: float, spread10: float, area: int = 0, sim_drop: float = float("nan")) -> str:
        """The difficulty bin (Mondrian group) in `area` of an answer with this top cosine similarity, top-10
        spread (m) and sim_drop (the bins read whichever signal they were fitted on)."""
        return self.bins[area].group("model", {"top_sim": top_sim, "spread10": spread10, "sim_drop": sim_drop})

    def radius(self, spread: float, group: str, area: int = 0) -> float:
        """Calibrated radius (m) of an answer in `area` with this neighbour spread (m) in this difficulty bin."""
        return self.radius_models[area].radius(group, spread)

    @property
    def vectors(self) -> np.ndarray:
        return self.index.vectors

    @classmethod
    def build(cls, index: CosineIndex, gallery) -> "KNNState":
        """Index + gallery table (Latitude, Longitude per row) -> a state without radius models."""
        report = {"kind": index.kind, "n": len(index), "recall_at_10_vs_exact": index.recall_vs_exact(10)}
        plane = GalleryPlane.of(gallery["Latitude"], gallery["Longitude"])
        areas = AreaClassifier.fit(index.vectors, plane.label, plane.n_areas) if plane.n_areas > 1 else None
        return cls(index, plane, [], report, areas=areas, best_other=_best_other(index))

    def locate(self, q: np.ndarray, k: int, agg: str, top_k: int, area: int | None = None,
               sims: np.ndarray | None = None):
        """Query vector (D,) -> (position en (2,), spread m, neighbour idx, sims), max(k, top_k) neighbours
        searched, the first k aggregated (localization.aggregate). Neighbours come from one area: `area`, else
        choose_area's. sims: the query's (N,) similarities to the gallery when the caller computed them already
        (index.similarities): they are ranked instead of searching the index again."""
        n = max(k, top_k)
        if sims is None and self.plane.n_areas == 1:
            sims, idx = self.index.search(q.reshape(1, -1), n)
            sims, idx = sims[0], idx[0]
        else:
            full = self.index.similarities(q) if sims is None else np.asarray(sims, float)
            if area is None and self.plane.n_areas > 1:
                area = self.choose_area(q, full)
            sims, idx = in_area(full, self.plane.label, n, area)
        c, spread = aggregate(self.en[idx[:min(k, len(idx))]], sims[:min(k, len(idx))], agg)
        return c, spread, idx, sims

    def save(self, d: Path) -> None:
        """The index files into folder d (embeddings.npy, index.faiss), best_other.npy and the area classifier, if
        any."""
        self.index.save(d)
        np.save(d / BEST_OTHER, self.best_other)
        if self.areas is not None:
            self.areas.save(d)

    @classmethod
    def load(cls, d: Path, kind: str, gallery, state: dict) -> "KNNState":
        index = CosineIndex.load(d, kind)
        rms = [MondrianRadius.from_dict(r) for r in state.get("radius_models", [])]
        bins = [DifficultyBins.from_dict(b) for b in state.get("difficulty", [])]
        best = np.load(d / BEST_OTHER) if (d / BEST_OTHER).exists() else _best_other(index)  # older models: computed
        return cls(index, GalleryPlane.of(gallery["Latitude"], gallery["Longitude"]), rms, state.get("index", {}),
                   bins, copy_sim=float(state.get("copy_sim", 2.0)), areas=AreaClassifier.load(d), best_other=best)


def _best_other(index: CosineIndex) -> np.ndarray:
    """(N,) float32: each stored vector's similarity to its most similar other vector (NaN for a one-photo index)."""
    if len(index) < 2:
        return np.full(len(index), np.nan, np.float32)
    return np.asarray(index.search_excluding(1)[0][:, 0], np.float32)


def in_area(sims: np.ndarray, label: np.ndarray, n: int, area: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sims, idx) of the n most similar gallery photos (sims: (N,) over the gallery, -inf = left out) within one
    area: `area`, else (or when every photo of `area` is left out, e.g. a one-photo area holding the held-out
    photo itself) the most similar remaining photo's. Best first; fewer than n when the area has fewer."""
    if area is None or not np.isfinite(sims[label == area]).any():
        area = int(label[int(np.argmax(sims))])
    s = np.where(label == area, sims, -np.inf)
    idx = np.argsort(-s, kind="stable")[:n]
    idx = idx[np.isfinite(s[idx])]
    return s[idx], idx
