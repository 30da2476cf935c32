"""Feature shaping (paper Fig. 5): k-NN (k=1) on the frozen backbone against k-NN on the contrastively trained
embedding, on the same held-out photos of the same folds; side-by-side error-line maps and the paired change."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError


@dataclass
class ShapingConfig:
    before: str = "knn:embed=lite0:k=1"
    after: str = "contrastive:backbone=lite0:k=1"
    protocol: str = "kfold:5"
    same_m: float = 1.0  # a photo whose error changes by less than this counts as unchanged
    n_boot: int = 2000
    level: float = 0.9
    seed: int = 42


def paired(preds: pd.DataFrame, before: str, after: str) -> pd.DataFrame:
    """One row per photo scored by both methods: truth, both predictions, both errors."""
    cols = ["image", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_m"]
    a = preds[preds["spec"] == before][cols].drop_duplicates("image")
    b = preds[preds["spec"] == after][cols].drop_duplicates("image")
    m = a.merge(b[["image", "pred_lat", "pred_lon", "error_m"]], on="image", suffixes=("_before", "_after"))
    if m.empty:
        raise DataError(f"no photo was scored by both {before!r} and {after!r}")
    return m


def change(pairs: pd.DataFrame, cfg: ShapingConfig = ShapingConfig()) -> dict:
    """Measured change (after - before) in mean and median error with paired bootstrap intervals over photos."""
    e0, e1 = pairs["error_m_before"].to_numpy(float), pairs["error_m_after"].to_numpy(float)
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, len(e0), (cfg.n_boot, len(e0)))
    q = [(1 - cfg.level) / 2, 1 - (1 - cfg.level) / 2]
    d = e1 - e0
    return {
        "n": int(len(e0)),
        "before_mean_m": float(e0.mean()), "after_mean_m": float(e1.mean()),
        "before_median_m": float(np.median(e0)), "after_median_m": float(np.median(e1)),
        "mean_change_m": float(d.mean()), "mean_change_ci": np.quantile(d[idx].mean(1), q).tolist(),
        "median_change_m": float(np.median(e1) - np.median(e0)),
        "median_change_ci": np.quantile(np.median(e1[idx], 1) - np.median(e0[idx], 1), q).tolist(),
        "before_acc_25m": float(np.mean(e0 <= 25)), "after_acc_25m": float(np.mean(e1 <= 25)),
        "improved": int(np.sum(d <= -cfg.same_m)), "worse": int(np.sum(d >= cfg.same_m)),
        "unchanged": int(np.sum(np.abs(d) < cfg.same_m)), "level": cfg.level,
    }


def _panel(ax, frame, pairs: pd.DataFrame, which: str, title: str, gallery_en=None) -> None:
    t = frame.to_en(pairs["true_lat"], pairs["true_lon"])
    p = frame.to_en(pairs[f"pred_lat_{which}"], pairs[f"pred_lon_{which}"])
    if gallery_en is not None:
        ax.scatter(gallery_en[:, 0], gallery_en[:, 1], s=5, c="#cccccc", zorder=1)
    for (x0, y0), (x1, y1) in zip(t, p):
        ax.plot([x0, x1], [y0, y1], c="#d62728", lw=0.7, alpha=0.55, zorder=2)
    ax.scatter(t[:, 0], t[:, 1], s=12, c="#2ca02c", label="truth", zorder=3)
    ax.scatter(p[:, 0], p[:, 1], s=12, c="#d62728", marker="x", label="prediction", zorder=4)
    e = pairs[f"error_m_{which}"].to_numpy(float)
    ax.set_title(f"{title}\nmean {e.mean():.1f} m, median {np.median(e):.1f} m", fontsize=9)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel("east (m)")


def plot_shaping(out: Path, pairs: pd.DataFrame, before: str, after: str, ch: dict, gallery=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..geo import LocalFrame

    frame = LocalFrame.around(pairs["true_lat"], pairs["true_lon"])
    gen = frame.to_en(gallery[0], gallery[1]) if gallery is not None else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=90, sharex=True, sharey=True)
    _panel(axes[0], frame, pairs, "before", f"before: {before}", gen)
    _panel(axes[1], frame, pairs, "after", f"after: {after}", gen)
    axes[0].set_ylabel("north (m)")
    axes[1].legend(fontsize=7, loc="best")
    lo, hi = ch["mean_change_ci"]
    fig.suptitle(f"Feature shaping on the same {ch['n']} held-out photos: mean error {ch['mean_change_m']:+.1f} m "
                 f"({100 * ch['level']:.0f}% CI {lo:+.1f} to {hi:+.1f}); {ch['improved']} better, {ch['worse']} worse",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def write_shaping(out_dir: Path, ds, cfg: ShapingConfig = ShapingConfig(), progress: bool = True) -> list[Path]:
    from ..evaluate import run_bench
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result, preds = run_bench(ds, cfg.protocol, [cfg.before, cfg.after], progress=progress)
    pairs = paired(preds, cfg.before, cfg.after)
    ch = change(pairs, cfg)
    png = plot_shaping(out_dir / "shaping.png", pairs, cfg.before, cfg.after, ch, (ds.lat, ds.lon))
    pairs.to_csv(out_dir / "shaping.predictions.csv", index=False, float_format="%.7f")
    res = result["results"]
    rows = [{"method": s, "mean m": res[s]["mean_m"], "median m": res[s]["median_m"], "<=25 m": res[s]["acc_25m"],
             "fit s": res[s]["fit_s"]} for s in (cfg.before, cfg.after, "mean-coordinate") if s in res]
    pct = f"{100 * cfg.level:.0f}%"
    notes = [f"Change (after - before) on the same {ch['n']} photos: mean {ch['mean_change_m']:+.1f} m "
             f"({pct} paired bootstrap interval {ch['mean_change_ci'][0]:+.1f} to {ch['mean_change_ci'][1]:+.1f}), "
             f"median {ch['median_change_m']:+.1f} m ({ch['median_change_ci'][0]:+.1f} to "
             f"{ch['median_change_ci'][1]:+.1f}).",
             f"{ch['improved']} photos better, {ch['worse']} worse, {ch['unchanged']} within {cfg.same_m:g} m.",
             "Both methods see identical folds: each fold's training photos form the gallery (and train the "
             "contrastive head), the fold's held-out photos are the queries."]
    title = f"Feature shaping — {Path(str(ds.name)).name} — {cfg.protocol}"
    return [png, *write_report(out_dir, "shaping", title, rows, notes, images=[png],
                               extra={"data": result["data"], "protocol": cfg.protocol, "n": ch["n"], "change": ch})]
