"""Difficulty bins: within an answer kind, Mondrian groups of the evidence the query itself shows, so the radius
widens where the evidence is weak (Boström & Johansson, "Mondrian conformal regressors", COPA 2020).

Signals (each computed the same way for a calibration record and for a real query): `top_sim`, the top global
similarity; `spread10`, the spread (m, RMS distance from their mean) of the positions of the top-10 shortlist; for
verified answers `inliers` of the strongest verified pair and its `parallax` (deg); `sim_drop`, how much less
similar the query is to its top k photos than they are to their own most similar other photo
(localization/knn.KNNState.sim_drop: ~0 at a spot the gallery covers, larger in a hole of the gallery). The VPR uncertainty benchmark
(Zaffar et al., CVPR 2024) found inlier counts and the spread of the top-10 positions strongest; here the signal
is *measured* per kind on the calibration records: the one whose weighted Spearman correlation with the
nonconformity score (error / (spread + offset)) is largest in size. Its values are cut at quantiles into at most
MAX_BINS bins, and neighbouring bins are merged until each holds at least MIN_BIN records, so no radius comes
from fewer than ~30 held-out answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIGNALS = ("top_sim", "spread10", "inliers", "parallax", "sim_drop")
MAX_BINS = 3
MIN_BIN = 30
SHORTLIST_N = 10


def shortlist_spread(score: np.ndarray, en: np.ndarray, n: int = SHORTLIST_N) -> float:
    """RMS distance (m) of the top-n shortlist's positions (en (N, 2)) from their mean; score (N,), -inf = not
    eligible (a held-out photo's own block)."""
    s = np.asarray(score, float)
    idx = np.argsort(-s)[:n]
    return positions_spread(en[idx[np.isfinite(s[idx])]])


def positions_spread(p: np.ndarray) -> float:
    """RMS distance (m) of positions p (M, 2) from their mean; 0 for fewer than two."""
    p = np.asarray(p, float).reshape(-1, 2)
    return float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean())) if len(p) >= 2 else 0.0


def weighted_spearman(x, y, w) -> float:
    """Weighted Pearson correlation of the ranks of x and y (N,); 0 when either is constant."""
    from scipy.stats import rankdata

    rx, ry, w = rankdata(x), rankdata(y), np.asarray(w, float)
    if w.sum() <= 0 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0
    mx, my = np.average(rx, weights=w), np.average(ry, weights=w)
    cov = np.average((rx - mx) * (ry - my), weights=w)
    return float(cov / np.sqrt(np.average((rx - mx) ** 2, weights=w) * np.average((ry - my) ** 2, weights=w)))


def merged_edges(values, max_bins: int = MAX_BINS, min_bin: int = MIN_BIN) -> list[float]:
    """Ascending cut points of values (N,) into at most max_bins quantile bins, neighbouring bins merged until
    each holds at least min_bin values (no cut at all with fewer than 2 x min_bin)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    bins = min(max_bins, len(v) // max(min_bin, 1))
    if bins < 2:
        return []
    edges = sorted(set(float(e) for e in np.quantile(v, np.arange(1, bins) / bins)))
    while edges:
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        if counts.min() >= min_bin:
            break
        i = int(np.argmin(counts))  # merge the smallest bin into its smaller neighbour: drop the edge between
        j = i - 1 if i == len(edges) or (i > 0 and counts[i - 1] <= counts[i + 1]) else i
        edges.pop(j)
    return edges


@dataclass
class DifficultyBins:
    """Per answer kind, the chosen signal and its bin edges; `measured`: per kind, each signal's correlation."""

    kinds: dict = field(default_factory=dict)  # kind -> {"signal": name, "edges": [...]}
    measured: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, kinds, signals: dict, score, weights, max_bins: int = MAX_BINS) -> "DifficultyBins":
        """kinds (N,), signals: name -> (N,) values (NaN where a signal does not apply), score (N,) the
        nonconformity score, weights (N,) mixture weights; at most max_bins bins per kind."""
        k, sc, w = np.asarray(kinds, object), np.asarray(score, float), np.asarray(weights, float)
        out, measured = {}, {}
        for kind in sorted(set(k.tolist())):
            m = k == kind
            rho = {}
            for name, vals in signals.items():
                v = np.asarray(vals, float)[m]
                ok = np.isfinite(v) & np.isfinite(sc[m])
                if ok.sum() >= 2 * MIN_BIN and ok.mean() > 0.95:
                    rho[name] = weighted_spearman(v[ok], sc[m][ok], w[m][ok])
            measured[kind] = rho
            if not rho:
                continue
            best = max(rho, key=lambda s: abs(rho[s]))
            edges = merged_edges(np.asarray(signals[best], float)[m], max_bins)
            if edges:
                out[kind] = {"signal": best, "edges": edges}
        return cls(out, measured)

    def group(self, kind: str, signals: dict) -> str:
        """The Mondrian group of an answer of this kind with these signal values: "kind" or "kind:signal=bI"."""
        b = self.kinds.get(kind)
        if not b:
            return kind
        v = signals.get(b["signal"], np.nan)
        if v is None or not np.isfinite(v):
            return kind
        return f"{kind}:{b['signal']}=b{int(np.searchsorted(b['edges'], float(v), side='right'))}"

    def groups(self, kinds, signals: dict) -> list[str]:
        """group() for N records: kinds (N,), signals name -> (N,)."""
        return [self.group(kd, {s: v[i] for s, v in signals.items()}) for i, kd in enumerate(kinds)]

    def to_dict(self) -> dict:
        return {"kinds": self.kinds, "measured": self.measured}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DifficultyBins":
        return cls(dict((d or {}).get("kinds", {})), dict((d or {}).get("measured", {})))
