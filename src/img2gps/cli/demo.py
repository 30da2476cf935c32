"""`img2gps demo`: the main job. Default gallery, seeded held-out queries, cached default model, table + map."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..predictors.registry import DEFAULT_METHOD
from . import app
from .modelling import refuse_uncalibratable
from ..errors import DataError, ModelError
from ..outputs import counted, wrote

# the files the demo writes into its folder (README.md names each) -> their kind (outputs.check_file)
DEMO_FILES = {"demo_predictions.csv": "predictions-csv", "demo_map.png": "plot-png", "demo_map.html": "map-html"}
DOWNLOAD_HINT = (
    "no default gallery found. Pass --data DIR (a folder with images/ + labels.csv), set IMG2GPS_DATA, or make one "
    "from your own geotagged photos with `img2gps data build PHOTOS OUT`. A public campus set: "
    "`--data hf://datasets/rwxyzgao/IMG2GPS_ALL` (needs a network and `pip install huggingface_hub`)."
)


def default_data() -> Path:
    """$IMG2GPS_DATA, else ../shared/data/penn91 (from the current folder or from the source checkout)."""
    env = os.environ.get("IMG2GPS_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for cand in (Path.cwd() / ".." / "shared" / "data" / "penn91", Path.cwd() / "shared" / "data" / "penn91",
                 repo / ".." / "shared" / "data" / "penn91"):
        if (cand / "labels.csv").is_file():
            return cand.resolve()
    raise DataError(DOWNLOAD_HINT)


def holdout_ids(ids: list[str], fraction: float, seed: int) -> list[str]:
    n = len(ids)
    k = max(1, math.ceil(fraction * n))
    if k >= n:
        raise DataError(f"--holdout {fraction} leaves no gallery ({n} photos)")
    pick = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return [ids[i] for i in sorted(pick)]


def cached_model(gallery, spec: str, refit: bool = False):
    """Fit once per (gallery fingerprint, spec, code) and keep it under the user cache dir: a model fitted by other
    code (provenance.code_fingerprint) is never reused."""
    from ..features.cache import user_cache_dir
    from ..predictors.registry import load_model, make_predictor
    from ..provenance import code_fingerprint

    key = f"{gallery.fingerprint()}-{hashlib.sha1(spec.encode()).hexdigest()[:10]}-{code_fingerprint()[:10]}"
    mdir = user_cache_dir() / "models" / key
    if not refit and (mdir / "model.json").exists():
        try:
            return load_model(mdir), mdir, True
        except ModelError as e:  # a damaged cache entry is rebuilt, not fatal
            typer.echo(f"note: cached model unusable ({e}); refitting", err=True)
    p = make_predictor(spec)
    p.fit(gallery)
    p.save(mdir)
    return p, mdir, False


@app.command()
def demo(
    data: Optional[str] = typer.Option(None, "--data", metavar="DATASET", help="Gallery (default: $IMG2GPS_DATA or ../shared/data/penn91)."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", metavar="SPEC", help="Method spec (the default is the best method in the bench)."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of photos held out of the gallery as queries."),
    seed: int = typer.Option(42, "--seed"),
    out: Path = typer.Option(Path("img2gps-demo"), "--out", help="Folder for the map and the predictions CSV."),
    refit: bool = typer.Option(False, "--refit", help="Ignore the cached model and fit again."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let the demo replace files in --out that img2gps did not write."),
):
    """Hold out photos, fit the default method on the rest (cached), locate the held-out photos, print and map."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from ..data import load_dataset
    from ..evaluate import score_queries
    from ..geo import haversine_m, weighted_centre
    from ..plots import photo_panels_map
    spec = method or DEFAULT_METHOD
    src = data or str(default_data())
    from ..outputs import check_file, dataset_inputs, refuse_input

    refuse_input(out, dataset_inputs(src), folder=True)
    for name, kind in DEMO_FILES.items():
        check_file(out / name, dataset_inputs(src), kind, overwrite)
    ds = load_dataset(src)
    if len(ds) < 3:
        raise DataError(f"{src}: a demo needs at least 3 labelled photos (found {len(ds)})")
    queries = holdout_ids(ds.ids, holdout, seed)
    gallery = ds.exclude_ids(queries)
    refuse_uncalibratable(gallery)
    con = Console() if Console().is_terminal else Console(width=150)
    con.print(f"gallery [bold]{src}[/]: {counted(len(gallery), 'photo')}; {counted(len(queries), 'held-out query', 'held-out queries')} (seed {seed}, "
              f"never in the gallery); method [bold]{spec}[/]")
    model, mdir, cached = cached_model(gallery, spec, refit)
    con.print(f"model: {'cached' if cached else 'fitted and saved'} at {mdir}")
    qds = ds.select_ids(queries)
    preds: list = []
    scored = score_queries(model, qds, range(len(qds)), top_k=3, predictions=preds)
    t = Table(title=f"held-out photos located by {spec}")
    for c in ("photo", "true lat, lon", "predicted lat, lon", "error m", "radius m", "inside", "recognised"):
        t.add_column(c, justify="left" if c == "photo" else "right")
    rows = []
    for i, (p, row) in enumerate(zip(preds, scored)):
        err = row["error_m"]
        rows.append({k: row[k] for k in ("image", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_m",
                                         "radius_m", "confidence", "recognised")})
        t.add_row(qds.ids[i][-38:], f"{qds.lat[i]:.6f}, {qds.lon[i]:.6f}", f"{p.latitude:.6f}, {p.longitude:.6f}",
                  f"{err:.1f}", f"{p.radius_m:.0f}", "yes" if err <= p.radius_m else "no",
                  "yes" if p.recognised else "no")
    con.print(t)
    df = pd.DataFrame(rows)
    c = weighted_centre(gallery.lat, gallery.lon)
    base = haversine_m(qds.lat, qds.lon, c[0], c[1])
    con.print(f"mean error {df.error_m.mean():.1f} m, median {df.error_m.median():.1f} m; "
              f"predicting the gallery centre: mean {base.mean():.1f} m, median {np.median(base):.1f} m; "
              f"{(df.error_m <= df.radius_m).sum()}/{len(df)} truths inside the radius")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "demo_predictions.csv", index=False, float_format="%.7f")
    # one panel per held-out photo: ten overlapping circles on one map could not be told apart
    png = photo_panels_map(out / "demo_map.png", df.true_lat, df.true_lon, df.pred_lat, df.pred_lon, df.radius_m,
                           list(qds.ids), f"img2gps demo — {spec}", gallery.lat, gallery.lon)
    written = [out / "demo_predictions.csv", png]
    try:
        from ..maps import write_map_html
    except ImportError:
        write_map_html = None
    if write_map_html is not None:
        html = write_map_html(out / "demo_map.html", preds, gallery=gallery.table,
                              truths=list(zip(qds.lat, qds.lon)), labels=qds.ids, title=f"img2gps demo — {spec}")
        written.append(Path(html) if html else out / "demo_map.html")
    for w in written:
        con.print(wrote(w))
    for line in next_steps(mdir, getattr(model, "query_encoder", None) is not None, out):
        con.print(line, highlight=False, soft_wrap=True)


def next_steps(model_dir: Path, exportable: bool, out: Path = Path("img2gps-demo")) -> list[str]:
    """The commands that use the demo's model, with its real path (quoted for a POSIX shell). The export goes
    into the demo's own output folder `out` (git-ignored), not loose into the working tree (it is ~40 MiB)."""
    import shlex

    m = shlex.quote(str(model_dir))
    lines = ["", "use this model:", f"  img2gps predict PHOTO.jpg --model {m}",
             f"  img2gps serve --model {m}          # then open http://127.0.0.1:8000/"]
    if exportable:
        lines.append(f"  img2gps export --model {m} --onnx {shlex.quote(str(Path(model_dir) / 'encoder.onnx'))}")
    sub = shlex.quote(str(Path(out) / "submission"))
    lines.append(f"  img2gps export --model {m} --format leaderboard --out {sub}   # course leaderboard")
    return lines
