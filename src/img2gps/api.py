"""The library entry point: `Img2GPS.load(model_dir).predict(photo, top_k=5)` -> Prediction.

Loading reads the saved gallery embeddings and index (nothing is re-embedded); the encoder's weights load on the
first prediction (or `warmup()`). The query's own EXIF position is read here, after the predictor has answered,
and only for display: predictors get a types.Query (pixels and focal length; photos.open_query).
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .area import outside_m, split_areas
from .errors import ModelError, PhotoError
from .modeldir import thumb_name
from .exif import PhotoMeta
from .photos import MAX_PIXELS, ImageInput, describe, open_query, read_bytes
from .types import Prediction
from .predictors.registry import load_model

RUNTIMES = ("torch", "onnx")


@dataclass
class Img2GPS:
    predictor: object
    model_dir: Path
    manifest: dict
    runtime: str = "torch"
    max_pixels: int = MAX_PIXELS  # larger photos raise errors.ImageTooLarge (HTTP 413)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ids: frozenset | None = field(default=None, repr=False)
    _areas: list | None = field(default=None, repr=False)

    @classmethod
    def load(cls, model_dir: str | Path, runtime: str = "torch", onnx_path: str | Path | None = None,
             max_pixels: int = MAX_PIXELS) -> "Img2GPS":
        """Open a model directory. runtime='onnx' embeds queries with onnxruntime: from `onnx_path`, else
        MODEL_DIR/encoder.onnx, else an export made once and cached under the user cache dir. Photos above
        max_pixels (default photos.MAX_PIXELS) are refused with errors.ImageTooLarge."""
        model_dir = Path(model_dir)
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown runtime {runtime!r}; choose {' or '.join(RUNTIMES)}")
        predictor = load_model(model_dir)  # checks every file's checksum, names what is missing or corrupted
        obj = cls(predictor, model_dir, predictor.manifest, runtime, max_pixels)
        if runtime == "onnx":
            obj._use_onnx(onnx_path)
        return obj

    def _use_onnx(self, onnx_path) -> None:
        from .export import OnnxEncoder, cached_onnx_path, export_onnx, query_encoder_of

        base = query_encoder_of(self.predictor)
        path = Path(onnx_path) if onnx_path else self.model_dir / "encoder.onnx"
        if onnx_path is None and not path.is_file():
            path = cached_onnx_path(self.model_dir, self.manifest)
            if not path.is_file():
                print(f"exporting the encoder to ONNX once: {path}", file=sys.stderr)
                export_onnx(self.predictor, path, model_dir=self.model_dir)
        self.predictor.use_query_encoder(OnnxEncoder(path, base))

    # -- facts about the model -----------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return self.predictor.spec

    @property
    def gallery(self) -> pd.DataFrame:
        """image, Latitude, Longitude of every gallery photo."""
        return self.predictor.gallery

    def thumbnail_path(self, image_id: str) -> Path | None:
        """The saved thumbnail of a gallery photo, or None. Only ids in the gallery are ever mapped to a file."""
        if self._ids is None:
            self._ids = frozenset(self.gallery["image"].astype(str))
        if image_id not in self._ids:
            return None
        p = self.model_dir / "thumbs" / thumb_name(image_id)
        return p if p.is_file() else None

    def warmup(self) -> None:
        """Load the encoder weights now (a server does this once at start, not on the first request)."""
        self.predict(np.full((32, 32, 3), 128, np.uint8), top_k=1)

    # -- prediction ------------------------------------------------------------------------------------------
    def predict(self, image: ImageInput, top_k: int = 5, max_pixels: int | None = None) -> Prediction:
        """One photo (path, bytes, PIL image or HxWx3 uint8 array) -> Prediction.

        A file or bytes with more than max_pixels (default: this object's max_pixels) raise errors.ImageTooLarge,
        a format it cannot open errors.UnsupportedFormat; other unusable photos raise PhotoError, each with a
        one-line reason naming the photo."""
        return self.locate(image, top_k, max_pixels)[0]

    def locate(self, image: ImageInput, top_k: int = 5,
               max_pixels: int | None = None) -> tuple[Prediction, PhotoMeta | None]:
        """As predict, plus the photo's EXIF facts (None for a PIL image or an array), read in the same single
        open: for display only (e.g. why a photo shows no EXIF position, meta.gps_problem)."""
        max_pixels = self.max_pixels if max_pixels is None else int(max_pixels)
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ModelError(f"top_k must be a positive integer, not {top_k!r}")
        name = describe(image)
        data = read_bytes(image) if isinstance(image, (str, Path)) else image
        if isinstance(data, bytearray):
            data = bytes(data)
        if not isinstance(data, (bytes, Image.Image, np.ndarray)):
            raise PhotoError(name, f"unsupported input type {type(image).__name__} (path, bytes, PIL image or array)")
        try:
            # opened here, once, under this object's pixel limit: the predictor gets a Query (pixels + focal
            # length), the EXIF position stays here, for display only
            query, meta = open_query(data, max_side=self.predictor.query_max_side, max_pixels=max_pixels)
            with self._lock:  # one query at a time: 2 cores gain nothing from parallel embeddings
                pred = self.predictor.predict([query], top_k=int(top_k))[0]
        except PhotoError as e:
            raise type(e)(name, e.problem) from None  # name the file, not "<12345 bytes>"
        if meta is not None:
            pred.photo_exif_position = (float(meta.latitude), float(meta.longitude)) if meta.has_gps else None
        if pred.photo_exif_position:  # display only: the answer above never saw it
            pred.exif_outside_m = outside_m(self.areas, *pred.photo_exif_position)
        return pred, meta

    @property
    def areas(self) -> list:
        """The gallery's areas (area.split_areas), computed once."""
        if self._areas is None:
            self._areas = split_areas(self.gallery["Latitude"], self.gallery["Longitude"])
        return self._areas

    def predict_many(self, images: Sequence[ImageInput], top_k: int = 5) -> list[Prediction]:
        """A list of photos -> a list of Predictions in the same order (the first bad photo raises PhotoError)."""
        if isinstance(images, (str, Path, bytes, Image.Image, np.ndarray)):
            raise ModelError("predict_many takes a list of photos; use predict() for one")
        return [self.predict(im, top_k) for im in images]

