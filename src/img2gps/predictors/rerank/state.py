"""rerank's fitted state: every array, index and store a query reads, built at fit (or `index add`) and saved.

Files in the model directory: knn/{embeddings.npy, index.faiss, best_other.npy} (the global index), keypoints.h5
(the gallery's keypoints, verification/store.py), content_keys.txt (the gallery photos' content hashes),
vlad_codebook.npy and vlad_gallery.npy (when vlad > 0; float16, the values the state holds: VLAD_DTYPE), near.npz
(each photo's neighbour list); the calibration and the score statistics live in model.json's state. What fit
computed is read back on load, not recomputed (a model saved before near.npz and the statistics were saved
recomputes them, with the same result).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ...errors import ModelError
from ...answer_kinds import FALLBACK, OWN, SCENE
from ...localization.difficulty import DifficultyBins
from ...localization.recognition import RecognitionRule
from ...localization.conformal import MondrianRadius
from ...localization.camera import CameraLocator, GalleryCameras, LocatorConfig
from ...retrieval.database import neighbours_within, pair_stats
from ...retrieval.vlad import VladCodebook
from ...verification.store import FILE as STORE_FILE, KeypointStore, write_store
from ...localization.knn import KNNState
from .config import RerankConfig

KEYS_FILE = "content_keys.txt"
NEAR_FILE = "near.npz"
KNN_DIR = "knn"
VLAD_DTYPE = np.float16  # stored gallery VLAD vectors; the state holds them rounded to it, so fit and load agree


def stored_vlad(vlad: np.ndarray) -> np.ndarray:
    """(N, D) VLAD vectors as the model keeps them: rounded to VLAD_DTYPE, held as float32 for the products."""
    return vlad.astype(VLAD_DTYPE).astype(np.float32)


@dataclass
class Calibration:
    """What the held-out calibration (calibrate.py) decided: one radius model per answer kind (`consensus`, `pose`,
    `scene`, `fallback`; localization/conformal.py), the answer given for scenes seen from elsewhere and for
    unverified photos (own / knn / blend; localization/answers.py), whether pose positions are used and trusted as
    `recognised`, the heading radius (degrees, None = unknown) and a JSON-able summary for the fit report."""
    radii: MondrianRadius
    answer_choice: dict = field(default_factory=lambda: {SCENE: OWN, FALLBACK: OWN})
    use_pose: bool = False
    pose_recognised: bool = True
    heading_radius: float | None = None
    summary: dict = field(default_factory=dict)
    rule: RecognitionRule = field(default_factory=RecognitionRule)  # what is recognised (chosen on the records)
    bins: DifficultyBins = field(default_factory=DifficultyBins)  # difficulty bins within each answer kind

    def to_dict(self) -> dict[str, Any]:
        return {"radii": self.radii.to_dict(), "answer_choice": dict(self.answer_choice),
                "use_pose": bool(self.use_pose), "pose_recognised": bool(self.pose_recognised),
                "heading_radius_deg": self.heading_radius, "calibration": self.summary,
                "recognition": self.rule.to_dict(), "difficulty": self.bins.to_dict()}

    @classmethod
    def from_dict(cls, state: dict[str, Any], cfg: RerankConfig) -> "Calibration":
        radii = MondrianRadius.from_dict(state["radii"])
        return cls(radii, {SCENE: OWN, FALLBACK: OWN, **state.get("answer_choice", {})},
                   bool(state.get("use_pose", cfg.pose == "on")), bool(state.get("pose_recognised", True)),
                   state.get("heading_radius_deg"), state.get("calibration", {}),
                   RecognitionRule.from_dict(state.get("recognition"), max_parallax_deg=cfg.rec_parallax,
                                             min_inliers=cfg.rec_inliers, copy_sim=2.0),
                   DifficultyBins.from_dict(state.get("difficulty")))


@dataclass
class RerankState:
    """A fitted rerank gallery of N photos.

    knn: global embeddings index, metric frame and (N, 2) east/north metres; encoder: the frozen global encoder
    that embeds queries (swappable for another runtime, e.g. ONNX); keys: the photos' content hashes (None for
    models saved before `index add`); store: their keypoints; codebook / vlad: the VLAD codebook and (N, K*128)
    gallery vectors (None when vlad=0 or too few keypoints); cameras / locator: gallery headings and focal lengths
    for the pose stage; near: per photo the gallery photos within near_m; zstats: (mean, sd) of the global and VLAD
    similarities over gallery pairs; calibrations: one Calibration per area of knn.plane (empty until calibrated);
    photos: gallery photo j as an RGB PIL image, where the photos are at hand (a fit in this process; None for a
    loaded model); second: the second matcher's gallery features (verification/second.py), made on first use."""
    knn: KNNState
    encoder: Any
    keys: list[str] | None
    store: KeypointStore
    codebook: VladCodebook | None
    vlad: np.ndarray | None
    cameras: GalleryCameras
    locator: CameraLocator
    near: list
    zstats: list
    calibrations: list[Calibration] = field(default_factory=list)
    photos: Callable[[int], Any] | None = None
    second: Any = None

    @property
    def en(self) -> np.ndarray:
        return self.knn.en


def build_state(knn: KNNState, encoder, keys, store: KeypointStore, codebook: VladCodebook | None,
                gallery: pd.DataFrame, cfg: RerankConfig, vlad: np.ndarray | None = None, near: list | None = None,
                zstats: list | None = None) -> RerankState:
    """Everything derived from the stored gallery: VLAD vectors, neighbour lists, score scales (none quadratic in
    N), each computed unless given (a loaded model gives what its fit saved). `gallery` may carry heading / focal35
    columns (NaN = unknown)."""
    nan = np.full(len(gallery), np.nan)
    cameras = GalleryCameras(knn.en, gallery["heading"].to_numpy(float) if "heading" in gallery else nan,
                             gallery["focal35"].to_numpy(float) if "focal35" in gallery else nan,
                             lambda j: store.get(j).size)
    locator = CameraLocator(cameras, LocatorConfig(max_views=cfg.pose_views))
    if vlad is None and codebook is not None:
        vlad = codebook.encode_all(store.unit_desc, len(store))
    vlad = stored_vlad(vlad) if codebook is not None else None
    if near is None:
        near = neighbours_within(knn.en, cfg.near_m, cfg.near_max)
    if zstats is None:
        # z-score each similarity over gallery-gallery pairs so the two halves of the score weigh the same
        zstats = [pair_stats(knn.index.vectors)] + ([pair_stats(vlad)] if vlad is not None else [])
    return RerankState(knn, encoder, keys, store, codebook, vlad, cameras, locator, near, zstats)


def save_state(state: RerankState, cfg: RerankConfig, d: Path) -> None:
    if state.keys is not None:
        (d / KEYS_FILE).write_text("\n".join(state.keys) + "\n")
    (d / KNN_DIR).mkdir()
    state.knn.save(d / KNN_DIR)
    write_store(d / STORE_FILE, iter(state.store), len(state.store), cfg.gallery_key)
    if state.codebook is not None:
        np.save(d / "vlad_codebook.npy", state.codebook.centroids)
        np.save(d / "vlad_gallery.npy", state.vlad.astype(VLAD_DTYPE))
    np.savez(d / NEAR_FILE, offsets=np.cumsum([0] + [len(x) for x in state.near]),
             ids=np.array([j for x in state.near for j in x], np.int64))


def state_dict(state: RerankState, cfg: RerankConfig) -> dict[str, Any]:
    """The JSON-able part (model.json's state)."""
    return {"areas": [c.to_dict() for c in state.calibrations], "features": cfg.feature_config.key,
            "index": state.knn.index_report, "zstats": [[float(m), float(s)] for m, s in state.zstats]}


def load_state(d: Path, gallery: pd.DataFrame, cfg: RerankConfig, saved: dict[str, Any], encoder) -> RerankState:
    """The state saved in model directory d (gallery: its gallery.csv table; saved: model.json's state)."""
    if not (d / STORE_FILE).is_file() and (d / "keypoints.npz").is_file():
        raise ModelError(f"{d}: keypoints.npz is the old keypoint format; re-fit the model")
    # knn/ of a model saved before the state refactor is a whole k-NN model directory: its index files are read
    knn = KNNState.load(d / KNN_DIR, cfg.index, gallery, {"index": saved.get("index", {})})
    kf = d / KEYS_FILE  # content hashes of the gallery photos (what `index add` and calibration key on)
    keys = kf.read_text().split() if kf.is_file() else None
    store = KeypointStore.open(d / STORE_FILE, len(gallery), cfg.gallery_key, cfg.cache_mb * 2**20)
    vlad, codebook = None, None
    if (d / "vlad_codebook.npy").is_file():
        codebook = VladCodebook(np.load(d / "vlad_codebook.npy"))
        vlad = np.load(d / "vlad_gallery.npy") if (d / "vlad_gallery.npy").is_file() else None
    near = None
    if (d / NEAR_FILE).is_file():
        with np.load(d / NEAR_FILE) as z:
            off, ids = z["offsets"], z["ids"]
        near = [[int(j) for j in ids[off[i]:off[i + 1]]] for i in range(len(off) - 1)]
    zstats = [tuple(x) for x in saved["zstats"]] if "zstats" in saved else None
    state = build_state(knn, encoder, keys, store, codebook, gallery, cfg, vlad, near, zstats)
    state.calibrations = [Calibration.from_dict(a, cfg) for a in saved["areas"]]
    return state
