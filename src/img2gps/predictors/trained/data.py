"""Training inputs of the trained methods: cached frozen-part feature maps (CPU) or live augmented images (GPU)."""
from __future__ import annotations

import numpy as np
import torch

from ...features.trainable import AugmentConfig, Trunk, augment


class CachedData:
    """Training inputs from cached frozen-part feature maps: sample = (photo, view), every view once per epoch."""

    def __init__(self, feats: np.ndarray):
        self.feats = torch.from_numpy(feats)  # (N, V+1, C, H, W) float16; kept compact, cast per batch

    def samples(self, photos: np.ndarray) -> np.ndarray:
        v = self.feats.shape[1]
        return np.stack([np.repeat(photos, v), np.tile(np.arange(v), len(photos))], 1)

    def batch(self, pairs: np.ndarray) -> torch.Tensor:
        return self.feats[torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])].float()

    def clean(self, photos: np.ndarray) -> torch.Tensor:
        return self.feats[torch.from_numpy(np.asarray(photos)), 0].float()


class LiveData:
    """Training inputs as images, a fresh random augmentation each time a photo is drawn (full fine-tuning)."""

    def __init__(self, trunk: Trunk, images: list, aug: AugmentConfig, seed: int):
        self.trunk, self.images, self.aug = trunk, images, aug
        self.rng = np.random.default_rng(seed)

    def samples(self, photos: np.ndarray) -> np.ndarray:
        return np.stack([photos, np.ones_like(photos)], 1)

    def batch(self, pairs: np.ndarray) -> torch.Tensor:
        return self.trunk.preprocess([augment(self.images[p], self.rng, self.aug) if v else self.images[p]
                                      for p, v in pairs])

    def clean(self, photos: np.ndarray) -> torch.Tensor:
        return self.trunk.preprocess([self.images[p] for p in photos])
