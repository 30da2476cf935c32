"""mean-coordinate: predict the gallery's centre. The floor every method must beat, with a calibrated radius.

A gallery of several far-apart areas (area.py) has no meaningful centre: the answer is the centre of its largest
area (most photos), calibrated on that area's photos, and the fit report says which area that is."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..answer_kinds import MODEL
from ..localization.calibration import RadiusModel
from ..area import describe, split_areas
from ..geo import LocalFrame, weighted_centre
from ..localization.conformal import MondrianRadius
from ..localization.holdout import HOLDOUTS, HoldoutPlan
from ..types import Prediction
from .base import BasePredictor
from .spec import opt


@dataclass
class MeanCoordinateConfig:
    coverage: float = opt(0.8, gt=0, lt=1)


class MeanCoordinate(BasePredictor):
    name = "mean-coordinate"
    Config = MeanCoordinateConfig
    query_max_side = 256  # the pixels are only checked to be a readable photo, never looked at

    def _fit(self, train) -> None:
        areas = split_areas(train.lat, train.lon)
        rows = areas[0].rows  # the largest area
        lat, lon = train.lat[rows], train.lon[rows]
        self.centre = weighted_centre(lat, lon)
        self.centre_of = f"the centre of area 1 of {len(areas)}: {describe(areas)[0].split(': ', 1)[1]}"
        # Held-out errors of "the mean of the others" calibrate the radius honestly (not in-sample), on near
        # (same-spot siblings left out), area and block hold-outs (localization/holdout.py).
        frame = LocalFrame(*self.centre)
        en = frame.to_en(lat, lon)
        n = len(en)
        plan = HoldoutPlan(en, frame) if n > 1 else None
        errors, holdout = [], []
        for h in HOLDOUTS if plan is not None else ():
            for a in range(0, n, 512):
                rows = np.arange(a, min(n, a + 512))
                keep = ~plan.excluded(h, rows)
                cnt = keep.sum(1)
                others = np.where(cnt[:, None] > 0, (keep @ en) / np.maximum(cnt, 1)[:, None], en.mean(0))
                errors.append(np.linalg.norm(en[rows] - others, axis=1))
                holdout += [h] * len(rows)
        errors = np.concatenate(errors) if n > 1 else np.zeros(0)
        self.radius_model = MondrianRadius.fit([MODEL] * len(errors), holdout[: len(errors)], errors,
                                               coverage=self.config.coverage, offset_m=1.0, floor_m=5.0,
                                               area_m=float(np.quantile(errors, self.config.coverage))
                                               if len(errors) else 100.0).pooled

    def _predict_one(self, query, top_k: int) -> Prediction:
        r = self.radius_model.radius(0.0)
        return Prediction(self.centre[0], self.centre[1], r, self.radius_model.confidence(r), False, self.spec, [],
                          chance_25m=self.radius_model.chance(r))

    def fit_report(self):
        return {"note": f"{self.spec} answers {self.centre_of}"}

    def _state(self):
        return {"centre": list(self.centre), "centre_of": self.centre_of, "radius_model": self.radius_model.to_dict()}

    def _load_files(self, d, state):
        self.centre = tuple(state["centre"])
        self.centre_of = state["centre_of"]
        self.radius_model = RadiusModel.from_dict(state["radius_model"])
