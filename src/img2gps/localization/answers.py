"""The rules that decide an answer's kind (the vocabulary and its words are img2gps/answer_kinds.py): the pure-rotation
test that says a verified query stood at a gallery camera's spot, and the scene / fallback answer choice.

- recognised (`consensus` / `pose`): geometric verification passed *and* the pair with the strongest verified
  gallery photo is nearly a pure rotation (pose.relative_pose's parallax below `max_parallax_deg`), i.e. the two
  cameras stood at one place relative to the scene's depth.
- `scene`: the photos match, but with parallax, so the query stood some way off the gallery cameras.
- `fallback`: nothing verified.
Each kind gets its own calibrated radius (localization/conformal.py), so coverage holds per kind.

For `scene` and `fallback`, rerank picks per gallery, from its own calibration, which answer to give (CHOICES):
its own (the verified photos' consensus, or the shortlist's median), knn's answer, or their midpoint: whichever
has the smallest mixture-weighted mean error on the held-out photos of that kind, so rerank is not worse than
retrieval alone where verification only finds views from elsewhere.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..answer_kinds import BLEND, CHOICES, KNN, OWN
# The pure-rotation test, measured on bgu-west (rerank calibration records, 300 held-out photos each with only
# itself / its same-spot siblings / a 2R block left out): strongest pair's parallax <= 1 deg with >= 30 inliers
# took 40 photos held out alone (all within 25 m, 80th percentile error 0.6 m), one with its siblings out and
# none with a 2R block out; at <= 2 deg and any inlier count, 9 far ones came in, 7 of them > 25 m off.
MAX_PARALLAX_DEG = 1.0
# Measured on the same records (self / near / far in equal shares): scenes, consensus 16.9 m mean against the
# blend's 16.4 m on bgu-west (3%) and 16.1 against 35.4 m on penn91; unverified, knn 28.9 against the median's
# 32.2 m on bgu-west (10%), the blend 82.0 against 82.9 m on penn91 (1%). Only a clear gain moves off "own".
CHOICE_MARGIN = 0.05
MIN_INLIERS = 30


def at_gallery_spot(parallax_deg: Sequence[float], inliers: Sequence[int], max_parallax_deg: float = MAX_PARALLAX_DEG,
                    min_inliers: int = MIN_INLIERS) -> bool:
    """True when the strongest verified pair (parallax in degrees, inlier counts; strongest first) is a near pure
    rotation with enough inliers to trust it: the query stood where that gallery camera stood."""
    if not len(parallax_deg) or not len(inliers):
        return False
    p = float(parallax_deg[0])
    return math.isfinite(p) and p <= max_parallax_deg and int(inliers[0]) >= min_inliers


def candidate(choice: str, own: tuple[np.ndarray, float], knn: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
    """(position en (2,), spread m) of one choice. The blend's spread adds half the two answers' disagreement,
    so the radius widens where they disagree. Raises ValueError for an unknown choice."""
    if choice == OWN:
        return own
    if choice == KNN:
        return knn
    if choice == BLEND:
        a, b = np.asarray(own[0], float), np.asarray(knn[0], float)
        return 0.5 * (a + b), 0.5 * (own[1] + knn[1]) + 0.5 * float(np.linalg.norm(a - b))
    raise ValueError(f"answer choice must be one of {CHOICES}, not {choice!r}")


def choose(errors: dict[str, Sequence[float]], weights: Sequence[float], margin: float = CHOICE_MARGIN) -> str:
    """The choice with the smallest weighted mean error (errors: choice -> (N,) metres), but "own" unless another
    beats it by more than `margin` (a fraction): a difference within the noise of a few hundred held-out photos
    does not move a gallery off its own answer. "own" without data."""
    w = np.asarray(weights, float)
    if not len(w) or w.sum() <= 0:
        return OWN
    means = {c: float((np.asarray(e, float) * w).sum() / w.sum()) for c, e in errors.items()}
    best = min(means, key=lambda c: (means[c], c != OWN))
    return best if means[best] < (1.0 - margin) * means.get(OWN, np.inf) else OWN
