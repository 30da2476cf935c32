"""Figures: predictions vs truth with error lines (paper Fig. 4), error CDF, loss curves. Headless (Agg)."""
from __future__ import annotations

import textwrap

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .geo import LocalFrame  # noqa: E402


def error_lines_map(out: Path, true_lat, true_lon, pred_lat, pred_lon, title: str = "",
                    gallery_lat=None, gallery_lon=None, radius_m=None) -> Path:
    """Truth (green) -> prediction (red) lines in east/north metres around the data's centre (wrap-aware frame).

    radius_m (metres, one per prediction): each prediction's error circle, as on the HTML map. Truths are hollow
    rings drawn under the prediction crosses, so a prediction on top of its truth stays visible; the legend sits
    outside the axes and names every mark (it never hides a point)."""
    lat_all = np.concatenate([np.asarray(true_lat, float), np.asarray(pred_lat, float)])
    lon_all = np.concatenate([np.asarray(true_lon, float), np.asarray(pred_lon, float)])
    frame = LocalFrame.around(lat_all, lon_all)
    t = frame.to_en(true_lat, true_lon)
    p = frame.to_en(pred_lat, pred_lon)
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    if gallery_lat is not None:
        g = frame.to_en(gallery_lat, gallery_lon)
        ax.scatter(g[:, 0], g[:, 1], s=8, c="#bbbbbb", label="gallery photo", zorder=1)
    if radius_m is not None:
        from matplotlib.patches import Circle

        for (x, y), r in zip(p, np.asarray(radius_m, float)):
            ax.add_patch(Circle((x, y), r, fill=True, facecolor="#d62728", alpha=0.06, edgecolor="#d62728", lw=0.8,
                                zorder=1.5))

    for (x0, y0), (x1, y1) in zip(t, p):
        ax.plot([x0, x1], [y0, y1], c="#d62728", lw=0.8, alpha=0.6, zorder=2)
    ax.plot([], [], c="#d62728", lw=0.8, alpha=0.6, label="truth -> prediction")
    ax.scatter(t[:, 0], t[:, 1], s=46, facecolors="none", edgecolors="#2ca02c", linewidths=1.5, label="truth", zorder=3)
    ax.scatter(p[:, 0], p[:, 1], s=22, c="#d62728", marker="x", label="prediction", zorder=4)
    err = np.linalg.norm(t - p, axis=1)
    ax.set_title(f"{title}\nmean {err.mean():.1f} m, median {np.median(err):.1f} m (n={len(err)})", fontsize=10)
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if radius_m is not None:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="#d62728", alpha=0.15, edgecolor="#d62728"))
        labels.append("error radius (~80% hold)")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


def photo_panels_figure(true_lat, true_lon, pred_lat, pred_lon, radius_m, labels, title: str = "",
                        gallery_lat=None, gallery_lon=None, ncols: int = 5):
    """Small multiples: one panel per photo (truth ring, prediction cross, its error circle, the gallery in grey),
    all on the same east/north metre frame and scale, so that no photo's circle hides another's (ten overlapping
    circles on one map cannot be told apart). Returns the matplotlib Figure (one Axes per photo, in input order)."""
    from matplotlib.patches import Circle

    tl, to, pl, po = (np.asarray(x, float) for x in (true_lat, true_lon, pred_lat, pred_lon))
    r = np.asarray(radius_m, float)
    frame = LocalFrame.around(np.concatenate([tl, pl]), np.concatenate([to, po]))
    t, p = frame.to_en(tl, to), frame.to_en(pl, po)
    g = frame.to_en(gallery_lat, gallery_lon) if gallery_lat is not None else np.zeros((0, 2))
    pts = np.concatenate([t, p, g, p + r[:, None], p - r[:, None]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.05 * float(max(hi - lo)) + 5
    n = len(t)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.7 * nrows + 0.4), dpi=110, squeeze=False,
                             sharex=True, sharey=True)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            fig.delaxes(ax)
            continue
        if len(g):
            ax.scatter(g[:, 0], g[:, 1], s=4, c="#bbbbbb", zorder=1)
        ax.add_patch(Circle(tuple(p[k]), r[k], facecolor="#d62728", alpha=0.12, edgecolor="#d62728", lw=1.0,
                            zorder=1.5))
        ax.plot([t[k, 0], p[k, 0]], [t[k, 1], p[k, 1]], c="#d62728", lw=0.9, zorder=2)
        ax.scatter([t[k, 0]], [t[k, 1]], s=40, facecolors="none", edgecolors="#2ca02c", linewidths=1.5, zorder=3)
        ax.scatter([p[k, 0]], [p[k, 1]], s=30, c="#d62728", marker="x", zorder=4)
        err = float(np.linalg.norm(t[k] - p[k]))
        # the whole name, wrapped (a cut name lost its start, e.g. whose photo it is)
        name = "\n".join(textwrap.wrap(f"{k + 1}. {labels[k]}", 30, break_on_hyphens=False)) or f"{k + 1}."
        ax.set_title(f"{name}\nerror {err:.0f} m, radius {r[k]:.0f} m"
                     + ("" if err <= r[k] else " (outside)"), fontsize=7)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} (green ring: truth, red x: prediction, shaded: its error radius; east/north metres)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def photo_panels_map(out: Path, *args, **kw) -> Path:
    """photo_panels_figure saved as a PNG at `out`."""
    fig = photo_panels_figure(*args, **kw)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


def error_cdf(out: Path, errors_by_method: dict[str, np.ndarray], title: str = "Error CDF") -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, e in errors_by_method.items():
        e = np.sort(np.asarray(e, float))
        if len(e):
            ax.step(e, np.arange(1, len(e) + 1) / len(e), where="post", label=name)
    for x in (10, 25, 50):
        ax.axvline(x, c="#999", lw=0.6, ls=":")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("error (m)")
    ax.set_ylabel("fraction of photos")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def loss_curves(out: Path, train_loss, val_loss=None, title: str = "Loss", ylabel: str = "loss") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(np.arange(1, len(train_loss) + 1), train_loss, label="train")
    if val_loss is not None and len(val_loss):
        ax.plot(np.arange(1, len(val_loss) + 1), val_loss, label="validation")
        best = int(np.nanargmin(val_loss))
        ax.axvline(best + 1, c="#999", ls=":", lw=0.8, label=f"best epoch {best + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
