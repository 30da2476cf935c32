"""contrastive: k-NN retrieval over an embedding trained with the reference paper's geographic contrastive loss

    L = 1/(B(B-1)) * sum_{i != j} (f_i . f_j - exp(-Hav(i, j) / tau))^2     (f L2-normalised, tau in metres)

so photos taken close together get similar embeddings whatever their content. A projection head (and optionally
the backbone's last blocks) is trained on the frozen EfficientNet; prediction is the paper's cosine top-k with a
similarity-weighted mean of the neighbours' positions.

Calibration: the gallery's embeddings are in-sample for the trained head (it has seen those photos), so leave-one-out
inside the gallery would be optimistic. Instead each inner fold trains its own head without that fold, embeds its
gallery with it (in-sample, as at run time) and queries the held-out photos (out-of-sample, as at run time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .trunk import AttentionPool, MeanPool
from ...geo import haversine_m
from ...localization.aggregate import aggregate
from ...retrieval.database import CosineIndex
from ...types import Prediction, Query
from ..spec import opt
from .config import TrunkHeadConfig
from .method import TrunkHeadPredictor
from .net import chunked
from .query import contrastive_locate, embed_images
from .state import ContrastiveState


@dataclass
class ContrastiveConfig(TrunkHeadConfig):
    tau_m: float = opt(25.0, gt=0)  # similarity target exp(-distance / tau): 0.37 at tau metres, ~0 beyond 4 tau
    dim: int = opt(128, ge=2)
    hidden: int = opt(512, ge=1)
    pool: str = opt("attention", choices=("attention", "mean"))  # attention (4 heads, as regression) | mean
    heads: int = opt(4, ge=1)
    k: int = opt(3, ge=1, export="model")
    agg: str = opt("mean", choices=("mean", "softmax", "median"), export="model")  # mean (the paper) | softmax | median


class ProjectionHead(nn.Module):
    def __init__(self, channels: int, pool: str, heads: int, hidden: int, dim: int):
        super().__init__()
        self.pool = AttentionPool(channels, heads) if pool == "attention" else MeanPool()
        width = channels * heads if pool == "attention" else channels
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return F.normalize(self.mlp(self.pool(x)), dim=1)

    embed = forward


def geo_contrastive_loss(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's loss for L2-normalised f (B, D) and target similarities exp(-Hav/tau) (B, B); mean over i != j."""
    b = f.shape[0]
    if b < 2:
        return f.sum() * 0.0  # no pairs in a batch of one
    off = ~torch.eye(b, dtype=torch.bool, device=f.device)
    return ((f @ f.T - target) ** 2)[off].sum() / (b * (b - 1))


def similarity_targets(lat, lon, tau_m: float) -> np.ndarray:
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    d = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    return np.exp(-d / tau_m).astype(np.float32)


class ContrastivePredictor(TrunkHeadPredictor):
    name = "contrastive"
    Config = ContrastiveConfig
    State = ContrastiveState
    loss_label = "contrastive loss"

    def _head(self, channels: int) -> nn.Module:
        c = self.config
        return ProjectionHead(channels, c.pool, c.heads, c.hidden, c.dim)

    def _prepare_targets(self, lat, lon) -> None:
        # pairwise targets of the whole training set, indexed per batch (photos, not views: views of one photo
        # are at distance 0, target 1 -- the positive pairs)
        self._target = torch.from_numpy(similarity_targets(lat, lon, self.config.tau_m))

    def _loss(self, out: torch.Tensor, photos) -> torch.Tensor:
        p = torch.as_tensor(np.asarray(photos))
        return geo_contrastive_loss(out, self._target[p][:, p].to(out.device))

    # -- retrieval ----------------------------------------------------------------------------------------
    def _embed_photos(self, net, data, photos) -> np.ndarray:
        return chunked(lambda ph: net(data.clean(ph).to(self.device)), photos).detach().cpu().numpy()

    def _knn_errors(self, gallery_vecs, gallery_idx, query_vecs, query_idx) -> tuple[np.ndarray, np.ndarray]:
        index = CosineIndex(gallery_vecs)
        sims, nn_idx = index.search(query_vecs, self.config.k)
        g_en = self._en[gallery_idx]
        errs, spreads = [], []
        for r, q in enumerate(query_idx):
            c, s = aggregate(g_en[nn_idx[r]], sims[r], self.config.agg)
            errs.append(float(np.linalg.norm(c - self._en[q])))
            spreads.append(s)
        return np.array(errs), np.array(spreads)

    def _val_extra(self, net, data, tr, va, out) -> dict:
        if self.full:  # embedding the whole gallery every epoch costs a full forward pass: skip on the GPU path
            return {}
        e, _ = self._knn_errors(self._embed_photos(net, data, tr), tr, out.detach().cpu().numpy(), va)
        return {"val_knn_mean_m": float(e.mean())}

    def _heldout(self, net, data, tr, va):
        with torch.no_grad():
            return self._knn_errors(self._embed_photos(net, data, tr), tr, self._embed_photos(net, data, va), va)

    def _finish(self, data) -> None:
        with torch.no_grad():
            vectors = self._embed_photos(self.state.net, data, np.arange(len(self.gallery))).astype(np.float32)
        self.state.set_gallery(vectors, self._positions())

    def _positions(self) -> np.ndarray:
        # exact float64 positions (gallery.csv rounds to 1e-9 degrees): a reloaded model predicts identically
        return np.stack([self.gallery["Latitude"], self.gallery["Longitude"]], 1).astype(np.float64)

    def _restore(self, state) -> None:
        pass

    def _predict_ranked_one(self, query: Query, top_k: int, n: int):
        lat, lon, r, conf, idx, sims = contrastive_locate(self.state, self.config, query, max(top_k, n))
        return Prediction(lat, lon, r, conf, False, self.spec, self.neighbours(idx, sims, top_k),
                          chance_25m=self.state.radius_model.chance(r)), idx[:n]

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d) -> None:
        super()._save_files(d)
        np.save(d / "embeddings.npy", self.state.vectors)
        np.save(d / "positions.npy", self.state.positions)

    def _load_files(self, d, state) -> None:
        super()._load_files(d, state)
        self.state.set_gallery(np.load(d / "embeddings.npy"), np.load(d / "positions.npy"))

    def embed_images(self, images) -> np.ndarray:
        """(N, dim) L2-normalised embeddings of decoded photos (types.Query or RGB PIL images)."""
        return embed_images(self.state, self.state.net, images, self.config.dim)
