"""Position averaging: neighbour positions and scores -> one position and its spread (k-NN, contrastive, rerank's
fallback)."""
from __future__ import annotations

import numpy as np

from ..geo import weighted_median_en


def aggregate(en: np.ndarray, sims: np.ndarray, how: str = "mean", temperature: float = 0.05) -> tuple[np.ndarray, float]:
    """Neighbour positions (k, 2 metres) + similarities -> (position, spread in metres).

    mean: similarity-weighted mean (the paper); softmax: weights exp(sim/T); median: weighted geometric median.
    """
    sims = np.asarray(sims, float)
    if how == "softmax":
        w = np.exp((sims - sims.max()) / temperature)
    else:
        w = np.clip(sims, 1e-6, None)
    if how == "median":
        c = weighted_median_en(en, w)
    else:
        c = (en * w[:, None]).sum(0) / w.sum()
    spread = float(np.sqrt((w * ((en - c) ** 2).sum(1)).sum() / w.sum()))
    return c, spread
