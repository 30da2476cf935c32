"""Learning curve (paper Table 4): error against gallery size, from a bench run with --fractions.

The extrapolation is the simplest model the few points support: error = a + b * ln(n), fitted on the per-fraction
mean (or median) error. Its uncertainty comes from a paired bootstrap over the held-out photos (the same resampled
photos at every fraction). That interval covers which photos were queried, not which gallery photos a fraction kept
(one seeded subsample) nor whether new photos resemble the old ones, so it is a lower bound on the uncertainty.
Predictions are never made beyond MAX_EXTRAPOLATION times the largest measured gallery.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

MAX_EXTRAPOLATION = 2.0  # beyond twice the data, a two-parameter fit on 3-4 points says nothing


@dataclass
class CurveConfig:
    metric: str = "mean"  # mean | median of the per-photo error (the paper's Table 4 reports the mean)
    extrapolate: float = 2.0  # predict at this multiple of the largest gallery measured (1 < x <= 2)
    n_boot: int = 2000
    level: float = 0.9  # central bootstrap interval
    seed: int = 42

    def __post_init__(self):
        if self.metric not in ("mean", "median"):
            raise DataError(f"learning curve: metric must be mean or median, not {self.metric!r}")
        if not 1.0 < self.extrapolate <= MAX_EXTRAPOLATION:
            raise DataError(f"learning curve: extrapolate must be in (1, {MAX_EXTRAPOLATION:g}] x the largest gallery "
                            f"(got {self.extrapolate:g}); a fit on a few points says nothing further out")


def gallery_sizes(result: dict) -> tuple[dict[str, float], bool]:
    """fraction key -> mean training-gallery size per fold. run_bench records it; older JSONs get an estimate
    from the protocol (each photo is held out once, so folds hold n*(F-1) training photos in all). Returns
    (sizes, exact); for a split protocol with no record the sizes are the fractions themselves (relative)."""
    bf = result.get("by_fraction") or {}
    if bf and all("gallery_n_mean" in b for b in bf.values()):
        return {k: float(b["gallery_n_mean"]) for k, b in bf.items()}, True
    n, folds = result.get("n"), result.get("n_folds")
    if n and folds and folds > 1:
        full = (n * (folds - 1) - result.get("train_dropped_by_buffer", 0)) / folds
        return {k: float(k) * full for k in bf}, False
    return {k: float(k) for k in bf}, False


def _slopes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares a, b of y = a + b x for each row of y (x shared): vectorised over bootstrap replicates."""
    xc = x - x.mean()
    b = (y - y.mean(-1, keepdims=True)) @ xc / (xc @ xc)
    return y.mean(-1) - b * x.mean(), b


def fit_curves(result: dict, preds: pd.DataFrame | None, cfg: CurveConfig = CurveConfig()) -> dict:
    """Per method: measured error per gallery size, the log-linear fit, change per doubling and the prediction at
    cfg.extrapolate x the largest gallery, each with a bootstrap interval when per-photo predictions are given."""
    bf = result.get("by_fraction")
    if not bf or len(bf) < 2:
        raise DataError("learning curve: the bench result has no by_fraction block with >= 2 fractions "
                        "(run `img2gps bench ... --fractions 0.25,0.5,1.0`)")
    sizes, exact = gallery_sizes(result)
    keys = sorted(bf, key=float)
    x = np.log(np.array([sizes[k] for k in keys]))
    target = float(np.exp(x.max()) * cfg.extrapolate)
    agg = np.mean if cfg.metric == "mean" else np.median
    lo_q, hi_q = (1 - cfg.level) / 2, 1 - (1 - cfg.level) / 2
    rng = np.random.default_rng(cfg.seed)
    specs = list(dict.fromkeys(s for k in keys for s in bf[k]["results"]))
    out = {"metric": f"{cfg.metric}_m", "sizes_exact": exact, "fractions": [float(k) for k in keys],
           "gallery_n": [sizes[k] for k in keys], "target_n": target, "level": cfg.level, "methods": {}}
    for spec in specs:
        if not all(spec in bf[k]["results"] for k in keys):
            continue
        y = np.array([bf[k]["results"][spec][f"{cfg.metric}_m"] for k in keys], float)
        a, b = _slopes(x, y[None])
        m = {"error": y.tolist(), "a": float(a[0]), "b": float(b[0]), "per_doubling_m": float(b[0] * np.log(2)),
             "predicted_m": max(0.0, float(a[0] + b[0] * np.log(target))), "n_photos": None}  # errors are >= 0
        errs = _paired_errors(preds, spec, keys) if preds is not None and len(preds) else None
        if errs is not None:
            idx = rng.integers(0, errs.shape[0], (cfg.n_boot, errs.shape[0]))
            boot = agg(errs[idx], axis=1)  # (B, fractions)
            ba, bb = _slopes(x, boot)
            pred = np.clip(ba + bb * np.log(target), 0, None)
            m.update(n_photos=int(errs.shape[0]),
                     error_ci=np.quantile(boot, [lo_q, hi_q], axis=0).T.tolist(),
                     per_doubling_ci=(np.quantile(bb, [lo_q, hi_q]) * np.log(2)).tolist(),
                     predicted_ci=np.quantile(pred, [lo_q, hi_q]).tolist(),
                     _band=(ba, bb))
        out["methods"][spec] = m
    return out


def _paired_errors(preds: pd.DataFrame, spec: str, keys: list[str]) -> np.ndarray | None:
    """(photos, fractions) errors of the photos scored at every fraction (they are, in one bench run)."""
    p = preds[preds["spec"] == spec]
    if p.empty or "fraction" not in p:
        return None
    wide = p.pivot_table(index="image", columns="fraction", values="error_m", aggfunc="mean")
    cols = []
    for k in keys:
        hit = [c for c in wide.columns if abs(float(c) - float(k)) < 1e-9]
        if not hit:
            return None
        cols.append(hit[0])
    e = wide[cols].dropna().to_numpy(float)
    return e if len(e) >= 3 else None


def verdict(spec: str, m: dict, metric: str, level: float, target: float) -> str:
    """One sentence a user can act on, saying how sure it is."""
    d = m["per_doubling_m"]
    ci = m.get("per_doubling_ci")
    pct = f"{100 * level:.0f}%"
    if ci is None:
        return (f"{spec}: {metric} error changes by {d:+.1f} m per doubling of the gallery (no per-photo "
                f"predictions, so no interval)")
    s = (f"{spec}: {metric} error changes by {d:+.1f} m per doubling of the gallery ({pct} interval {ci[0]:+.1f} "
         f"to {ci[1]:+.1f} m); at {target:.0f} photos the fit gives {m['predicted_m']:.1f} m "
         f"({m['predicted_ci'][0]:.1f} to {m['predicted_ci'][1]:.1f})")
    if ci[1] < 0:
        return s + ": more photos of this kind measurably help."
    if ci[0] > 0:
        return s + ": error grew with more photos, so something other than gallery size limits this method."
    return s + ": the interval includes no change, so these data cannot tell whether more photos help."


def plot_curves(out: Path, fit: dict, title: str = "Learning curve") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array(fit["gallery_n"])
    grid = np.geomspace(n.min(), fit["target_n"], 40)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    for i, (spec, m) in enumerate(fit["methods"].items()):
        col = f"C{i}"
        y = np.array(m["error"])
        if "error_ci" in m:
            ci = np.array(m["error_ci"])
            ax.errorbar(n, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o", c=col, capsize=3, label=spec)
            ba, bb = m["_band"]
            band = np.clip(ba[:, None] + bb[:, None] * np.log(grid)[None], 0, None)
            q = (1 - fit["level"]) / 2
            ax.fill_between(grid, *np.quantile(band, [q, 1 - q], axis=0), color=col, alpha=0.12, lw=0)
        else:
            ax.plot(n, y, "o", c=col, label=spec)
        ax.plot(grid, np.clip(m["a"] + m["b"] * np.log(grid), 0, None), "--", c=col, lw=1)
    ax.axvspan(n.max(), fit["target_n"], color="#999", alpha=0.08, lw=0)
    ax.text(n.max(), ax.get_ylim()[1], " extrapolated", va="top", fontsize=7, color="#666")
    ax.set_xscale("log")
    ax.set_xticks(np.r_[n, fit["target_n"]])
    ax.set_xticklabels([f"{v:.0f}" if fit["sizes_exact"] or v > 2 else f"{v:g}" for v in np.r_[n, fit["target_n"]]])
    ax.minorticks_off()
    ax.set_xlabel("gallery size (photos per fold)" if fit["sizes_exact"] or n.max() > 2 else "gallery fraction")
    ax.set_ylabel(f"{fit['metric'].replace('_m', '')} error (m)")
    ax.set_title(f"{title}\nfit: error = a + b ln(n), {100 * fit['level']:.0f}% bootstrap band over photos",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def table_rows(fit: dict) -> list[dict]:
    rows = []
    for spec, m in fit["methods"].items():
        r = {"method": spec}
        for n, e, i in zip(fit["gallery_n"], m["error"], range(len(m["error"]))):
            ci = m.get("error_ci")
            r[f"n={n:.0f}"] = f"{e:.1f}" + (f" ({ci[i][0]:.1f}-{ci[i][1]:.1f})" if ci else "")
        pd_ci = m.get("per_doubling_ci")
        r["per doubling (m)"] = f"{m['per_doubling_m']:+.1f}" + (f" ({pd_ci[0]:+.1f} to {pd_ci[1]:+.1f})" if pd_ci else "")
        p_ci = m.get("predicted_ci")
        r[f"fit at n={fit['target_n']:.0f}"] = (f"{m['predicted_m']:.1f}"
                                               + (f" ({p_ci[0]:.1f} to {p_ci[1]:.1f})" if p_ci else ""))
        rows.append(r)
    return rows


def public(fit: dict) -> dict:
    """The fit without the bootstrap arrays (for JSON)."""
    return {**fit, "methods": {s: {k: v for k, v in m.items() if not k.startswith("_")} for s, m in fit["methods"].items()}}


def write_learning_curve(out_dir: Path, result: dict, preds: pd.DataFrame | None, cfg: CurveConfig = CurveConfig(),
                         stem: str = "learning_curve") -> list[Path]:
    """PNG + markdown + JSON of the learning curve of one bench result."""
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fit = fit_curves(result, preds, cfg)
    title = f"Learning curve — {Path(str(result.get('data', ''))).name} — {result.get('protocol', '')}"
    png = plot_curves(out_dir / f"{stem}.png", fit, title)
    notes = [verdict(s, m, cfg.metric, cfg.level, fit["target_n"]) for s, m in fit["methods"].items()]
    notes.append("Cells: measured error (bootstrap interval over held-out photos). Smaller galleries are seeded, "
                 "spatially stratified subsamples of each fold's training photos: the curve measures photo density "
                 "over the same area, not a larger area.")
    notes.append("The interval covers the choice of query photos only (one gallery subsample per fraction); the fit "
                 f"is not extended beyond {MAX_EXTRAPOLATION:g}x the largest gallery measured, and a fitted error below "
                 "0 m is shown as 0.")
    if not fit["sizes_exact"]:
        notes.append("Gallery sizes are estimated from the protocol (the bench JSON did not record them).")
    rows = table_rows(fit)
    return [png, *write_report(out_dir, stem, title, rows, notes, extra={"fit": public(fit)}, images=[png])]


def bench_learning_curve(json_path: Path, result: dict, preds: pd.DataFrame | None,
                         cfg: CurveConfig = CurveConfig()) -> tuple[Path, list[str]]:
    """For `img2gps bench --fractions`: OUT.learning_curve.png beside the bench JSON, and one verdict per method."""
    fit = fit_curves(result, preds, cfg)
    stem = Path(json_path).with_suffix("")
    title = f"Learning curve — {Path(str(result.get('data', ''))).name} — {result.get('protocol', '')}"
    png = plot_curves(Path(f"{stem}.learning_curve.png"), fit, title)
    return png, [verdict(s, m, cfg.metric, cfg.level, fit["target_n"]) for s, m in fit["methods"].items()]
