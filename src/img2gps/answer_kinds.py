"""The answer kinds and their words, in one place: what an answer rests on (Prediction.source), the kind rerank's
query procedure finds before it picks a source, the answers a gallery may give for scenes and unverified photos,
and how every output (CLI, HTTP API, page, map) puts them in words. A leaf: it imports only the leaf geo, so
types.py and every stage may import it. localization/answers.py holds the rules that decide between the kinds.

Sources (README "Answer kinds"):
- `consensus` / `pose` — **recognised**: geometric verification passed and the verified geometry places the query
  at a gallery camera's spot; the answer is that camera's place (the verified photos' consensus, or the camera
  placed by relative pose).
- `scene` — a verified scene seen from elsewhere. Not recognised; its own radius.
- `fallback` — nothing verified: a retrieval estimate. Not recognised; its own, widest radius.
- `model` — methods without verification (mean-coordinate, knn, regression, contrastive). Not recognised.
"""
from __future__ import annotations

from .geo import format_distance

CONSENSUS, POSE, SCENE, FALLBACK, MODEL = "consensus", "pose", "scene", "fallback", "model"
SOURCES = (POSE, CONSENSUS, SCENE, FALLBACK, MODEL)
RECOGNISED_SOURCES = (CONSENSUS, POSE)
VERIFIED_SOURCES = RECOGNISED_SOURCES + (SCENE,)  # answers whose neighbour scores are inlier counts

# What rerank's query procedure finds (localization/answers.at_gallery_spot decides RECOGNISED vs SCENE); a
# RECOGNISED find becomes a CONSENSUS or POSE source.
RECOGNISED = "recognised"
FOUND_KINDS = (RECOGNISED, SCENE, FALLBACK)

# The answer a gallery gives for SCENE and FALLBACK finds (chosen by calibration, localization/answers.choose):
# its own, knn's, or their midpoint.
OWN, KNN, BLEND = "own", "knn", "blend"
CHOICES = (OWN, KNN, BLEND)

# What a Prediction's neighbour scores are.
SCORE_INLIERS, SCORE_COSINE = "inliers", "cosine similarity"

SOURCE_WORDS = {
    CONSENSUS: "verified against gallery photos taken at this spot",
    POSE: "camera placed by relative pose to verified gallery photos",
    SCENE: "the scene verified, but seen from elsewhere than the gallery photos",
    FALLBACK: "nothing verified: an estimate from similar gallery photos",
    MODEL: "the method's own estimate (no geometric verification)",
}


def source_words(source: str) -> str:
    """What an answer of this source rests on, in words."""
    return SOURCE_WORDS.get(source, source)


def score_kind(source: str) -> str:
    """What a Prediction's neighbour scores are, given its `source`: SCORE_INLIERS (a verified match's inlier count,
    for `consensus`, `pose` and `scene` answers) or SCORE_COSINE (of the global embeddings, otherwise)."""
    return SCORE_INLIERS if source in VERIFIED_SOURCES else SCORE_COSINE


def status_words(recognised: bool) -> str:
    """The answer kind in words, for every output (CLI, API, page, map)."""
    return RECOGNISED if recognised else "not recognised"


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
    return (f"its own GPS places it {format_distance(distance_m)} from this gallery's area; img2gps can only place "
            "photos taken within it")


def chance_words(chance: float | None) -> str | None:
    """The calibrated chance within 25 m in words ("chance within 25 m: 83%"); None when the model has none."""
    return None if chance is None else f"chance within 25 m: {round(100 * chance)}%"
