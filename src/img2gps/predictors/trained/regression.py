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

from .trunk import AttentionPool, cached_views
from ...geo import EARTH_RADIUS_M, haversine_m, latlon_sd, lon_delta, mean_lon
from ...errors import ModelError
from ...types import Prediction, Query
from ..spec import opt
from .config import TrunkHeadConfig
from .method import TrunkHeadPredictor
from .net import chunked
from .query import embed_images, latlon, regression_answer, regression_z
from .state import RegressionState

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
    State = RegressionState

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
        n = {"lat_mean": float(np.mean(lat)), "lat_std": lat_sd, "lon_mean": mean_lon(lon), "lon_std": lon_sd}
        self.state.norm = n
        z = np.stack([(lat - n["lat_mean"]) / n["lat_std"], lon_delta(lon, n["lon_mean"]) / n["lon_std"]], 1)
        self._z = torch.tensor(z, dtype=torch.float32)

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
            return metres_loss(dz * self.state.scale_m.to(out.device), c.huber_m).float()
        mean, std = self.state.mean.to(out.device), self.state.std.to(out.device)
        p, t = out.double() * std + mean, target.double() * std + mean
        return haversine_torch(p[:, 0], p[:, 1], t[:, 0], t[:, 1]).mean().float()

    # -- hooks for the shared training plumbing -----------------------------------------------------------
    def _val_extra(self, net, data, tr, va, out) -> dict:
        lat, lon = latlon(self.state, out.detach().cpu().numpy())
        return {"val_mean_m": float(haversine_m(self._lat[va], self._lon[va], lat, lon).mean())}

    def _heldout(self, net, data, tr, va):
        c = self.config
        z, spread = regression_z(self.state, net, chunked(lambda ph: data.clean(ph), va).to(self.device),
                                 c.mc_samples, c.dropout, c.seed)
        lat, lon = latlon(self.state, z)
        return haversine_m(self._lat[va], self._lon[va], lat, lon), spread

    def _finish(self, data) -> None:
        pass

    def _restore(self, state) -> None:
        self.state.norm = state["norm"]

    def _state(self):
        return {**super()._state(), "norm": self.state.norm}

    # -- prediction (trained/query.py) ---------------------------------------------------------------------
    def _predict_one(self, query: Query, top_k: int) -> Prediction:
        return regression_answer(self.state, self.config, query, self.spec)

    # -- the 256-d layer as an embedding (knn:embed=regression) ------------------------------------------
    def embed_images(self, images) -> np.ndarray:
        """(N, hidden) features of the 256-d layer for decoded photos (types.Query or RGB PIL images)."""
        if self.state is None or self.state.net is None:
            raise ModelError(f"{self.spec}: embed_images called before fit/load")
        return embed_images(self.state, self.state.net, images, self.config.hidden)

    def embed_dataset(self, ds) -> np.ndarray:
        """(N, hidden) features of every photo of a dataset (clean views; cached frozen features are reused)."""
        st = self.state
        if st is None or st.net is None:
            raise ModelError(f"{self.spec}: embed_dataset called before fit/load")
        if st.full:
            return self.embed_images([ds.open(i, max_side=self.trunk.encoder.load_side) for i in range(len(ds))])
        feats = torch.from_numpy(cached_views(self.trunk, ds, 0, self.config.aug_seed, self._aug())[:, 0])
        with torch.inference_mode():
            out = [st.net.embed(feats[s:s + 64].float().to(self.device)) for s in range(0, len(feats), 64)]
            return torch.cat(out).cpu().numpy().astype(np.float32)
