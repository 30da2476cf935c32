"""The values that cross the method boundary: a Query in, a Prediction (with its Neighbours) out.

A Query is made once by whoever receives the photo (api.Img2GPS, evaluate, the server through the api, the CLI
through the api) with photos.open_query: the photo is opened once and its EXIF read once. Methods get the decoded
pixels and the focal length only, never the file: they cannot read the query's own GPS or direction.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, get_args, get_type_hints

import numpy as np
from PIL import Image

from .answer_kinds import MODEL, chance_words, outside_words, radius_words, score_kind, source_words, status_words



def _doc(text: str, **kw):
    """A dataclass field whose meaning is part of the output schema (output_fields reads it)."""
    return field(metadata={"doc": text}, **kw)


@dataclass
class Neighbour:
    """A gallery photo supporting a prediction: its id, position (degrees) and the method's score (higher = better:
    a similarity for retrieval, the verified inlier count for rerank)."""
    image_id: str = _doc("the gallery photo's name")
    latitude: float = _doc("the gallery photo's latitude, degrees")
    longitude: float = _doc("the gallery photo's longitude, degrees")
    score: float = _doc("this gallery photo's support for the answer (higher = better); score_kind says what it is")


@dataclass
class Prediction:
    latitude: float = _doc("predicted latitude, degrees")
    longitude: float = _doc("predicted longitude, degrees")
    radius_m: float = _doc("error radius in metres, calibrated to hold for ~80% of photos")
    confidence: float = _doc("0..1: the same number as chance_25m (its documented alias); older models: higher = "
                                 "a smaller radius")
    recognised: bool = _doc("true only when verified geometry places the photo at a gallery camera's spot")
    method: str = _doc("the model's method spec")
    # best first by the score shown (__post_init__)
    neighbours: list[Neighbour] = _doc("the gallery photos supporting the answer, best first",
                                       default_factory=list)
    photo_exif_position: tuple[float, float] | None = _doc(
        "the photo's own EXIF GPS (lat, lon), for display only: never an input to the method", default=None)
    heading_deg: float | None = _doc("compass bearing the camera faced (0 = north, clockwise); null when not "
                                     "determined", default=None)
    heading_radius_deg: float | None = _doc("calibrated (~80%) error of heading_deg in degrees; null when unknown",
                                            default=None)
    source: str = _doc("what the answer rests on: pose, consensus (recognised), scene (a verified scene seen from "
                       "elsewhere), fallback or model (answer_kinds.SOURCES)", default=MODEL)
    # The part of the given image that was located when a screenshot's or padded image's border was cut away
    # (verification/queryprep.find_photo).
    query_region: tuple[int, int, int, int] | None = _doc(
        "x0, y0, x1, y1 (pixels): the photo found inside a screenshot or padded image, which was located instead "
        "of the whole image; null = the whole image", default=None)
    query_view: str | None = _doc("the view of the photo that verified when the image as given did not "
                                  "(upsampled, clahe, turned 90 clockwise/anticlockwise, centre crop N%); "
                                  "null = as given",
                                  default=None)
    radius_coverage: float = _doc("the share of photos the radius was calibrated to hold for (the method's "
                                  "coverage)", default=0.8)
    exif_outside_m: float | None = _doc(
        "metres from the gallery's area to the photo's own EXIF GPS when that lies far outside it (area.outside_m); "
        "null otherwise. Display only, set after the method answered; never an input to any method", default=None)
    chance_25m: float | None = _doc(
        "the calibrated probability that the true spot lies within 25 m (localization/chance.py); null for a model "
        "saved before it was fitted. `confidence` is its documented alias", default=None)
    difficulty: str | None = _doc('the Mondrian group whose radius applies: "kind" or "kind:signal=bI"',
                                  default=None)

    def __post_init__(self):
        # Supporting photos are numbered best first wherever they are shown, so "best" must mean the score shown
        # beside them: a method may shortlist by another score (rerank's fallback ranks by global + VLAD
        # similarity but shows the cosine similarity). A stable sort keeps the method's order among equal scores.
        self.neighbours = sorted(self.neighbours, key=lambda n: -n.score if math.isfinite(n.score) else math.inf)

    def to_dict(self) -> dict[str, Any]:
        """The one JSON-able form (CLI json/csv/text, HTTP API, page); neighbours best first, as the method ranked them.
        Adds the keys of PREDICTION_WORDS (`answer`, `radius_note`, `exif_note`, `source_note`, `chance_note`,
        `score_kind`; answer_kinds.py)."""
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
    """One query photo, decoded: `photo`, an upright RGB PIL image with no metadata attached, its 35 mm-equivalent
    focal length in mm (None when the EXIF has none; the only metadata a method may read) and a name for messages.

    Made by photos.open_query at the size the model asks for (its query_max_side); each method resizes from
    this image to its own input size, on a copy: the photo is shared, never changed in place.
    Raises ValueError for anything but a non-empty RGB image without metadata."""
    photo: Image.Image
    focal35: float | None = None
    name: str = "<image>"

    def __post_init__(self):
        p = self.photo
        if not (isinstance(p, Image.Image) and p.mode == "RGB" and p.width > 0 and p.height > 0):
            raise ValueError(f"{self.name}: Query.photo must be a non-empty RGB PIL image")
        if p.info:
            raise ValueError(f"{self.name}: Query.photo must carry no metadata (found {', '.join(map(str, p.info))})")

    def image(self) -> Image.Image:
        """The photo itself (no copy; no metadata): methods copy before resizing."""
        return self.photo

    @property
    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 copy of the pixels."""
        return np.asarray(self.photo)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.photo.size


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


# -- the output schema: every key of the dict form, its type and meaning, in one place ----------------------------
# Prediction's and Neighbour's own fields carry their meaning (`_doc`); the keys the dict form adds are listed here.
# The HTTP API's response model (server/app.py) is derived from this, so a new field reaches every output.
PREDICTION_WORDS = {  # added by Prediction.to_dict
    "answer": (str, '"recognised" or "not recognised", in words'),
    "radius_note": (str, "what the radius promises, in words (an unrecognised answer's radius holds for photos "
                         "taken within the gallery's area)"),
    "exif_note": (Optional[str], "when the photo's own GPS lies far outside the gallery's area, that in words; "
                                 "else null"),
    "source_note": (str, "what the answer rests on, in words"),
    "chance_note": (Optional[str], 'the chance within 25 m in words ("chance within 25 m: 83%"); null without one'),
    "score_kind": (str, 'what each neighbour\'s score is: "inliers" (a verified match) or "cosine similarity" (of the '
                        "global embeddings)"),
}
PREDICTION_EXTRAS = {  # added by prediction_dict
    "photo": (str, "the photo's file name"),
    "exif_distance_m": (Optional[float], "metres between the prediction and the EXIF position"),
    "radius_text": (str, "radius_m as read (metres below 1 km, km above; geo.format_distance)"),
    "exif_distance_text": (Optional[str], "exif_distance_m as read; null without an EXIF position"),
}
NEIGHBOUR_EXTRAS = {  # added by prediction_dict, per neighbour
    "distance_m": (float, "metres from the predicted position"),
    "thumbnail": (Optional[str], "URL of the gallery thumbnail, if the model has one"),
}
REQUIRED = object()  # output_fields' default of a key that is always present


def output_fields(kind: str = "prediction") -> dict[str, tuple[Any, Any, str]]:
    """The dict form's keys for kind "prediction" or "neighbour": name -> (type, default or REQUIRED, meaning), in
    output order. Read at call time from Prediction / Neighbour as this module defines them."""
    cls, extras = (Prediction, {**PREDICTION_WORDS, **PREDICTION_EXTRAS}) if kind == "prediction" else \
        (Neighbour, NEIGHBOUR_EXTRAS)
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else REQUIRED
        if f.default_factory is not dataclasses.MISSING:
            default = REQUIRED  # always written (a list)
        out[f.name] = (hints[f.name], default, f.metadata.get("doc", ""))
    for k, (t, doc) in extras.items():
        out[k] = (t, None if type(None) in get_args(t) else REQUIRED, doc)
    return out
