"""Radii per answer kind from held-out gallery photos (group-conditional split-conformal).

What a user asks about is a photo taken at a gallery spot, one taken anywhere in the gallery's area, or one taken
where the gallery has a hole. Calibration holds out gallery photos in those three ways (localization/holdout.py:
near, area, block). The populations are mixed with stated weights (equal shares by default, each spread evenly
over its held-out photos), and the conformal quantile is taken on that weighted mixture.

Coverage is promised per *answer kind* (e.g. rerank's recognised / scene / fallback, or knn's similarity
band), and within a kind per *difficulty bin* of the evidence the query shows (localization/difficulty.py): the
group is decided by evidence the query itself shows, so the calibration photos of one group are
exchangeable with new queries of that group whether they were taken near or far. This is Mondrian
(group-conditional) conformal prediction (Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World",
2005, ch. 4; Vovk et al., "Mondrian confidence machine", 2003; Boström & Johansson, "Mondrian conformal
regressors", COPA 2020) in its split form (Lei, G'Sell, Rinaldo, Tibshirani & Wasserman, "Distribution-free
predictive inference for regression", JASA 2018), with a normalised nonconformity score error / (scale + offset),
where the scale is evidence the method computes per query (spread of the neighbours' or verified photos'
positions; Papadopoulos, Proedrou, Vovk & Gammerman, "Inductive confidence machines for regression", ECML 2002;
Papadopoulos et al., JAIR 2011). The weighted quantile is the one of Tibshirani, Barber, Candes & Ramdas,
"Conformal prediction under covariate shift" (NeurIPS 2019).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .calibration import RadiusModel
from .chance import fit_chance
from .holdout import HOLDOUTS

SHARES = {h: 1.0 / len(HOLDOUTS) for h in HOLDOUTS}  # default mixture: each hold-out an equal share
# The radii of the retrieval methods (knn, rerank's unrecognised kinds): the block hold-out, a photo where the
# gallery has a hole, takes half the mixture. Their held-out answers in a hole are wrong *and* look like answers at
# a well-covered spot (a look-alike elsewhere), so no signal the query shows moves them into a wider bin; only
# their weight does. Measured on bgu-west knn (bench/results/j28-*.notes.md): equal thirds, kfold-geo:5 coverage
# 57%; block half, 66%, with the kfold:5 median radius 1.16x (penn91 loo 1.19x) the 559cef9 one.
STRESS_SHARES = {"near": 0.25, "area": 0.25, "block": 0.5}
# The chance within 25 m promises for a photo taken at a gallery spot ("self": the photo alone held out) or anywhere
# in the gallery's area ("area"), in equal shares; a method without "self" records uses "area" alone. Neither the
# radius nor any signal the query shows tells a query with a same-spot sibling in the gallery from one without
# (bgu-west knn: kfold:5 queries are ~0.1 more often within 25 m than area hold-outs in every bin of top
# similarity, top-10 spread, neighbour gap or count at the top photo; bench/results/j28-*.notes.md), so the mix of
# the two situations is stated, not inferred.
CHANCE_SHARES = {"self": 0.5, "area": 0.5}
MIN_KIND = 8  # fewer (weighted-effective) calibration answers than this: the kind borrows the pooled radius


def mixture_weights(holdout, shares: dict[str, float] | None = None) -> np.ndarray:
    """Per held-out answer (holdout names, (N,)), its weight in the mixture: shares[h] / #answers of hold-out h.
    Default shares: SHARES (equal). A hold-out missing from the data gives up its share (the
    others are renormalised); a hold-out without a share gets weight 0."""
    h = np.asarray(holdout, object)
    shares = dict(shares) if shares else dict(SHARES)
    counts = {k: int((h == k).sum()) for k in shares}
    total = sum(v for k, v in shares.items() if counts[k])
    w = np.zeros(len(h))
    for k, v in shares.items():
        if counts[k] and total > 0:
            w[h == k] = v / total / counts[k]
    return w


def weighted_quantile(scores, weights, q: float) -> float:
    """Conformal quantile of scores (N,) under weights (N,): the smallest score whose cumulative weight reaches
    q x (total + the largest single weight), the finite-sample correction of weighted split-conformal
    prediction (a new query counts as one more calibration point). inf when that exceeds every score."""
    s, w = np.asarray(scores, float), np.asarray(weights, float)
    ok = np.isfinite(s) & (w > 0)
    s, w = s[ok], w[ok]
    if not len(s):
        return math.inf
    o = np.argsort(s)
    s, w = s[o], w[o]
    need = q * (w.sum() + w.max())
    cum = np.cumsum(w)
    i = int(np.searchsorted(cum, need - 1e-12 * need))
    return float(s[i]) if i < len(s) else math.inf


def fit_radius(errors_m, scale_m, weights, coverage: float = 0.8, offset_m: float = 10.0, floor_m: float = 5.0,
               area_m: float = 100.0) -> RadiusModel:
    """RadiusModel whose scale is the weighted conformal quantile of error / (scale_m + offset_m).

    errors_m, scale_m, weights: (N,) metres, metres, mixture weights. An infinite quantile (too few points for
    the coverage) becomes the largest ratio seen, so the radius stays finite; RadiusModel.n_calibration counts
    the answers with a positive weight.
    """
    e = np.asarray(errors_m, float)
    u = np.zeros_like(e) if scale_m is None else np.asarray(scale_m, float)
    w = np.asarray(weights, float)
    if not len(e):
        return RadiusModel(scale=1.0, offset_m=max(area_m, offset_m), floor_m=floor_m, area_m=area_m,
                           coverage=coverage)
    ratio = e / (u + offset_m)
    s = weighted_quantile(ratio, w, coverage)
    if not math.isfinite(s):
        s = float(np.max(ratio))
    return RadiusModel(scale=s, offset_m=offset_m, floor_m=floor_m, area_m=max(area_m, floor_m), coverage=coverage,
                       n_calibration=int((w > 0).sum()))


@dataclass
class MondrianRadius:
    """One RadiusModel per answer kind, plus a pooled one for kinds with too little calibration.

    `kinds`: kind name -> RadiusModel; `pooled`: the model over all kinds. `radius(kind, scale_m)` picks the
    kind's model (the pooled one for an unknown kind). `summary` records, per kind, the calibration count by
    hold-out and the weighted share of the mixture (what the bench and fit report show).
    """

    kinds: dict[str, RadiusModel] = field(default_factory=dict)
    pooled: RadiusModel = field(default_factory=RadiusModel)
    summary: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, kinds, holdout, errors_m, scale_m=None, coverage: float = 0.8, offset_m: float = 10.0,
            floor_m: float = 5.0, area_m: float = 100.0, shares: dict[str, float] | None = None,
            offsets: dict[str, float] | None = None) -> "MondrianRadius":
        """kinds, holdout (hold-out names, e.g. "near"/"area"/"block"), errors_m, scale_m: (N,) per held-out answer.
        shares: hold-out -> mixture share (mixture_weights). offsets: per-kind offset_m overriding offset_m
        (a metre-level kind keeps a small offset)."""
        k = np.asarray(kinds, object)
        h = np.asarray(holdout, object)
        e = np.asarray(errors_m, float)
        u = np.zeros_like(e) if scale_m is None else np.asarray(scale_m, float)
        w = mixture_weights(h, shares)
        pooled = fit_radius(e, u, w, coverage, offset_m, floor_m, area_m)
        models, summary = {}, {}
        for kind in sorted(set(k.tolist())):
            m = k == kind
            off = (offsets or {}).get(kind.split(":")[0], offset_m)  # a difficulty bin keeps its kind's offset
            n_eff = w[m].sum() ** 2 / max((w[m] ** 2).sum(), 1e-300)
            summary[kind] = {**{str(x): int((m & (h == x)).sum()) for x in sorted(set(h.tolist()))},
                             "share": float(w[m].sum() / w.sum()) if w.sum() else 0.0}
            if n_eff >= MIN_KIND:
                models[kind] = fit_radius(e[m], u[m], w[m], coverage, off, floor_m, area_m)
            else:  # too few: a wider model (the pooled one, scaled to this kind's offset) stands in
                models[kind] = RadiusModel(scale=pooled.scale, offset_m=max(off, pooled.offset_m), floor_m=floor_m,
                                           area_m=pooled.area_m, coverage=coverage, n_calibration=int(m.sum()))
            summary[kind]["scale"] = models[kind].scale
        # the chance within 25 m, one curve over the radius for every kind (localization/chance.py), fitted on
        # the CHANCE_SHARES hold-outs (all of them, in the radius mixture, when those are missing)
        radii = np.array([models[kind].radius(float(x)) for kind, x in zip(k.tolist(), u)])
        a = np.isin(h, list(CHANCE_SHARES))
        wc = mixture_weights(h[a], CHANCE_SHARES) if a.sum() >= 10 else w
        curve = fit_chance(radii, e, wc) if a.sum() < 10 else fit_chance(radii[a], e[a], wc)
        models = {kind: m.with_chance(curve) for kind, m in models.items()}
        return cls(models, pooled.with_chance(curve), summary)

    def model(self, kind: str) -> RadiusModel:
        return self.kinds.get(kind, self.pooled)

    def radius(self, kind: str, scale_m: float = 0.0) -> float:
        return self.model(kind).radius(scale_m)

    def confidence(self, kind: str, radius_m: float) -> float:
        return self.model(kind).confidence(radius_m)

    def chance(self, kind: str, radius_m: float) -> float | None:
        return self.model(kind).chance(radius_m)

    def to_dict(self) -> dict:
        return {"kinds": {k: m.to_dict() for k, m in self.kinds.items()}, "pooled": self.pooled.to_dict(),
                "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict | None) -> "MondrianRadius":
        if not d:
            return cls()
        if "kinds" not in d:  # a model saved with one RadiusModel: it serves every kind
            return cls({}, RadiusModel.from_dict(d))
        return cls({k: RadiusModel.from_dict(v) for k, v in d.get("kinds", {}).items()},
                   RadiusModel.from_dict(d.get("pooled")), d.get("summary", {}))


def bands(values, edges) -> np.ndarray:
    """Evidence band names "b0".."bK" of values (N,) against ascending edges (K,): a continuous evidence
    (e.g. knn's top similarity) becomes Mondrian groups."""
    return np.array([f"b{int(i)}" for i in np.searchsorted(np.asarray(edges, float), np.asarray(values, float))],
                    dtype=object)
