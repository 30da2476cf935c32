"""regression: the reference paper's model. EfficientNet -> spatial attention pooling (4 heads) -> FC 256 -> ReLU ->
dropout 0.3 -> FC 2 (latitude/longitude z-scored with the training split's statistics, saved with the model).

Losses: `mse` on the z-scores (the paper), `metres` (Huber, or plain squared with huber_m=0, on the east/north
error in metres) and `haversine` (great-circle metres with the square root's argument clamped away from 0: the
unclamped form has an infinite derivative at zero distance, which is where the paper's haversine loss got NaN).
Each prediction's spread comes from a fixed set of dropout masks (MC dropout) and feeds the calibrated radius.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ...features.trainable import AttentionPool, cached_views
from ...geo import EARTH_RADIUS_M, haversine_m, latlon_sd, lon_delta, mean_lon, wrap_lon
from ...errors import ModelError
from ...types import Prediction, Query
from ..spec import opt
from .config import TrunkHeadConfig
from .method import TrunkHeadPredictor
from .net import chunked

LOSSES = ("mse", "metres", "haversine")


@dataclass
class RegressionConfig(TrunkHeadConfig):
    heads: int = opt(4, ge=1)
    hidden: int = opt(256, ge=1)
    dropout: float = opt(0.3, ge=0, lt=1)
    loss: str = opt("mse", choices=LOSSES)  # mse (z-scored lat/lon, the paper) | metres | haversine
    huber_m: float = opt(10.0, ge=0)  # loss=metres: quadratic below this many metres, linear above; 0 = plain
    # squared metres
    mc_samples: int = opt(16, ge=0)  # dropout samples for each prediction's spread (0 = none: a constant radius)


class RegressionHead(nn.Module):
    def __init__(self, channels: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.pool = AttentionPool(channels, heads)
        self.fc = nn.Linear(heads * channels, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 2)

    def embed(self, x):
        """The 256-d layer (after ReLU): what knn:embed=regression searches."""
        return torch.relu(self.fc(self.pool(x)))

    def forward(self, x):
        return self.out(self.drop(self.embed(x)))


def haversine_torch(lat1, lon1, lat2, lon2, min_m: float = 1e-3) -> torch.Tensor:
    """Great-circle metres, differentiable everywhere: below min_m the distance is held at min_m (zero gradient)
    instead of taking sqrt(0), whose derivative is infinite and turns into NaN in backprop."""
    p1, p2 = torch.deg2rad(lat1), torch.deg2rad(lat2)
    dphi, dlmb = p2 - p1, torch.deg2rad(lon2 - lon1)
    a = torch.sin(dphi / 2) ** 2 + torch.cos(p1) * torch.cos(p2) * torch.sin(dlmb / 2) ** 2
    a_min = (min_m / (2 * EARTH_RADIUS_M)) ** 2
    return 2 * EARTH_RADIUS_M * torch.asin(torch.sqrt(a.clamp(a_min, 1.0)))


def metres_loss(err_m: torch.Tensor, huber_m: float) -> torch.Tensor:
    """(B, 2) east/north errors in metres -> mean Huber (or squared) loss of the error length.

    The quadratic part uses the squared length directly and the linear part a clamped square root, so the
    gradient is finite even for a perfect prediction."""
    sq = (err_m ** 2).sum(1)
    if huber_m <= 0:
        return sq.mean()
    dist = torch.sqrt(sq.clamp_min(1e-12))
    return torch.where(dist <= huber_m, 0.5 * sq, huber_m * (dist - 0.5 * huber_m)).mean()


class RegressionPredictor(TrunkHeadPredictor):
    name = "regression"
    Config = RegressionConfig

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        c = self.config
        self.loss_label = {"mse": "MSE of z-scored lat/lon", "metres": f"Huber loss on error (m, delta {c.huber_m:g})"
                           if c.huber_m > 0 else "squared error (m^2)", "haversine": "haversine error (m)"}[c.loss]

    def _head(self, channels: int) -> nn.Module:
        c = self.config
        return RegressionHead(channels, c.heads, c.hidden, c.dropout)

    # -- targets and losses -------------------------------------------------------------------------------
    def _prepare_targets(self, lat, lon) -> None:
        # a std floor of ~1 m keeps a gallery taken at one spot from dividing by zero
        # longitude is z-scored as wrap-aware offsets from its circular mean (valid across +-180 degrees)
        lat_sd, lon_sd = latlon_sd(lat, lon, floor=1e-5)
        self.norm = {"lat_mean": float(np.mean(lat)), "lat_std": lat_sd, "lon_mean": mean_lon(lon), "lon_std": lon_sd}
        self._setup_norm()
        z = np.stack([(lat - self.norm["lat_mean"]) / self.norm["lat_std"],
                      lon_delta(lon, self.norm["lon_mean"]) / self.norm["lon_std"]], 1)
        self._z = torch.tensor(z, dtype=torch.float32)

    def _setup_norm(self) -> None:
        n = self.norm
        m_per_deg = np.pi / 180 * EARTH_RADIUS_M
        self._mean = torch.tensor([n["lat_mean"], n["lon_mean"]], dtype=torch.float64)
        self._std = torch.tensor([n["lat_std"], n["lon_std"]], dtype=torch.float64)
        # metres per z unit, north and east, at the training data's latitude
        east_m_per_deg = m_per_deg * np.cos(np.radians(n["lat_mean"]))
        self._scale_m = torch.tensor([n["lat_std"] * m_per_deg, n["lon_std"] * east_m_per_deg], dtype=torch.float64)

    def _loss(self, out: torch.Tensor, photos) -> torch.Tensor:
        target = self._z[torch.as_tensor(np.asarray(photos))].to(out.device)
        return self.loss_fn(out, target)

    def loss_fn(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between predicted and true z-scored (lat, lon), per the config."""
        c = self.config
        if c.loss == "mse":
            return ((out - target) ** 2).mean()
        dz = (out - target).double()
        if c.loss == "metres":
            return metres_loss(dz * self._scale_m.to(out.device), c.huber_m).float()
        mean, std = self._mean.to(out.device), self._std.to(out.device)
        p, t = out.double() * std + mean, target.double() * std + mean
        return haversine_torch(p[:, 0], p[:, 1], t[:, 0], t[:, 1]).mean().float()

    def _latlon(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z, float)
        n = self.norm
        return z[:, 0] * n["lat_std"] + n["lat_mean"], wrap_lon(z[:, 1] * n["lon_std"] + n["lon_mean"])

    # -- hooks for the shared training plumbing -----------------------------------------------------------
    def _val_extra(self, net, data, tr, va, out) -> dict:
        lat, lon = self._latlon(out.detach().cpu().numpy())
        return {"val_mean_m": float(haversine_m(self._lat[va], self._lon[va], lat, lon).mean())}

    def _heldout(self, net, data, tr, va):
        z, spread = self._predict_z(net, chunked(lambda ph: data.clean(ph), va).to(self.device))
        lat, lon = self._latlon(z)
        return haversine_m(self._lat[va], self._lon[va], lat, lon), spread

    def _finish(self, data) -> None:
        pass

    def _restore(self, state) -> None:
        self.norm = state["norm"]
        self._setup_norm()

    def _state(self):
        return {**super()._state(), "norm": self.norm}

    # -- prediction ---------------------------------------------------------------------------------------
    def _predict_z(self, net, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Point prediction (dropout off) and its spread in metres over fixed MC-dropout masks (repeatable)."""
        with torch.inference_mode():
            h = net.embed(x)
            z = net.head.out(h)
            s = self.config.mc_samples
            if s <= 0 or self.config.dropout <= 0:
                return z.cpu().numpy(), np.zeros(len(z))
            g = torch.Generator(device="cpu").manual_seed(self.config.seed)
            keep = 1.0 - self.config.dropout
            masks = (torch.rand((s, *h.shape), generator=g) < keep).to(h.dtype).to(h.device) / keep
            zs = net.head.out(h.unsqueeze(0) * masks)  # (S, B, 2)
            d = (zs - zs.mean(0, keepdim=True)).double() * self._scale_m.to(zs.device)
            spread = torch.sqrt((d ** 2).sum(-1).mean(0))
        return z.cpu().numpy(), spread.cpu().numpy()

    def _predict_one(self, query: Query, top_k: int) -> Prediction:
        z, spread = self._predict_z(self.net, self._inputs([query.image()]))
        lat, lon = self._latlon(z)
        r = self.radius_model.radius(float(spread[0]))
        return Prediction(float(lat[0]), float(lon[0]), r, self.radius_model.confidence(r), False, self.spec, [])

    # -- the 256-d layer as an embedding (knn:embed=regression) ------------------------------------------
    def embed_images(self, images) -> np.ndarray:
        """(N, hidden) features of the 256-d layer for decoded photos (types.Query or RGB PIL images)."""
        if self.net is None:
            raise ModelError(f"{self.spec}: embed_images called before fit/load")
        ims = [im.image() if isinstance(im, Query) else im for im in images]
        if not ims:
            return np.zeros((0, self.config.hidden), np.float32)
        with torch.inference_mode():
            out = [self.net.embed(self._inputs(ims[s:s + 32])) for s in range(0, len(ims), 32)]
            return torch.cat(out).cpu().numpy().astype(np.float32)

    def embed_dataset(self, ds) -> np.ndarray:
        """(N, hidden) features of every photo of a dataset (clean views; cached frozen features are reused)."""
        if self.net is None:
            raise ModelError(f"{self.spec}: embed_dataset called before fit/load")
        if self.full:
            return self.embed_images([ds.open(i, max_side=self.trunk.encoder.load_side) for i in range(len(ds))])
        feats = torch.from_numpy(cached_views(self.trunk, ds, 0, self.config.aug_seed, self._aug())[:, 0])
        with torch.inference_mode():
            out = [self.net.embed(feats[s:s + 64].float().to(self.device)) for s in range(0, len(feats), 64)]
            return torch.cat(out).cpu().numpy().astype(np.float32)
