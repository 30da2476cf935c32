"""The trained network: backbone body + a method's head, and chunked evaluation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


class HeadNet(nn.Module):
    """body (trainable backbone tail, or the whole backbone) -> method head. `embed` is the head's feature layer."""

    def __init__(self, body: nn.Module, head: nn.Module, freeze_body_bn: bool):
        super().__init__()
        self.body, self.head, self.freeze_body_bn = body, head, freeze_body_bn

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_body_bn:
            # few photos, small batches: keep the pretrained BN statistics (and no drop-connect) in the backbone
            self.body.eval()
        return self

    def forward(self, x):
        return self.head(self.body(x))

    def embed(self, x):
        return self.head.embed(self.body(x))


def chunked(fn, photos: np.ndarray, chunk: int = 64) -> torch.Tensor:
    """fn over photos in chunks of `chunk`, outputs concatenated along dim 0 (bounds peak memory)."""
    return torch.cat([fn(photos[s:s + chunk]) for s in range(0, len(photos), chunk)])
