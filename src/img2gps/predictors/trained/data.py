"""Training inputs of the trained methods: cached frozen-part feature maps (CPU) or live augmented images (GPU)."""
from __future__ import annotations

import numpy as np
import torch

from .batch_augment import augment_batch, stash
from .trunk import AugmentConfig, Trunk

STASH_SCALE = 1.5  # augmentation source squares at 1.5x the input side: a full-photo crop is downsampled 1.5x


class CachedData:
    """Training inputs from cached frozen-part feature maps: sample = (photo, view), every view once per epoch.
    The maps live on the training device (float16, cast per batch), so a GPU is not fed through the host."""

    def __init__(self, feats: np.ndarray, device: torch.device | str = "cpu"):
        self.feats = torch.from_numpy(feats).to(device)  # (N, V+1, C, H, W) float16

    def samples(self, photos: np.ndarray) -> np.ndarray:
        v = self.feats.shape[1]
        return np.stack([np.repeat(photos, v), np.tile(np.arange(v), len(photos))], 1)

    def batch(self, pairs: np.ndarray) -> torch.Tensor:
        return self.feats[torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])].float()

    def clean(self, photos: np.ndarray) -> torch.Tensor:
        return self.feats[torch.from_numpy(np.asarray(photos)), 0].float()


class LiveData:
    """Training inputs as images, a fresh random augmentation each time a photo is drawn (full fine-tuning).

    Every photo is stashed once, on the training device, as a uint8 square for augmentation and as the query path's
    own input square (Trunk.squares) for clean views; a batch is cropped and colour-jittered there in one go
    (batch_augment.py), so no per-photo PIL work on the main thread holds the GPU up. Random crops come from
    one CPU generator seeded with aug_seed: the same seed gives the same crops on any device. Memory: ~0.5 MB per
    photo at 224 px."""

    def __init__(self, trunk: Trunk, images: list, aug: AugmentConfig, seed: int, device: torch.device | str = "cpu"):
        self.trunk, self.aug = trunk, aug
        squares, self.sizes = stash(images, round(trunk.size * STASH_SCALE))
        self.squares = squares.to(device)
        self.clean_squares = trunk.squares(images).to(device)
        self.gen = torch.Generator().manual_seed(seed)

    def samples(self, photos: np.ndarray) -> np.ndarray:
        return np.stack([photos, np.ones_like(photos)], 1)

    def batch(self, pairs: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(np.asarray(pairs[:, 0]))
        x = augment_batch(self.squares[idx.to(self.squares.device)], self.sizes[idx], self.trunk.size, self.aug,
                          self.gen)
        return self.trunk.normalize(x)

    def clean(self, photos: np.ndarray) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(photos)).to(self.clean_squares.device)
        return self.trunk.normalize(self.clean_squares[idx].float() / 255.0)
