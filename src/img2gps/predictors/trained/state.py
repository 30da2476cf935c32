"""The trained methods' fitted states: every module, statistic, array and index a query reads, built by fit (or
load) and read by query.py, the leaderboard export and the tests through these public fields only.

TrainedState (both methods): the trunk (pretrained EfficientNet split into its frozen part and its tail), the
trained HeadNet, whether the net takes pixels (`full` fine-tuning) or cached frozen-part features, the torch device,
the local metric frame and the calibrated RadiusModel, plus the training record (history, calibration summary,
backbone actually used). RegressionState adds the z-score statistics of the targets; ContrastiveState the
gallery's (N, dim) unit embeddings, its float64 positions, their east/north metres and the cosine index.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn

from .trunk import Trunk
from ...geo import EARTH_RADIUS_M, LocalFrame
from ...localization.calibration import RadiusModel
from ...retrieval.database import CosineIndex
from .training import History


@dataclass
class TrainedState:
    """trunk: the pretrained backbone split (Trunk); net: the trained HeadNet (None until trained); full: the net
    takes preprocessed pixels (whole backbone fine-tuned) rather than cached frozen-part feature maps; device: where
    the net runs; frame: local metric frame of the gallery (degrees <-> east/north metres); radius_model: the
    calibrated radius (None until calibrated)."""
    trunk: Trunk
    full: bool
    device: torch.device
    frame: LocalFrame | None = None
    net: nn.Module | None = None
    radius_model: RadiusModel | None = None
    history: History | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    backbone_used: str = ""
    backbone_note: str = ""

    head_kind: ClassVar[str] = ""  # the exported head's kind (export/templates/model.py)


@dataclass
class RegressionState(TrainedState):
    """norm: the training targets' z-score statistics (lat_mean, lat_std, lon_mean (circular), lon_std; degrees)."""
    norm: dict[str, float] = field(default_factory=dict)

    head_kind: ClassVar[str] = "regression"

    @property
    def mean(self) -> torch.Tensor:
        """(2,) float64 (lat, lon) means, degrees."""
        return torch.tensor([self.norm["lat_mean"], self.norm["lon_mean"]], dtype=torch.float64)

    @property
    def std(self) -> torch.Tensor:
        """(2,) float64 (lat, lon) standard deviations, degrees."""
        return torch.tensor([self.norm["lat_std"], self.norm["lon_std"]], dtype=torch.float64)

    @property
    def scale_m(self) -> torch.Tensor:
        """(2,) float64 metres per z unit, north and east, at the training data's mean latitude."""
        m_per_deg = np.pi / 180 * EARTH_RADIUS_M
        east_m_per_deg = m_per_deg * np.cos(np.radians(self.norm["lat_mean"]))
        return torch.tensor([self.norm["lat_std"] * m_per_deg, self.norm["lon_std"] * east_m_per_deg],
                            dtype=torch.float64)


@dataclass
class ContrastiveState(TrainedState):
    """vectors: (N, dim) float32 unit gallery embeddings; positions: (N, 2) float64 (lat, lon) degrees, exact (not
    the gallery table's rounding, so a reloaded model predicts identically); en: (N, 2) their east/north metres in
    `frame`; index: the exact cosine index over `vectors`."""
    vectors: np.ndarray | None = None
    positions: np.ndarray | None = None
    en: np.ndarray | None = None
    index: CosineIndex | None = None

    head_kind: ClassVar[str] = "projection"

    def set_gallery(self, vectors: np.ndarray, positions: np.ndarray) -> None:
        """Gallery embeddings + positions -> vectors, positions, en and a fresh exact index."""
        self.vectors, self.positions = vectors, positions
        self.index = CosineIndex(vectors)
        self.en = self.frame.to_en(positions[:, 0], positions[:, 1])
