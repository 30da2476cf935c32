"""The values that cross the method boundary: a Query in, a Prediction (with its Neighbours) out.

A Query is made once by whoever receives the photo (api.Img2GPS, evaluate, the server through the api, the CLI
through the api) with photos.open_query: the photo is opened once and its EXIF read once. Methods get the decoded
pixels and the focal length only, never the file: they cannot read the query's own GPS or direction.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

# Prediction.source values (localization/answers.py has the vocabulary): recognised answers rest on a camera pose
# from relative geometry or on the consensus of verified gallery photos; "scene" is a verified scene seen from
# elsewhere, "fallback" nothing verified, "model" a method's own output (k-NN, regression).
SOURCES = ("pose", "consensus", "scene", "fallback", "model")


@dataclass
class Neighbour:
    """A gallery photo supporting a prediction: its id, position (degrees) and the method's score (higher = better:
    a similarity for retrieval, the verified inlier count for rerank)."""
    image_id: str
    latitude: float
    longitude: float
    score: float


@dataclass
class Prediction:
    latitude: float
    longitude: float
    radius_m: float
    confidence: float
    recognised: bool
    method: str
    neighbours: list[Neighbour] = field(default_factory=list)  # best first, in the method's own ranking
    photo_exif_position: tuple[float, float] | None = None  # display only; never an input to any method
    heading_deg: float | None = None  # compass bearing of the camera's optical axis: 0 = north, clockwise
    heading_radius_deg: float | None = None  # calibrated (~80%) half-width of the heading's error; None = unknown
    source: str = "model"  # what the answer rests on: one of SOURCES
    # The part of the given image that was located, (x0, y0, x1, y1) pixels, when a screenshot's or padded
    # image's border was cut away (verification/queryprep.find_photo); None = the whole image.
    query_region: tuple[int, int, int, int] | None = None
    query_view: str | None = None  # the view that verified when the image as given did not, e.g. "upsampled"
    radius_coverage: float = 0.8  # the share of photos the radius was calibrated to hold for (the method's coverage)
    # metres from the gallery's area to the photo's own EXIF GPS when that lies far outside it (area.outside_m);
    # None otherwise. Display only, set after the method answered; never an input to any method.
    exif_outside_m: float | None = None
    # the calibrated probability that the true spot lies within 25 m (localization/chance.py); None for a model
    # saved before it was fitted. `confidence` is its documented alias (the same number; the old area rule only
    # for such older models), kept so existing clients keep working.
    chance_25m: float | None = None
    difficulty: str | None = None  # the Mondrian group whose radius applies: "kind" or "kind:signal=bI"

    def to_dict(self) -> dict[str, Any]:
        """The one JSON-able form (CLI json/csv/text, HTTP API, page); neighbours best first, as the method ranked them.
        Adds `answer` ("recognised" / "not recognised"), `radius_note` (what the radius promises, at the coverage it
        was calibrated for), `source_note` (what the answer rests on) and `exif_note` (when the photo's own GPS lies
        far outside the gallery's area; else None), in words, and `score_kind` (what the neighbours' scores are)
        (localization/answers.py)."""
        from .localization.answers import (chance_words, outside_words, radius_words, score_kind, source_words,
                                           status_words)

        d = dataclasses.asdict(self)
        d["photo_exif_position"] = list(self.photo_exif_position) if self.photo_exif_position else None
        d["query_region"] = list(self.query_region) if self.query_region else None
        d["answer"] = status_words(self.recognised)
        d["radius_note"] = radius_words(self.recognised, self.radius_coverage)
        d["exif_note"] = outside_words(self.exif_outside_m) if self.exif_outside_m is not None else None
        d["source_note"] = source_words(self.source)
        d["chance_note"] = chance_words(self.chance_25m)
        d["score_kind"] = score_kind(self.source)  # what the neighbours' scores are: "inliers" | "cosine similarity"
        return d


@dataclass(frozen=True)
class Query:
    """One query photo, decoded: pixels (H, W, 3) uint8 upright RGB with no metadata attached, its 35 mm-equivalent
    focal length in mm (None when the EXIF has none; the only metadata a method may read) and a name for messages.

    Made by photos.open_query at the size the model asks for (its query_max_side); each method resizes from
    these pixels to its own input size."""
    pixels: np.ndarray
    focal35: float | None = None
    name: str = "<image>"

    def __post_init__(self):
        p = self.pixels
        if not (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3):
            raise ValueError(f"{self.name}: Query.pixels must be an (H, W, 3) uint8 array")

    def image(self) -> Image.Image:
        """The pixels as an RGB PIL image (a view-sized copy; no metadata)."""
        return Image.fromarray(self.pixels)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def prediction_dict(pred: Prediction, photo: str | None = None,
                    thumb_url: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The one JSON-able form of a Prediction, shared by the CLI (json, csv, text), the HTTP API and the page:
    Prediction.to_dict() plus `photo` (when given), exif_distance_m (metres from the photo's own EXIF position,
    display only; None without one), `radius_text` and `exif_distance_text` (geo.format_distance) and per neighbour (best first) distance_m from the prediction and, with
    thumb_url, its thumbnail URL."""
    from .geo import format_distance, haversine_m

    d = ({"photo": photo} if photo is not None else {}) | pred.to_dict()
    for n in d["neighbours"]:
        n["distance_m"] = float(haversine_m(pred.latitude, pred.longitude, n["latitude"], n["longitude"]))
        if thumb_url is not None:
            n["thumbnail"] = thumb_url(n["image_id"])
    exif = pred.photo_exif_position
    d["exif_distance_m"] = float(haversine_m(pred.latitude, pred.longitude, *exif)) if exif else None
    d["radius_text"] = format_distance(pred.radius_m)
    d["exif_distance_text"] = format_distance(d["exif_distance_m"]) if exif else None
    return d
