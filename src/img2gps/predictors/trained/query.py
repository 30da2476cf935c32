"""The trained methods' queries: functions of (state, config, query), the same for a fitted and a loaded model.

regression: MC-dropout point prediction and spread (the paper's net; spread over fixed dropout masks, repeatable);
contrastive: cosine top-k over the gallery embeddings and a similarity-weighted position (localization.aggregate).
"""
from __future__ import annotations

import numpy as np
import torch

from ...geo import wrap_lon
from ...localization.aggregate import aggregate
from ...types import Prediction, Query
from .state import ContrastiveState, RegressionState, TrainedState


def net_inputs(state: TrainedState, images: list) -> torch.Tensor:
    """Decoded RGB PIL images -> the net's input on its device: frozen-part feature maps (cached mode) or
    preprocessed pixels (full fine-tuning)."""
    x = state.trunk.preprocess(images) if state.full else state.trunk.frozen_features(images)
    return x.to(state.device)


def _images(items) -> list:
    return [im.image() if isinstance(im, Query) else im for im in items]


def embed_images(state: TrainedState, net, items, width: int, batch: int = 32) -> np.ndarray:
    """(N, width) float32 features of `net.embed` for decoded photos (types.Query or RGB PIL images), in batches."""
    ims = _images(items)
    if not ims:
        return np.zeros((0, width), np.float32)
    with torch.inference_mode():
        out = [net.embed(net_inputs(state, ims[s:s + batch])) for s in range(0, len(ims), batch)]
        return torch.cat(out).cpu().numpy().astype(np.float32)


# -- regression ---------------------------------------------------------------------------------------------
def latlon(state: RegressionState, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2) z-scores -> latitudes, longitudes (degrees, longitude wrapped to [-180, 180))."""
    z = np.asarray(z, float)
    n = state.norm
    return z[:, 0] * n["lat_std"] + n["lat_mean"], wrap_lon(z[:, 1] * n["lon_std"] + n["lon_mean"])


def regression_z(state: RegressionState, net, x: torch.Tensor, mc_samples: int, dropout: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Net input (B, ...) -> point prediction (B, 2) z-scores (dropout off) and its spread (B,) in metres over
    `mc_samples` fixed dropout masks drawn from `seed` (MC dropout; zeros when mc_samples or dropout is 0)."""
    with torch.inference_mode():
        h = net.embed(x)
        z = net.head.out(h)
        if mc_samples <= 0 or dropout <= 0:
            return z.cpu().numpy(), np.zeros(len(z))
        g = torch.Generator(device="cpu").manual_seed(seed)
        keep = 1.0 - dropout
        masks = (torch.rand((mc_samples, *h.shape), generator=g) < keep).to(h.dtype).to(h.device) / keep
        zs = net.head.out(h.unsqueeze(0) * masks)  # (S, B, 2)
        d = (zs - zs.mean(0, keepdim=True)).double() * state.scale_m.to(zs.device)
        spread = torch.sqrt((d ** 2).sum(-1).mean(0))
    return z.cpu().numpy(), spread.cpu().numpy()


def regression_answer(state: RegressionState, config, query: Query, spec: str) -> Prediction:
    """One query photo -> the regression Prediction (position, calibrated radius from its MC-dropout spread)."""
    z, spread = regression_z(state, state.net, net_inputs(state, [query.image()]), config.mc_samples,
                             config.dropout, config.seed)
    lat, lon = latlon(state, z)
    rm = state.radius_model
    r = rm.radius(float(spread[0]))
    return Prediction(float(lat[0]), float(lon[0]), r, rm.confidence(r), False, spec, [], chance_25m=rm.chance(r))


# -- contrastive --------------------------------------------------------------------------------------------
def contrastive_locate(state: ContrastiveState, config, query: Query, n: int):
    """One query photo -> (lat, lon, radius m, confidence, neighbour idx, sims) with max(k, n) neighbours searched
    and the first k aggregated (config.agg)."""
    with torch.inference_mode():
        q = state.net(net_inputs(state, [query.image()])).cpu().numpy()
    sims, idx = state.index.search(q, max(config.k, n))
    sims, idx = sims[0], idx[0]
    k = min(config.k, len(idx))
    c, spread = aggregate(state.en[idx[:k]], sims[:k], config.agg)
    lat, lon = state.frame.to_latlon(c)
    r = state.radius_model.radius(spread)
    return float(lat), float(lon), r, state.radius_model.confidence(r), idx, sims
