"""The paper's augmentation (random resized crop + colour jitter) on batches of image tensors, on whatever device
they live, so full fine-tuning on a GPU is not held up by per-photo PIL work on the main thread.

Same distribution as the PIL version in predictors/trained/trunk.py (`augment`): the crop's area fraction, aspect ratio
and position are drawn exactly as `random_resized_crop_box` draws them (10 tries, else the whole photo), in the
photo's own pixel frame; the jitter factors as `colour_jitter` draws them, applied in the same order (brightness,
contrast, saturation, hue) with PIL ImageEnhance's formulas (blend with black, with the mean grey, with the
grey image; hue rotated in HSV). Photos are stashed once as uint8 squares (`stash`); a crop given in normalised
coordinates is the same region of the stashed square as of the original, so sampling it with `grid_sample` squashes
the crop to the output square exactly as cropping then squashing the original does (bilinear, no antialiasing).
Random numbers come from a CPU `torch.Generator`, so a seed gives the same crops on every device.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .trunk import AugmentConfig


def stash(images: list[Image.Image], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos -> (N, 3, side, side) uint8 squares (PIL bilinear squash) and (N, 2) float64 original (width, height)."""
    sq = np.stack([np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)) for im in images])
    sizes = torch.tensor([im.size for im in images], dtype=torch.float64)
    return torch.from_numpy(np.ascontiguousarray(sq.transpose(0, 3, 1, 2))), sizes


def crop_boxes(sizes: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, tries: int = 10) -> torch.Tensor:
    """(B, 2) photo sizes in pixels -> (B, 4) crop boxes (x0, y0, w, h) as fractions of the photo's width/height.

    Per photo: up to `tries` candidates of area fraction U(crop_scale_min, 1) and log-uniform aspect ratio, rounded
    to whole pixels; the first that fits is kept, its corner uniform over the positions; none fits: the whole photo."""
    b = len(sizes)
    w, h = sizes[:, 0:1], sizes[:, 1:2]
    area = w * h * (cfg.crop_scale_min + (1 - cfg.crop_scale_min) * torch.rand(b, tries, generator=gen, dtype=torch.float64))
    lo, hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    ratio = torch.exp(lo + (hi - lo) * torch.rand(b, tries, generator=gen, dtype=torch.float64))
    cw, ch = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(ok.any(1), ok.double().argmax(1), torch.full((b,), -1))
    pick = first.clamp_min(0).unsqueeze(1)
    cw, ch = cw.gather(1, pick)[:, 0], ch.gather(1, pick)[:, 0]
    fits = first >= 0
    cw, ch = torch.where(fits, cw, w[:, 0]), torch.where(fits, ch, h[:, 0])
    u = torch.rand(b, 2, generator=gen, dtype=torch.float64)
    x0, y0 = torch.floor(u[:, 0] * (w[:, 0] - cw + 1)), torch.floor(u[:, 1] * (h[:, 0] - ch + 1))
    return torch.stack([x0 / w[:, 0], y0 / h[:, 0], cw / w[:, 0], ch / h[:, 0]], 1)


def jitter_factors(b: int, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 4): brightness, contrast and saturation factors U(1 - a, 1 + a) (1 when a = 0) and a hue shift in
    turns, rounded to the 1/255 steps of PIL's 8-bit hue."""
    u = torch.rand(b, 4, generator=gen, dtype=torch.float64) * 2 - 1
    amounts = torch.tensor([cfg.brightness, cfg.contrast, cfg.saturation], dtype=torch.float64)
    factors = 1 + u[:, :3] * amounts
    hue = torch.round(u[:, 3] * cfg.hue * 255) / 255
    return torch.cat([factors, hue[:, None]], 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, as PIL's convert('L'): (B, 3, H, W) -> (B, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    mx, mn = x.max(1).values, x.min(1).values
    d = mx - mn
    safe = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(mx == r, (g - b) / safe, torch.where(mx == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(d > 0, (h / 6) % 1.0, torch.zeros_like(h))
    s = torch.where(mx > 0, d / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    return torch.stack([h, s, mx], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v], 1).gather(1, i.unsqueeze(1))
    g = torch.stack([t, v, v, q, p, p], 1).gather(1, i.unsqueeze(1))
    b = torch.stack([p, p, t, v, v, q], 1).gather(1, i.unsqueeze(1))
    return torch.cat([r, g, b], 1)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] and (B, 4) factors -> jittered, clipped to [0, 1] after each step as PIL does."""
    f = factors.to(x.device, x.dtype)
    x = (x * f[:, 0, None, None, None]).clamp(0, 1)
    mean = _grey(x).mean(dim=(2, 3), keepdim=True)
    x = (mean + f[:, 1, None, None, None] * (x - mean)).clamp(0, 1)
    grey = _grey(x)
    x = (grey + f[:, 2, None, None, None] * (x - grey)).clamp(0, 1)
    shift = f[:, 3]
    if bool((shift != 0).any()):
        hsv = _rgb_to_hsv(x)
        hsv = torch.cat([((hsv[:, 0] + shift[:, None, None]) % 1.0).unsqueeze(1), hsv[:, 1:]], 1)
        x = _hsv_to_rgb(hsv).clamp(0, 1)
    return x


def augment_batch(squares: torch.Tensor, sizes: torch.Tensor, out_size: int, cfg: AugmentConfig,
                  gen: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) uint8 stashed photos (any device) + (B, 2) original sizes -> (B, 3, out_size, out_size) float32
    in [0, 1]: a random resized crop squashed to the output square, then colour jitter."""
    b = len(squares)
    box = crop_boxes(sizes, cfg, gen).to(squares.device, torch.float32)
    factors = jitter_factors(b, cfg, gen)
    # affine map from output to input normalised coordinates ([-1, 1], pixel centres: align_corners=False)
    theta = torch.zeros(b, 2, 3, device=squares.device)
    theta[:, 0, 0], theta[:, 1, 1] = box[:, 2], box[:, 3]
    theta[:, 0, 2] = 2 * box[:, 0] + box[:, 2] - 1
    theta[:, 1, 2] = 2 * box[:, 1] + box[:, 3] - 1
    grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
    x = F.grid_sample(squares.float() / 255.0, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return colour_jitter(x, factors)
