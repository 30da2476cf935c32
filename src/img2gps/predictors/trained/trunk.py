"""A pretrained EfficientNet split into a frozen part and a trainable tail, with the frozen part's feature maps of
several augmented views of each photo cached on disk, so heads (and the last blocks) train on 2 CPU cores.

Why this shape: running the trunk is ~95% of the cost of a training step. Augmentation still happens (each photo
has V cached augmented views plus its clean view), but the expensive part runs once per view, ever: the cache is
keyed by photo content, view number and augmentation settings, so every bench fold and every later fit reuses it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageEnhance
from tqdm.auto import tqdm

from ...errors import ModelError, PhotoError
from ...features.encoders import EFFICIENTNET_FAMILIES, OFFLINE_FALLBACK, get_encoder, resize_square
from ...features.cache import FeatureCache


# ----- augmentation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Random resized crop + colour jitter (the paper's augmentation), in PIL so no torchvision is needed."""

    crop_scale_min: float = 0.4  # smaller crops than this lose the context that tells two buildings apart
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03  # fraction of the colour circle

    def tag(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


def random_resized_crop_box(w: int, h: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[int, int, int, int]:
    """A crop covering a random fraction of the area with a random aspect ratio; the whole image if none fits."""
    lo, hi = np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1])
    for _ in range(10):
        area = w * h * rng.uniform(cfg.crop_scale_min, 1.0)
        ratio = float(np.exp(rng.uniform(lo, hi)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x0, y0, x0 + cw, y0 + ch
    return 0, 0, w, h


def colour_jitter(im: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    for enhance, amount in ((ImageEnhance.Brightness, cfg.brightness), (ImageEnhance.Contrast, cfg.contrast),
                            (ImageEnhance.Color, cfg.saturation)):
        if amount > 0:
            im = enhance(im).enhance(float(rng.uniform(1 - amount, 1 + amount)))
    if cfg.hue > 0:
        shift = int(round(rng.uniform(-cfg.hue, cfg.hue) * 255))
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
        im = Image.fromarray(hsv, "HSV").convert("RGB")
    return im


def augment(im: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    return colour_jitter(im.crop(random_resized_crop_box(im.width, im.height, rng, cfg)), rng, cfg)


def view_rng(content_key: str, view: int, aug_seed: int) -> np.random.Generator:
    """Each (photo, view) gets its own stream: the same view whatever the dataset order or fold."""
    return np.random.default_rng([aug_seed, int(content_key[:12], 16), view])


# ----- the split backbone ------------------------------------------------------------------------------------
def resolve_backbone(name: str, fallback: bool = False) -> tuple[object, str]:
    """Encoder for `name`, loaded now. An online-only backbone (b0..b3) that cannot load raises, unless the user
    asked for `fallback`, which then uses the same family's offline model and says so (never random weights)."""
    enc = get_encoder(name)
    if enc.family not in EFFICIENTNET_FAMILIES:
        raise ModelError(f"backbone {name!r} is not an EfficientNet; "
                         "use lite0/lite1/lite2 (offline) or b0..b3 (online)")
    try:
        enc.torch_module()
        return enc, ""
    except ModelError as e:
        if not fallback or name not in OFFLINE_FALLBACK:
            alt = OFFLINE_FALLBACK.get(name, "an offline backbone")
            raise ModelError(f"{e} (or pass fallback=true to use {alt})") from None
        alt = get_encoder(OFFLINE_FALLBACK[name])
        alt.torch_module()
        return alt, f"backbone {name} unavailable ({e}); fell back to {alt.name} as asked (fallback=true)"


class Trunk:
    """EfficientNet cut before its last `train_blocks` blocks: `frozen` (stem + earlier blocks [+ conv head when
    train_blocks=0]) is run once per view and cached; `tail` (the last blocks + conv head) can be trained."""

    def __init__(self, encoder, train_blocks: int = 0, size: int = 0):
        self.encoder = encoder
        self.name = encoder.name
        self.size = int(size or encoder.size)
        self.train_blocks = int(train_blocks)
        net = encoder.torch_module()
        if encoder.family == "effnet-lite":
            units = [_LiteStem(net), *net._blocks]
            head = _LiteHead(net)
        else:  # torchvision EfficientNet: features = [stem, stages..., 1x1 head conv]; a "block" is a stage there
            units, head = list(net.features[:-1]), net.features[-1]
        n_blocks = len(units) - 1
        if not 0 <= self.train_blocks <= n_blocks:
            raise ModelError(f"train_blocks must be between 0 and {n_blocks} for {self.name}")
        cut = len(units) - self.train_blocks
        if self.train_blocks == 0:
            self.frozen, self.tail = nn.Sequential(*units, head), nn.Identity()
        else:
            self.frozen, self.tail = nn.Sequential(*units[:cut]), nn.Sequential(*units[cut:], head)
        self.frozen.eval()
        self.tail.eval()
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.out_channels = encoder.dim if encoder.family == "effnet-lite" else _out_channels(head)

    @property
    def tag(self) -> str:
        return f"{self.name}-{self.size}px-cut{self.train_blocks}"

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """The encoder's own input pipeline (whole photo squashed to a square, its normalisation) at self.size."""
        return self.normalize(self.squares(images).float() / 255.0)

    def squares(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 3, size, size) uint8: each photo squashed to the input square, before normalisation."""
        x = np.stack([resize_square(self._fit_side(im), self.size) for im in images]).astype(np.uint8)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 pixels in [0, 1], on any device -> the encoder's normalised float32 input."""
        if self.encoder.family == "effnet-lite":
            return (x - 0.5) / 0.5
        # torchvision ImageNet weights (statistics in float64, as numpy applies them)
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64, device=x.device)[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64, device=x.device)[:, None, None]
        return ((x.double() - mean) / std).float()

    def _fit_side(self, im: Image.Image) -> Image.Image:
        """Downscale a large query exactly as the cached gallery photos were (Lanczos to load_side, then the
        bilinear squash): a photo seen at fit time and as a query then gives the same features."""
        side = self.encoder.load_side
        if max(im.size) > side:
            im = im.copy()
            im.thumbnail((side, side), Image.Resampling.LANCZOS)
        return im

    def frozen_features(self, images: list[Image.Image]):
        """Frozen-part feature maps as float32, rounded through float16 exactly like the cache, so a query and the
        cached gallery go through identical numbers."""
        with torch.inference_mode():
            f = self.frozen(self.preprocess(images))
        return f.half().float()


class _LiteStem(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _LiteHead(nn.Module):
    """EfficientNet-Lite's 1x1 conv head (to 1280 channels) + BN + activation: what extract_features ends with."""

    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def _out_channels(module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


# ----- cached views ------------------------------------------------------------------------------------------
def cached_views(trunk: Trunk, ds, views: int, aug_seed: int = 42, aug: AugmentConfig = AugmentConfig(),
                 batch: int = 16, desc: str | None = None) -> np.ndarray:
    """(N, 1 + views, C, H, W) float16 frozen-part features: view 0 is the clean photo, 1..views augmented."""
    cache = FeatureCache(f"trunk-{trunk.tag}-aug{aug.tag()}")
    keys = [ds.content_key(i) for i in range(len(ds))]

    def vkey(k: str, v: int) -> str:
        return f"{k}-clean" if v == 0 else f"{k}-v{v}-s{aug_seed}"

    out: list[list[np.ndarray | None]] = [[cache.get(vkey(k, v)) for v in range(views + 1)] for k in keys]
    todo = [i for i, row in enumerate(out) if any(x is None for x in row)]
    bar = tqdm(total=len(todo), desc=desc or f"caching {trunk.name} views", unit="photo", leave=False,
               disable=True if len(todo) < 8 else None)  # None: only on a terminal
    pending: list[tuple[int, int, Image.Image]] = []

    def flush():
        if not pending:
            return
        feats = trunk.frozen_features([im for _, _, im in pending]).numpy().astype(np.float16)
        for (i, v, _), f in zip(pending, feats):
            cache.put(vkey(keys[i], v), f)
            out[i][v] = f
        pending.clear()

    for i in todo:
        try:
            im = ds.open(i, max_side=trunk.encoder.load_side)
        except PhotoError as e:
            raise PhotoError(e.source, f"{e.problem} (training photo {ds.ids[i]})") from None
        for v in range(views + 1):
            if out[i][v] is None:
                pending.append((i, v, im if v == 0 else augment(im, view_rng(keys[i], v, aug_seed), aug)))
        if len(pending) >= batch:
            flush()
        bar.update(1)
    flush()
    bar.close()
    return np.stack([np.stack(row) for row in out])


# ----- pooling ----------------------------------------------------------------------------------------------
class AttentionPool(nn.Module):
    """Spatial attention pooling: per head, a learned 1x1 score per feature-map position, softmax over positions,
    weighted sum of the feature vectors; heads concatenated -> (B, heads * C). Replaces global average pooling."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.score = nn.Conv2d(channels, heads, kernel_size=1)

    def forward(self, x):  # x: (B, C, H, W)
        w = torch.softmax(self.score(x).flatten(2), dim=-1)  # (B, heads, HW)
        return torch.einsum("bkp,bcp->bkc", w, x.flatten(2)).flatten(1)


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
