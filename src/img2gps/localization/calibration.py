"""Error radius calibrated on held-out predictions (split-conformal): ~80% of true positions fall inside."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..outputs import counted


@dataclass
class RadiusModel:
    """radius = max(floor_m, scale * (uncertainty + offset_m)), scale = conformal quantile of err/(u + offset)
    (fitted per answer kind by localization/conformal.MondrianRadius).

    `uncertainty` is any per-prediction spread in metres the method can compute (0 if it has none); the
    offset keeps a confident-looking prediction from getting a zero radius (phone GPS is ~5-10 m itself).
    """

    scale: float = 1.0
    offset_m: float = 10.0
    floor_m: float = 5.0
    area_m: float = 100.0  # radius of the whole gallery area at the same coverage: the scale for confidence
    coverage: float = 0.8
    n_calibration: int = 0
    # the calibrated chance within CHANCE_M (localization/chance.py): radius breakpoints (m, ascending) and the
    # probability at each; None for a model saved before it was fitted
    chance_r: list | None = None
    chance_p: list | None = None

    def radius(self, uncertainty_m: float = 0.0) -> float:
        return float(max(self.floor_m, self.scale * (uncertainty_m + self.offset_m)))

    def chance(self, radius_m: float) -> float | None:
        """The calibrated probability that the true spot lies within CHANCE_M of an answer with this radius (None
        for a model saved before the chance was fitted)."""
        if not self.chance_r:
            return None
        return float(np.interp(radius_m, self.chance_r, self.chance_p))

    def confidence(self, radius_m: float) -> float:
        """Prediction.confidence: the calibrated chance (a documented alias of chance_25m); for a model saved
        before the chance was fitted, the old area rule (1 for a pinpoint answer, 0 when the radius is as wide as
        guessing the area's centre)."""
        c = self.chance(radius_m)
        return c if c is not None else float(np.clip(1.0 - radius_m / max(self.area_m, 1e-6), 0.0, 1.0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RadiusModel":
        return cls(**d) if d else cls()

    def with_chance(self, curve: tuple[list, list] | None) -> "RadiusModel":
        """This model with the chance curve (radius breakpoints, probabilities) set."""
        from dataclasses import replace

        return replace(self, chance_r=curve[0], chance_p=curve[1]) if curve else self


# The fewest gallery photos whose held-out errors give a finite 80% conformal quantile with one to spare
# (ceil((n + 1) * 0.8) <= n needs n >= 4 held-out predictions), and the least spread of the gallery (metres, about
# phone GPS noise) below which every held-out error is ~0 and the radius would promise metres for any photo.
MIN_CALIBRATION_PHOTOS = 5
MIN_EXTENT_M = 10.0


def calibration_problem(lat, lon) -> str | None:
    """Why a gallery at (lat, lon) (degrees, (N,) each) cannot calibrate an error radius, or None when it can:
    fewer than MIN_CALIBRATION_PHOTOS photos, or all of them within MIN_EXTENT_M of one another."""
    from ..geo import LocalFrame

    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    n = len(lat)
    if n < MIN_CALIBRATION_PHOTOS:
        return (f"{counted(n, 'photo')}: the error radius is calibrated on held-out gallery photos and needs at least "
                f"{MIN_CALIBRATION_PHOTOS}, at two or more places; add photos")
    en = LocalFrame.around(lat, lon).to_en(lat, lon)
    extent = float(np.hypot(*(en.max(axis=0) - en.min(axis=0))))
    if extent < MIN_EXTENT_M:
        return (f"{n} photos all within {extent:.0f} m of one another: the gallery covers no area, so no error "
                f"radius can be calibrated for a photo taken anywhere else; add photos taken at least "
                f"{MIN_EXTENT_M:g} m apart")
    return None


def coverage(errors_m, radii_m) -> float:
    e, r = np.asarray(errors_m, float), np.asarray(radii_m, float)
    return float(np.mean(e <= r)) if len(e) else float("nan")
