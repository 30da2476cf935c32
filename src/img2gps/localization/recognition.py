"""Recognition at the spot: the rules that call an answer recognised, chosen on a gallery's own calibration records.

Two rules, both measured by their **share** (weighted fraction of held-out calibration answers they call
recognised) and their **precision** (weighted fraction of those within PRECISE_M of the truth), and chosen per
gallery as the rule with the largest share whose precision is at least PRECISION (never by hand):

- **A copy of a gallery photo** (`copy_sim`): the query's top global-embedding similarity is at least copy_sim.
  The answer is that gallery photo's position: the query *is* that photo (byte-identical, re-encoded, resized).
  The threshold is the lowest similarity above which, on the records held out alone ("self"), answering at the
  top photo is precise and no worse on average than the method's own answer; it never exceeds COPY_SIM_MAX, so a
  copy is always recognised (lite0 similarity of a JPEG q85 re-encode to its original: penn91 min 0.998, median
  0.9996; the most similar *other* penn91 photo: P99 0.855).
- **At a gallery camera's spot** (rerank, `max_parallax_deg`, `min_inliers`): the strongest verified pair is a
  near pure rotation, or has so little parallax that the records put it within PRECISE_M
  (localization/answers.at_gallery_spot); the grid below is searched.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PRECISE_M = 25.0  # a recognised answer is precise when within this many metres of the truth (VPR convention)
PRECISION = 0.9  # the least precision a rule may have
COPY_SIM_MAX = 0.99  # a query at least this similar to a gallery photo is a copy of it, whatever the records say
# degrees. Up to 10: on penn91's records the precision *rises* with the parallax allowed (photos held out alone:
# 1 deg 82%, 5 deg 93%, 10 deg 94% within 25 m, 15+ inliers), because a pair verified with that many inliers and a
# few degrees of parallax still stood metres apart; bgu-west: 96-97% throughout (bench/results/j28-*.notes.md).
PARALLAX_GRID = (0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
INLIER_GRID = (15, 30, 60, 100, 200)
COPY_FLOOR = 0.9  # below this top similarity a query is not considered a copy (its top photo is not checked)
MIN_RECORDS = 10  # fewer (self) records than this: the defaults stand


@dataclass
class RecognitionRule:
    """The calibrated rules (see module doc); `measured`: per candidate rule, its share and precision."""

    max_parallax_deg: float = 1.0
    min_inliers: int = 30
    copy_sim: float = COPY_SIM_MAX
    measured: dict | None = None

    def is_copy(self, top_sim: float) -> bool:
        """True when a query whose top global similarity is top_sim is a copy of that gallery photo."""
        return bool(np.isfinite(top_sim) and top_sim >= self.copy_sim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, **defaults) -> "RecognitionRule":
        return cls(**{**defaults, **(d or {})})


def share_precision(mask, errors_m, weights) -> tuple[float, float | None]:
    """(weighted share of records in mask, weighted fraction of those within PRECISE_M; None when mask is empty)."""
    m, e, w = np.asarray(mask, bool), np.asarray(errors_m, float), np.asarray(weights, float)
    if not len(w) or w.sum() <= 0:
        return 0.0, None
    share = float(w[m].sum() / w.sum())
    return share, (float(w[m & (e <= PRECISE_M)].sum() / w[m].sum()) if w[m].sum() > 0 else None)


def choose_copy_sim(top_sim, top_err_m, own_err_m, weights=None) -> tuple[float, dict]:
    """Copy threshold from records held out alone: top_sim (N,) the top global similarity, top_err_m (N,) the
    error of answering at that photo, own_err_m (N,) the method's own error. Returns (threshold, measurement)."""
    s, te, oe = (np.asarray(x, float) for x in (top_sim, top_err_m, own_err_m))
    w = np.ones(len(s)) if weights is None else np.asarray(weights, float)
    best = COPY_SIM_MAX
    if len(s) >= MIN_RECORDS:
        for t in np.sort(np.unique(s[(s < COPY_SIM_MAX) & (s >= COPY_FLOOR)]))[::-1]:  # lowering the threshold one record at a time
            m = s >= t
            _, prec = share_precision(m, te, w)
            if prec is None or prec < PRECISION or (w[m] * te[m]).sum() > (w[m] * oe[m]).sum():
                break
            best = float(t)
    share, prec = share_precision(s >= best, te, w)
    return best, {"copy_sim": best, "share": share, "precision": prec, "n": int(len(s))}


def choose_spot_rule(parallax_deg, inliers, errors_m, weights, default: tuple[float, int] = (1.0, 30)
                     ) -> tuple[float, int, list[dict]]:
    """(max parallax deg, min inliers, table) for verified records: parallax (N,) with the strongest verified
    photo (inf = none), its inliers (N,), the answer's error (N,) and mixture weight (N,) (unverified records:
    parallax inf). The rule with the largest share among those with precision >= PRECISION; the default when
    none qualifies or there are too few records."""
    p, n, e, w = (np.asarray(x, float) for x in (parallax_deg, inliers, errors_m, weights))
    table = []
    for mp in PARALLAX_GRID:
        for mi in INLIER_GRID:
            share, prec = share_precision(np.isfinite(p) & (p <= mp) & (n >= mi), e, w)
            table.append({"max_parallax_deg": mp, "min_inliers": mi, "share": share, "precision": prec})
    ok = [r for r in table if r["precision"] is not None and r["precision"] >= PRECISION]
    if len(p) < MIN_RECORDS or not ok:
        return float(default[0]), int(default[1]), table
    best = max(ok, key=lambda r: (round(r["share"], 9), r["precision"], -r["max_parallax_deg"], r["min_inliers"]))
    return float(best["max_parallax_deg"]), int(best["min_inliers"]), table
