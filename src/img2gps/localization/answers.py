"""Answer kinds: what the evidence a query shows says about its answer, and how the answer is put in words.

Vocabulary (Prediction.source; README "Answer kinds"):
- `consensus` / `pose` — **recognised**: geometric verification passed *and* the verified geometry places the
  query at a gallery camera's spot: the pair with the strongest verified gallery photos is nearly a pure rotation
  (pose.relative_pose's parallax below `max_parallax_deg`), i.e. the two cameras stood at one place relative to
  the scene's depth. The answer is that camera's place (`consensus` of the verified photos, or the camera placed
  by relative pose, `pose`).
- `scene` — a verified scene seen from elsewhere: the photos match, but with parallax, so the query stood some
  way off the gallery cameras. Not recognised; its own radius.
- `fallback` — nothing verified: a retrieval estimate. Not recognised; its own, widest radius.
- `model` — methods without verification (mean-coordinate, knn, regression, contrastive). Not recognised.
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

RECOGNISED_SOURCES = ("consensus", "pose")
SCENE, FALLBACK = "scene", "fallback"
CHOICES = ("own", "knn", "blend")
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
    if choice == "own":
        return own
    if choice == "knn":
        return knn
    if choice == "blend":
        a, b = np.asarray(own[0], float), np.asarray(knn[0], float)
        return 0.5 * (a + b), 0.5 * (own[1] + knn[1]) + 0.5 * float(np.linalg.norm(a - b))
    raise ValueError(f"answer choice must be one of {CHOICES}, not {choice!r}")


def choose(errors: dict[str, Sequence[float]], weights: Sequence[float], margin: float = CHOICE_MARGIN) -> str:
    """The choice with the smallest weighted mean error (errors: choice -> (N,) metres), but "own" unless another
    beats it by more than `margin` (a fraction): a difference within the noise of a few hundred held-out photos
    does not move a gallery off its own answer. "own" without data."""
    w = np.asarray(weights, float)
    if not len(w) or w.sum() <= 0:
        return "own"
    means = {c: float((np.asarray(e, float) * w).sum() / w.sum()) for c, e in errors.items()}
    best = min(means, key=lambda c: (means[c], c != "own"))
    return best if means[best] < (1.0 - margin) * means.get("own", np.inf) else "own"


SOURCE_WORDS = {
    "consensus": "verified against gallery photos taken at this spot",
    "pose": "camera placed by relative pose to verified gallery photos",
    "scene": "the scene verified, but seen from elsewhere than the gallery photos",
    "fallback": "nothing verified: an estimate from similar gallery photos",
    "model": "the method's own estimate (no geometric verification)",
}


def source_words(source: str) -> str:
    """What an answer of this source rests on, in words."""
    return SOURCE_WORDS.get(source, source)


def score_kind(source: str) -> str:
    """What a Prediction's neighbour scores are, given its `source`: "inliers" (a verified match's inlier count, for
    `consensus`, `pose` and `scene` answers) or "cosine similarity" (of the global embeddings, otherwise)."""
    return "inliers" if source in RECOGNISED_SOURCES + (SCENE,) else "cosine similarity"


def is_recognised_source(source: str) -> bool:
    return source in RECOGNISED_SOURCES


def status_words(recognised: bool) -> str:
    """The answer kind in words, for every output (CLI, API, page, map)."""
    return "recognised" if recognised else "not recognised"


def radius_words(recognised: bool, coverage: float = 0.8) -> str:
    """What the radius promises, in words, at the coverage it was calibrated for: an unrecognised answer's radius
    holds only within the gallery's area."""
    pct = f"{round(100 * coverage)}%"
    if recognised:
        return f"holds for {pct} of recognised photos"
    return f"holds for {pct} of photos taken within the gallery's area"


def outside_words(distance_m: float) -> str:
    """What a photo whose own GPS lies far outside the gallery's area (distance_m metres from it) means for the
    answer, in words (the position stays the method's answer; area.outside_m decides when this applies)."""
    from ..geo import format_distance

    return (f"its own GPS places it {format_distance(distance_m)} from this gallery's area; img2gps can only place "
            "photos taken within it")


def chance_words(chance: float | None) -> str | None:
    """The calibrated chance within 25 m in words ("chance within 25 m: 83%"); None when the model has none."""
    return None if chance is None else f"chance within 25 m: {round(100 * chance)}%"
