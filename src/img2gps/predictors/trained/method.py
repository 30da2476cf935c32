"""Shared plumbing for the methods that train a head on a pretrained EfficientNet (regression, contrastive).

CPU mode (`mode=cached`, the default on `device=cpu`): the frozen part of the backbone is run once per photo and
view (clean + `views` augmented) and cached on disk; the head (and the last `train_blocks` blocks) trains on those
feature maps. GPU mode (`mode=full`, the default on `device=cuda`): the whole backbone is fine-tuned with a fresh
augmentation of every photo in every epoch. Both share the validation split, the inner folds that calibrate the
radius, and the model directory's weights.pt, train.log and loss_curves.png.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...answer_kinds import MODEL
from ...area import describe, split_areas
from ...localization.calibration import RadiusModel
from ...localization.conformal import MondrianRadius
from ...localization.holdout import HOLDOUTS, HoldoutPlan
from ...data.splits import kfold_folds, location_disjoint_split
from ...errors import ModelError
from .trunk import AugmentConfig, Trunk, cached_views, resolve_backbone
from ...geo import LocalFrame
from .training import History, TrainConfig, TrainLog, plot_history, train_model
from ..base import BasePredictor
from .data import CachedData, LiveData
from .net import HeadNet, chunked
from .state import TrainedState

WEIGHTS = "weights.pt"
MIN_FOR_VALIDATION = 8  # fewer training photos than this: no validation split (the training loss picks the epoch)


class TrunkHeadPredictor(BasePredictor):
    """Subclasses implement: _head(channels) -> nn.Module (with .embed), _prepare_targets(lat, lon),
    _loss(net_output, photo_indices) -> scalar, _val_extra(net, data, tr, va, val_output) -> dict,
    _heldout(net, data, tr, va) -> (errors_m, spreads_m), _finish(data), _restore(state) (load side).
    Everything fitted lives in `self.state` (a `State`, trained/state.py); queries are trained/query.py's."""

    loss_label = "loss"
    State: type = TrainedState

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        self.state: TrainedState | None = None
        self.log = TrainLog()

    # -- set-up -------------------------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self.config.mode == "full" or (self.config.mode == "auto" and self.config.device != "cpu")

    @property
    def device(self) -> torch.device:
        d = self.config.device
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"{self.spec}: device={d} asked for, but this torch has no usable CUDA GPU; "
                             "use device=cpu")
        try:
            return torch.device(d)
        except RuntimeError:
            raise ModelError(f"{self.spec}: unknown device {d!r} (cpu, cuda, cuda:N)") from None

    @property
    def amp(self) -> bool:
        """Mixed precision (float16 autocast + loss scaling): full fine-tuning on a CUDA GPU, unless amp=false."""
        return self.config.amp and self.full and self.device.type == "cuda"

    @property
    def trunk(self) -> Trunk:
        """The fitted state's trunk (read-only shorthand for the training code)."""
        return self.state.trunk

    def _setup_trunk(self) -> None:
        """A fresh state around the resolved backbone (the fitted fields are filled by fit or load)."""
        enc, note = resolve_backbone(self.config.backbone, self.config.fallback)
        trunk = Trunk(enc, self.config.train_blocks, self.config.input_size)
        self.state = self.State(trunk, self.full, self.device, backbone_used=enc.name, backbone_note=note)

    def _aug(self) -> AugmentConfig:
        return AugmentConfig(crop_scale_min=self.config.crop_scale_min)

    def _train_config(self) -> TrainConfig:
        c = self.config
        return TrainConfig(lr=c.lr, batch_size=c.batch, max_epochs=c.epochs, patience=c.patience,
                           weight_decay=c.weight_decay, seed=c.seed, amp=self.amp)

    def _data(self, train):
        c = self.config
        if self.full:
            images = [train.open(i, max_side=self.trunk.encoder.load_side) for i in range(len(train))]
            return LiveData(self.trunk, images, self._aug(), c.aug_seed, self.device)
        feats = cached_views(self.trunk, train, c.views, c.aug_seed, self._aug())
        return CachedData(feats, self.device)

    def _build_net(self) -> nn.Module:
        """A fresh trainable net: [frozen part, when fine-tuning all] + tail copy + this method's head."""
        t = self.trunk
        if self.full:
            frozen = copy.deepcopy(t.frozen)
            for p in frozen.parameters():
                p.requires_grad_(True)
            body = nn.Sequential(frozen, copy.deepcopy(t.tail))
        else:
            body = copy.deepcopy(t.tail)
            for p in body.parameters():
                p.requires_grad_(True)
        return HeadNet(body, self._head(t.out_channels), freeze_body_bn=not self.full,
                       amp=self.amp).to(self.device)

    def _param_groups(self, net: "HeadNet") -> list:
        body = [p for p in net.body.parameters() if p.requires_grad]
        head = [p for p in net.head.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": self.config.lr}]
        if body:
            groups.append({"params": body, "lr": self.config.lr * self.config.tail_lr_mult})
        return groups

    def _carve(self, idx: np.ndarray, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        """Location-aware validation: whole spatial clusters held out, nearby training photos buffered away."""
        c = self.config
        if len(idx) < MIN_FOR_VALIDATION or c.val_frac <= 0:
            return idx, idx[:0]
        f = location_disjoint_split(lat[idx], lon[idx], c.val_frac, c.val_buffer_m, c.seed)
        if len(f.train) < 2 or len(f.val) == 0:
            return idx, idx[:0]
        return idx[f.train], idx[f.val]

    # -- training -----------------------------------------------------------------------------------------
    def _train_on(self, data, idx: np.ndarray, name: str) -> tuple[nn.Module, History]:
        tr, va = self._carve(idx, self._lat, self._lon)
        self.log(f"{name}: {len(tr)} training photos, {len(va)} validation photos, "
                 f"{len(idx) - len(tr) - len(va)} left out by the {self.config.val_buffer_m:g} m buffer")
        pairs = data.samples(tr)
        dev = self.device

        def step(net, b):
            p = pairs[b]
            return self._loss(net(data.batch(p).to(dev)), p[:, 0])

        def val(net):
            out = chunked(lambda ph: net(data.clean(ph).to(dev)), va)
            return float(self._loss(out, va)), self._val_extra(net, data, tr, va, out)

        return train_model(self._build_net, step, len(pairs), val if len(va) else None, self._train_config(),
                           self.log, self._param_groups, name=name)

    def _fit(self, train) -> None:
        areas = split_areas(train.lat, train.lon)
        if len(areas) > 1:  # one net, one metric frame: its answers would fall between the areas (issue 30)
            raise ModelError(f"{self.spec}: the gallery covers {len(areas)} far-apart areas "
                             f"({'; '.join(describe(areas))}); {self.name} learns positions in one metric frame "
                             "and would answer between them: fit it on one area's photos, or use knn or rerank, "
                             "which answer within an area")
        self._setup_trunk()
        self.log = TrainLog()
        c = self.config
        how = "full fine-tuning, live augmentation" if self.full else f"cached features, {c.views} augmented views"
        self.log(f"{self.spec}: backbone {self.trunk.encoder.description}, input {self.trunk.size}px, {how}, "
                 f"train_blocks {c.train_blocks}, device {c.device}")
        if self.state.backbone_note:
            self.log(self.state.backbone_note)
        self._lat, self._lon = train.lat, train.lon
        self.state.frame = LocalFrame.around(self._lat, self._lon)
        self._en = self.state.frame.to_en(self._lat, self._lon)
        self._prepare_targets(self._lat, self._lon)
        data = self._data(train)
        n = len(train)
        self.state.net, self.state.history = self._train_on(data, np.arange(n), "final")
        self._calibrate(data, n)
        self._finish(data)

    def _calibrate(self, data, n: int) -> None:
        """Radius from inner folds: a model trained without each fold predicts it, exactly as a real query."""
        c = self.config
        k = min(c.calib_folds, n // 2)
        centre_err = np.linalg.norm(self._en - self._en.mean(0), axis=1)
        area = float(np.quantile(centre_err, c.coverage)) if n else 100.0
        st = self.state
        if k < 2:
            st.radius_model = RadiusModel(scale=1.0, offset_m=max(area, 10.0), floor_m=25.0, area_m=max(area, 25.0))
            st.calibration = {"folds": 0, "note": "too few photos for inner folds: radius = area size"}
            self.log(st.calibration["note"])
            return
        errs, spreads, holdout = [], [], []
        # Each inner fold's training photos exclude every photo near its validation photos
        # (localization/holdout.py): in turn the same-spot siblings (near), the area's typical distance (area) and
        # a whole block held out (block: HoldoutPlan.inner_fold), so the held-out errors look like those of photos
        # taken anywhere and in the gallery's holes; localization/conformal.py mixes them. No fold is trained twice.
        plan = HoldoutPlan(self._en, st.frame)
        for fi, fold in enumerate(kfold_folds(n, k, c.seed)):
            h = HOLDOUTS[fi % len(HOLDOUTS)]
            tr, va = plan.inner_fold(h, fold.train, fold.val)
            net, _ = self._train_on(data, tr, f"calibration fold {fi + 1}/{k}")
            e, s = self._heldout(net, data, tr, va)
            errs.append(e)
            spreads.append(s)
            holdout += [h] * len(e)
        errs, spreads = np.concatenate(errs), np.concatenate(spreads)
        st.radius_model = MondrianRadius.fit([MODEL] * len(errs), holdout, errs, spreads, coverage=c.coverage,
                                             area_m=area).pooled
        rho = float(np.corrcoef(errs, spreads)[0, 1]) if np.std(spreads) > 0 and np.std(errs) > 0 else float("nan")
        st.calibration = {"folds": k, "n": int(len(errs)), "heldout_mean_m": float(errs.mean()),
                            "heldout_median_m": float(np.median(errs)), "spread_error_corr": rho}
        self.log(f"calibration on {k} inner folds: held-out mean {errs.mean():.1f} m, median {np.median(errs):.1f} m, "
                 f"corr(spread, error) {rho:.2f}, radius scale {st.radius_model.scale:.3g}")

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d: Path) -> None:
        st = self.state
        torch.save({k: v.cpu() for k, v in st.net.state_dict().items()}, d / WEIGHTS)
        self.log.write(d / "train.log")
        if st.history is not None and st.history.train_loss:
            plot_history(st.history, d / "loss_curves.png", f"{self.spec} (efficientnet-{st.backbone_used})",
                         self.loss_label)

    def _state(self) -> dict[str, Any]:
        st = self.state
        h = st.history
        return {
            "backbone_used": st.backbone_used, "backbone_note": st.backbone_note,
            "mode_used": "full" if st.full else "cached",
            "backbone_description": st.trunk.encoder.description,
            "input_size": st.trunk.size,
            "frame": [st.frame.lat0, st.frame.lon0],
            "radius_model": st.radius_model.to_dict(), "calibration": st.calibration,
            "history": None if h is None else {**h.summary(), "val_extra": h.val_extra},
        }

    @classmethod
    def saved_config(cls, manifest: dict[str, Any]) -> dict[str, Any]:
        """The saved config, made to run here: the backbone that was trained (a fallback resolved at fit time),
        the net layout it was trained in (mode_used), and device=cpu when this machine has no CUDA GPU (a
        GPU-trained model still loads and predicts on a CPU-only machine)."""
        cfg, state = dict(manifest.get("config", {})), manifest.get("state", {})
        if state.get("backbone_used") and state["backbone_used"] != cfg.get("backbone"):
            cfg["backbone"], cfg["fallback"] = state["backbone_used"], False
        cfg["mode"] = state.get("mode_used", cfg.get("mode", "auto"))
        if cfg.get("device", "cpu") != "cpu" and not torch.cuda.is_available():
            cfg["device"] = "cpu"
        return cfg

    def _load_files(self, d: Path, state: dict[str, Any]) -> None:
        self._setup_trunk()
        st = self.state
        st.frame = LocalFrame(*state["frame"])
        st.radius_model = RadiusModel.from_dict(state.get("radius_model"))
        st.calibration = state.get("calibration", {})
        st.backbone_note = state.get("backbone_note", "")
        h = state.get("history")
        if h:
            st.history = History(h["train_loss"], h["val_loss"], h.get("val_extra", []), h["best_epoch"],
                                   h["best_val"], h["stopped_early"], h["seconds"])
        log = d / "train.log"
        self.log = TrainLog(log.read_text().splitlines() if log.is_file() else [])
        self._restore(state)
        net = self._build_net()
        try:
            sd = torch.load(d / WEIGHTS, map_location=self.device, weights_only=True)
            net.load_state_dict(sd)
        except (OSError, RuntimeError, KeyError) as e:
            raise ModelError(f"{d / WEIGHTS}: cannot load weights ({str(e).splitlines()[0]})") from None
        st.net = net.eval()
