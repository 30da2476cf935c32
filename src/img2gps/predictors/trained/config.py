"""Options shared by the methods that train a head on a pretrained EfficientNet (regression, contrastive)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...features.encoders import efficientnets
from ..spec import opt


def _device_problem(device: str) -> str | None:
    if device == "cpu" or re.fullmatch(r"cuda(:\d+)?", device):
        return None
    return f"must be cpu, cuda or cuda:N, not {device!r}"


@dataclass
class TrunkHeadConfig:
    backbone: str = opt("lite0", choices=efficientnets)  # lite0 | lite1 | lite2 (offline weights) | b0..b3 (torchvision, needs a network)
    fallback: bool = opt(False)  # b0..b3 unavailable: use the same family's offline model instead of failing
    lr: float = opt(1e-3, gt=0)
    batch: int = opt(128, ge=1)
    epochs: int = opt(100, ge=1)
    patience: int = opt(10, ge=1)
    weight_decay: float = opt(0.0, ge=0)
    val_frac: float = opt(0.2, ge=0, lt=1)  # validation photos carved from the training part, whole spatial
    # clusters at a time
    val_buffer_m: float = opt(10.0, ge=0)  # training photos this close to a validation photo are left out
    views: int = opt(6, ge=0)  # augmented views per photo cached on disk (plus the clean view)
    aug_seed: int = opt(42, ge=0)
    crop_scale_min: float = opt(0.4, gt=0, le=1)
    train_blocks: int = opt(0, ge=0)  # also train the backbone's last N blocks (on cached inputs to them)
    tail_lr_mult: float = opt(0.1, ge=0)  # learning-rate factor for backbone weights being trained
    input_size: int = opt(0, ge=0)  # 0 = the backbone's native size (224 for lite0)
    device: str = opt("cpu", check=_device_problem)  # cpu | cuda | cuda:N
    mode: str = opt("auto", choices=("auto", "cached", "full"))  # cached | full | auto (full fine-tuning on a
    # GPU, cached features on the CPU)
    amp: bool = opt(True)  # full fine-tuning on a CUDA GPU: float16 autocast + loss scaling (never on the CPU)
    calib_folds: int = opt(3, ge=0)  # inner folds whose held-out predictions calibrate the radius
    coverage: float = opt(0.8, gt=0, lt=1)
    seed: int = opt(42, ge=0)
