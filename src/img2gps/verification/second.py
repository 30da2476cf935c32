"""A second local feature's keypoints (rerank:matcher2=...; features/xfeat.py): the query's, and the gallery's
extracted on request.

Only the gallery photos a query's shortlist asks for are extracted, once each, and kept in a byte-bounded LRU in
memory: nothing is written to disk and a model's files do not change. Their matching and geometric verification
are the one matcher's (verification/local.py).
"""
from __future__ import annotations

from typing import Callable

from PIL import Image

from ..errors import ModelError
from ..features.rootsift import Keypoints
from .store import KeypointLRU

# A saved model keeps no gallery photos (only 200 px thumbnails), so it cannot extract a second feature.
NO_PHOTOS = ("the second matcher (rerank:matcher2) extracts its gallery features from the gallery photos, which a "
             "saved model does not keep: use it on a model fitted in the same process (img2gps bench, the Python API)")


class SecondFeatures:
    """extract(image, side) -> Keypoints of a photo at a long side of `side` px; photo_of(j) -> gallery photo j
    (RGB PIL; None: not at hand, a ModelError on first request); side_of(j) -> the long side gallery photo j is
    seen at (its RootSIFT size, so the pose stage reads one size); max_bytes bounds the memory they take."""

    def __init__(self, extract: Callable[[Image.Image, int], Keypoints],
                 photo_of: Callable[[int], Image.Image] | None, side_of: Callable[[int], int],
                 max_bytes: int = 256 * 2**20):
        self.extract, self.photo_of, self.side_of = extract, photo_of, side_of
        self.memory = KeypointLRU(max_bytes)
        self.extracted = 0  # gallery photos extracted so far (one evicted and asked for again counts twice)

    @classmethod
    def xfeat(cls, photo_of, side_of, max_side: int, max_bytes: int) -> "SecondFeatures":
        """XFeat's (features/xfeat.py; ModelError on first use when its package is absent)."""
        from ..features.xfeat import XFeat, XFeatConfig

        return cls(XFeat(XFeatConfig(max_side)).extract, photo_of, side_of, max_bytes)

    def query(self, image: Image.Image, side: int) -> Keypoints:
        """A query's keypoints at a long side of `side` px (the gallery's scale)."""
        return self.extract(image, side)

    def get(self, j: int) -> Keypoints:
        """Gallery photo j's keypoints, extracted on first request."""
        kp = self.memory.get(int(j))
        if kp is None:
            if self.photo_of is None:
                raise ModelError(NO_PHOTOS)
            kp = self.extract(self.photo_of(int(j)), self.side_of(int(j)))
            self.memory.put(int(j), kp)
            self.extracted += 1
        return kp
