"""Spatial consensus: verified candidates (positions in metres + evidence weights) -> one position.

A plain mean of the verified photos is dragged by a single look-alike 80 m away. Here every candidate votes for
the positions near it (weighted by its evidence); the densest place wins and only the candidates there are
averaged. One wrong look-alike can move the answer only if its evidence outweighs the whole right cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Consensus:
    en: np.ndarray  # (2,) east/north metres
    spread_m: float  # weighted RMS distance of the supporting candidates from the answer
    support: np.ndarray  # indices (into the input) of the candidates in the winning cluster
    weight: float  # total evidence of the winning cluster
    share: float  # winning cluster's share of all evidence (1 = every candidate agrees)


def consensus(en, weights, radius_m: float = 15.0) -> Consensus:
    """Densest weighted cluster of candidate positions, then the weighted mean of its members.

    radius_m is how far apart two photos of one place may be (phone GPS noise plus a few steps): candidates
    within it of the seed vote together.
    """
    en = np.asarray(en, float).reshape(-1, 2)
    w = np.clip(np.asarray(weights, float).reshape(-1), 0.0, None)
    if len(en) == 0:
        raise ValueError("consensus needs at least one candidate")
    if w.sum() <= 0:
        w = np.ones(len(en))
    d = np.linalg.norm(en[:, None, :] - en[None, :, :], axis=-1)
    near = d <= radius_m
    density = near @ w
    # The densest candidate seeds the cluster; among equally dense ones, the one with the most evidence itself.
    seed = int(np.lexsort((-w, -density))[0])
    members = np.flatnonzero(near[seed])
    wm = w[members]
    centre = (en[members] * wm[:, None]).sum(0) / wm.sum()
    # One re-centring step: the cluster is re-drawn around its own mean so the seed's choice does not bias it.
    members2 = np.flatnonzero(np.linalg.norm(en - centre, axis=1) <= radius_m)
    if len(members2) and w[members2].sum() >= wm.sum():
        members, wm = members2, w[members2]
        centre = (en[members] * wm[:, None]).sum(0) / wm.sum()
    spread = float(np.sqrt((wm * ((en[members] - centre) ** 2).sum(1)).sum() / wm.sum()))
    return Consensus(centre, spread, members, float(wm.sum()), float(wm.sum() / w.sum()))
