"""One training loop for every trainable method: Adam, early stopping on validation loss keeping the best
checkpoint, seeded, with a plain-text log and the paper's train/validation loss curves (its Fig. 2)."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ...errors import ModelError

logger = logging.getLogger("img2gps.train")


@dataclass
class TrainConfig:
    lr: float = 1e-3
    batch_size: int = 128  # or the whole training set, if smaller
    max_epochs: int = 100
    patience: int = 10  # epochs without a new best validation loss before stopping
    min_delta: float = 0.0
    weight_decay: float = 0.0
    seed: int = 42
    amp: bool = False  # mixed precision: loss scaling (GradScaler) when the model is on a CUDA GPU; off elsewhere


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_extra: list[dict] = field(default_factory=list)  # e.g. validation error in metres per epoch
    best_epoch: int = 0  # 1-based; the weights kept are this epoch's
    best_val: float = float("inf")
    stopped_early: bool = False
    seconds: float = 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("val_extra")
        d["epochs_run"] = len(self.train_loss)
        if self.val_extra and 0 < self.best_epoch <= len(self.val_extra):
            d["best_val_extra"] = self.val_extra[self.best_epoch - 1]
        return d


class TrainLog:
    """Lines kept in memory (a model is fitted before its directory exists) and written to train.log on save."""

    def __init__(self, lines: list[str] | None = None):
        self.lines = list(lines or [])

    def __call__(self, msg: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {msg}")
        logger.info(msg)

    def write(self, path: Path) -> None:
        Path(path).write_text("\n".join(self.lines) + "\n")


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    return [perm[s:s + batch_size] for s in range(0, n, max(1, batch_size))]


def train_model(
    build: Callable[[], torch.nn.Module],
    train_loss: Callable[[torch.nn.Module, np.ndarray], torch.Tensor],
    n_train: int,
    val_loss: Optional[Callable[[torch.nn.Module], tuple[float, dict]]],
    cfg: TrainConfig,
    log: TrainLog,
    param_groups: Optional[Callable[[torch.nn.Module], list]] = None,
    name: str = "model",
) -> tuple[torch.nn.Module, History]:
    """Build a model and train it on samples 0..n_train-1 (train_loss gets the model and a batch of sample indices).

    Everything random (initialisation, dropout, batch order) is seeded from cfg.seed inside a forked RNG, so the
    result is repeatable and the caller's global RNG is untouched. With no validation (tiny sets) the training loss
    decides the best epoch. The returned model holds the best epoch's weights and is in eval mode.

    cfg.amp on a CUDA model scales the loss (torch.amp.GradScaler), so float16 gradients of a model that runs its
    forward pass under autocast neither underflow nor, on overflow, corrupt the weights (that step is skipped). The
    model's own forward decides what runs in float16; the loss is expected in float32.
    """
    if n_train < 1:
        raise ModelError(f"{name}: nothing to train on")
    t0 = time.perf_counter()
    hist = History()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = build()
        groups = param_groups(model) if param_groups else [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp = cfg.amp and any(p.is_cuda for p in model.parameters())
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        bs = min(cfg.batch_size, n_train)
        log(f"{name}: {n_train} training samples, batch {bs}, lr {cfg.lr:g}, up to {cfg.max_epochs} epochs, "
            f"patience {cfg.patience}, seed {cfg.seed}, {'with' if val_loss else 'no'} validation"
            + (", mixed precision" if amp else ""))
        best_state = _copy_state(model)
        for epoch in range(1, cfg.max_epochs + 1):
            model.train()
            total, count = 0.0, 0
            for idx in batches(n_train, bs, rng):
                opt.zero_grad(set_to_none=True)
                loss = train_loss(model, idx)
                if not torch.isfinite(loss):
                    raise ModelError(f"{name}: training diverged (loss {loss.item()} at epoch {epoch}); "
                                     "lower lr or use a bounded loss")
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            tr = total / count
            model.eval()
            if val_loss is not None:
                with torch.no_grad():
                    va, extra = val_loss(model)
            else:
                va, extra = tr, {}
            hist.train_loss.append(tr)
            hist.val_loss.append(float(va))
            hist.val_extra.append(extra)
            improved = va < hist.best_val - cfg.min_delta
            if improved:
                hist.best_val, hist.best_epoch = float(va), epoch
                best_state = _copy_state(model)
            extras = " ".join(f"{k} {v:.4g}" for k, v in extra.items())
            log(f"{name}: epoch {epoch:3d} train {tr:.5g} val {va:.5g} {extras}{' *' if improved else ''}")
            if epoch - hist.best_epoch >= cfg.patience:
                hist.stopped_early = True
                break
        model.load_state_dict(best_state)
        model.eval()
    hist.seconds = time.perf_counter() - t0
    log(f"{name}: best epoch {hist.best_epoch} (val {hist.best_val:.5g}) of {len(hist.train_loss)}, "
        f"{'stopped early' if hist.stopped_early else 'ran all epochs'}, {hist.seconds:.1f} s")
    return model, hist


def _copy_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def plot_history(hist: History, out: Path, title: str, ylabel: str) -> Path:
    """Train and validation loss per epoch with the kept (best) epoch marked, like the paper's Fig. 2."""
    from ...plots import loss_curves

    return loss_curves(Path(out), hist.train_loss, hist.val_loss or None, title=title, ylabel=ylabel)
