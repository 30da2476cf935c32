"""fit, bench and eval: the commands that train and score methods."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..predictors.registry import DEFAULT_METHOD
from . import app


from ..errors import DataError
from ..outputs import counted, wrote


METHODS_HELP = """\b
Methods (fit --method SPEC, bench --methods SPEC,SPEC; options are name[:key=value...], e.g. knn:embed=lite0:k=3):
  mean-coordinate  the gallery centre: the floor every method must beat
  knn              cosine k-NN over global embeddings [:embed=lite0|lite1|lite2|dinov2s-imgfocus|regression]
                   [:k=3] [:agg=mean|softmax|median]
  regression       the paper's EfficientNet + attention regressor [:backbone=lite0] [:loss=mse|metres]
  contrastive      k-NN over an embedding trained with the paper's distance loss [:tau_m=25] [:k=3]
  rerank           shortlist, then geometric verification (RootSIFT + MAGSAC) and spatial consensus
                   [:topn=10] [:min_inliers=15] [:pose=auto|on|off]  (the default)"""

PROTOCOLS_HELP = """\b
Protocols (--protocol):
  loo              leave-one-out: each photo is located by a model fitted on all the others
  kfold:K          K random folds (seed 42), e.g. kfold:5
  kfold-geo:K[:R]  K spatial folds (k-means on metres); training photos within R m (default 10) of a
                   validation photo are dropped: the honest score for photos taken away from the gallery
  knndm:K          K folds whose held-out photos stand as far from the rest as points spread over the
                   gallery's area do (kNNDM, Linnenbrink et al. 2024): photos taken anywhere in the area
  split:DIR        DIR/train.csv and DIR/val.csv, as written by `img2gps data split`"""


def read_name_list(value: str | None) -> list[str]:
    """--exclude: a comma-separated list, or a file with one name per line (or a CSV with an image column)."""
    if not value:
        return []
    p = Path(value)
    if p.is_file():
        if p.suffix.lower() == ".csv":
            from ..data.sources import read_labels_csv
            import pandas as pd

            try:
                return read_labels_csv(p)["image"].astype(str).tolist()
            except DataError:
                return pd.read_csv(p).iloc[:, 0].astype(str).tolist()
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [x.strip() for x in value.split(",") if x.strip()]


def _refuse_existing(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    from ..outputs import refuse_input

    refuse_input(out, inputs, folder=True, inside_ok=True)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / "model.json").exists():
            raise DataError(f"{out}: folder is not empty and is not an img2gps model; choose another --out")
        if not overwrite:
            raise DataError(f"{out}: a model already exists there; pass --overwrite to replace it")


@app.command(epilog=METHODS_HELP)
def fit(
    data: str = typer.Option(..., "--data", metavar="DATASET", help="Dataset: folder with images/ + labels.csv, or a .parquet / hf:// path."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", metavar="SPEC", help="Method spec (listed below), e.g. knn:embed=lite0:k=3."),
    out: Path = typer.Option(..., "--out", metavar="MODEL_DIR", help="Model directory to write."),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="Images to leave out of the gallery: a,b,c or a file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model at --out."),
    workers: int = typer.Option(0, "--workers", help="Processes (or local Ray CPUs) for decode/embedding/SIFT; 0 = all cores."),
    engine: str = typer.Option("pool", "--engine", help="pool (process pool on this machine) | local (one process) | ray (Ray Data; RAY_ADDRESS for a cluster)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines (photos/s, ETA) on stderr."),
):
    """Fit a method on a dataset and save the model directory (model.json + the method's files + thumbnails)."""
    from ..data import load_dataset
    from ..modeldir import model_lock
    from ..outputs import dataset_inputs
    from ..predictors.registry import DEFAULT_METHOD, make_predictor

    spec = method or DEFAULT_METHOD
    with model_lock(out, "fit", wait_s=0):  # a second fit into this folder refuses at once, in one line
        _refuse_existing(out, overwrite, dataset_inputs(data) + dataset_inputs(exclude or ""))
        predictor = make_predictor(spec)  # validate the spec and its encoder before any slow work
        check_encoders(predictor)
        ds = load_dataset(data)
        report_skipped(ds)
        names = read_name_list(exclude)
        if names:
            unknown = [n for n in names if n not in set(ds.ids)]
            if unknown:
                typer.echo(f"warning: {counted(len(unknown), '--exclude name')} not in the dataset, e.g. {unknown[0]}", err=True)
            ds = ds.exclude_ids(names)
        refuse_uncalibratable(ds)
        predictor.indexing = indexing_config(workers, engine, quiet)
        t0 = time.perf_counter()
        predictor.fit(ds)
        fit_s = time.perf_counter() - t0
        predictor.metrics = dict(predictor.metrics, fit_s=round(fit_s, 2), excluded=len(names),
                                 **indexing_metrics(predictor))
        predictor.save(out)
        typer.echo(f"fitted {spec} on {counted(len(ds), 'photo')} in {fit_s:.1f} s -> {out}")
        echo_areas(ds)
        report = predictor.fit_report()
        if report.get("note"):
            typer.echo(report["note"])
        index = report.get("index")
        if index:
            typer.echo(f"retrieval index: {index['kind']} over {index['n']} vectors, recall@10 vs exact search "
                       f"{index['recall_at_10_vs_exact']:.3f} (sampled)")


def echo_areas(ds) -> None:
    """The gallery's areas (area.describe), one line each: each area has its own metric frame and calibration."""
    from ..area import describe, split_areas

    for line in describe(split_areas(ds.lat, ds.lon)):
        typer.echo(line)


def check_encoders(predictor) -> None:
    """Load the pretrained encoders a predictor's config names (`embed`, `backbone`): ModelError now, naming the
    offline equivalent, rather than after earlier methods or folds have been fitted."""
    from ..features.encoders import ENCODERS, get_encoder

    for field in ("embed", "backbone"):
        name = getattr(predictor.config, field, None)
        if isinstance(name, str) and name in ENCODERS:
            get_encoder(name).load()


def refuse_uncalibratable(ds) -> None:
    """DataError when the gallery is too small or too uniform for a calibrated radius (a radius that promises
    ~80% coverage must not be printed when nothing could be measured)."""
    from ..localization.calibration import calibration_problem

    why = calibration_problem(ds.lat, ds.lon)
    if why:
        raise DataError(f"{ds.name}: not fitted, the error radius could not be calibrated: gallery of {why}")


def indexing_config(workers: int, engine: str, quiet: bool):
    """The CLI's --workers/--engine/--quiet as an IndexingConfig (DataError on a bad value)."""
    from ..features.indexing import IndexingConfig

    cfg = IndexingConfig(workers=workers, engine=engine, progress=not quiet)
    cfg.check()
    return cfg


def indexing_metrics(predictor) -> dict:
    """What the feature extraction did (engine, photos computed/cached, worker pids), for model.json metrics."""
    st = predictor.indexing_stats
    if st is None:
        return {}
    return {"indexing": {"engine": predictor.indexing.engine, "workers": predictor.indexing.n_workers(),
                         "computed": st.computed, "cached": st.cached, "seconds": round(st.seconds, 2),
                         "worker_pids": sorted(st.pids)}}


@app.command()
def verify(model: Path = typer.Option(..., "--model", help="Model directory to check.")):
    """Hash every file of a model directory against model.json (loading hashes only the small files), then load it
    exactly as `predict` does: a model verify accepts, predict accepts."""
    from ..modeldir import read_manifest
    from ..predictors.registry import load_model

    man = read_manifest(model, verify="full")
    load_model(model)
    total = sum(man.get("sizes", {}).values())
    typer.echo(f"ok: {model}: all {counted(len(man.get('checksums', {})), 'file')} match model.json"
               + (f" ({total / 2**20:.1f} MiB hashed)" if total else ""))


def report_skipped(ds) -> None:
    """Print (stderr) the dataset's skipped photos with their one-line reasons, at most 20."""
    for where, why in ds.skipped[:20]:
        typer.echo(f"skipped {where}: {why}", err=True)
    if len(ds.skipped) > 20:
        typer.echo(f"... and {len(ds.skipped) - 20} more skipped rows", err=True)


def parse_fractions(value: str | None) -> list[float] | None:
    """'0.25,0.5,1' -> [0.25, 0.5, 1.0] (None when empty); a bad value is a one-line error."""
    if not value:
        return None
    try:
        fr = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--fractions {value!r}: give numbers like 0.25,0.5,1.0") from None
    if not fr or any(not (0 < f <= 1) for f in fr):
        raise DataError("--fractions must be in (0, 1]")
    return fr


@app.command(epilog=METHODS_HELP + "\n\n" + PROTOCOLS_HELP)
def bench(
    data: str = typer.Option(..., "--data", metavar="DATASET", help="Labelled dataset (folder, .parquet or hf://)."),
    protocol: str = typer.Option("loo", "--protocol", help="A protocol listed below, e.g. loo, kfold:5 or knndm:5."),
    methods: str = typer.Option("knn", "--methods", help="Comma-separated method specs (listed below); mean-coordinate is always added."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the bench JSON (+ .predictions.csv and plots)."),
    fractions: Optional[str] = typer.Option(None, "--fractions", help="Gallery fractions for a learning curve, e.g. 0.25,0.5,1.0"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write CDF and error-line maps beside the JSON."),
    query_as: Optional[str] = typer.Option(None, "--query-as", metavar="KIND[,KIND...]", help="Also locate each held-out photo as people share it: reencode, crop, filter, screenshot, thumbnail, lowlight, rotated, or all (docs/shared-photos.md); the original is always included."),
    query_seed: int = typer.Option(0, "--query-seed", help="Seed of the --query-as transformations."),
    folds: Optional[str] = typer.Option(None, "--folds", metavar="I[,I...]", help="Run only these folds of the protocol (1-based): a partial run, recorded in the JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json (and the files beside it) replace files img2gps did not write."),
):
    """Fit each method on the training part of every fold and score it on the held-out photos."""
    from ..data.shared_photos import parse_kinds

    from ..data import load_dataset
    from ..bench_outputs import print_results, write_outputs
    from ..evaluate import run_bench
    from ..predictors.registry import make_predictor

    from ..outputs import check_file, dataset_inputs

    inputs = dataset_inputs(data) + (dataset_inputs(protocol[6:]) if protocol.startswith("split:") else [])
    guard = lambda path, kind: check_file(path, inputs, kind, overwrite)  # noqa: E731
    if json_out:
        guard(json_out, "bench-json")  # before any fold is fitted
    specs = [s.strip() for s in methods.split(",") if s.strip()]
    for s in specs:  # every spec and every encoder it needs, before any fold is fitted
        check_encoders(make_predictor(s))
    fr = parse_fractions(fractions)
    kinds = parse_kinds(query_as)
    ds = load_dataset(data)
    report_skipped(ds)
    only = [int(f) for f in folds.split(",") if f.strip()] if folds else None
    from ..bench_resume import FoldCheckpoints, folder_for

    # with --json, every finished fold is saved beside it: a stopped run continues from its last finished fold
    ck = folder_for(json_out) if json_out else None
    result, preds = run_bench(ds, protocol, specs, fractions=fr, query_as=kinds, seed=query_seed, only_folds=only,
                              checkpoint=ck)
    result["command"] = "img2gps bench " + " ".join(_quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    if fr and result["results_fraction"] != 1.0:
        typer.echo(f"note: --fractions has no 1.0, so the headline results are those of fraction "
                   f"{result['results_fraction']:g} (recorded as results_fraction in the JSON)", err=True)
    if fr:
        for f, block in result["by_fraction"].items():
            print_results(block["results"], f"{ds.name} — {protocol} — gallery fraction {f}")
    else:
        print_results(result["results"], f"{ds.name} — {protocol} — n={result['n']}")
    if json_out:
        for p in write_outputs(json_out, result, preds, plots=plots, check=guard):
            typer.echo(wrote(p))
        if only:  # a partial run keeps its folds: a later run of more folds with this --json reuses them
            typer.echo(f"kept the finished folds in {ck} for a later run of more folds")
        else:
            FoldCheckpoints.remove(ck)  # the JSON now holds every fold
        if fr and plots and len(fr) >= 2:  # error vs gallery size, with the extrapolation the data support
            from ..analysis.learning_curve import bench_learning_curve

            png, verdicts = bench_learning_curve(json_out, result, preds)
            typer.echo(wrote(png))
            for v in verdicts:
                typer.echo(v)


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


@app.command("eval")
def eval_(
    model: Path = typer.Option(..., "--model", metavar="MODEL_DIR", help="A model directory written by `img2gps fit`."),
    data: str = typer.Option(..., "--data", metavar="DATASET", help="Labelled photos to score (those in the model's gallery are skipped)."),
    split: Optional[Path] = typer.Option(None, "--split", metavar="CSV", help="Score only the photos of DATASET that "
                                         "this split CSV names (e.g. SPLITS/random/val.csv from `img2gps data split`; "
                                         "a folder: its val.csv)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write metrics JSON (+ predictions CSV and plots)."),
    save_metrics: bool = typer.Option(True, "--save-metrics/--no-save-metrics", help="Record the metrics in model.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json (and the files beside it) replace files img2gps did not write."),
):
    """Score a saved model on a labelled set (or a saved split of it), beside the mean-coordinate baseline of the
    model's gallery."""
    import numpy as np
    import pandas as pd

    from ..data import load_dataset
    from ..bench_outputs import print_results, write_outputs
    from ..evaluate import metrics, score_queries
    from ..geo import haversine_m, latlon_sd, weighted_centre, z2_error
    from ..predictors.registry import load_model

    from ..outputs import check_file, dataset_inputs, model_inputs

    from ..data.splits import split_rows

    if split is not None and split.is_dir():
        split = split / "val.csv"
    inputs = model_inputs(model) + dataset_inputs(data) + ([split] if split else [])
    guard = lambda path, kind: check_file(path, inputs, kind, overwrite)  # noqa: E731
    if json_out:
        guard(json_out, "bench-json")  # before any photo is scored
    p = load_model(model)
    ds = load_dataset(data)
    report_skipped(ds)
    chosen = split_rows(split, ds).tolist() if split else range(len(ds))
    in_gallery = set(p.gallery["image"].astype(str))
    held = [i for i in chosen if ds.ids[i] not in in_gallery]
    if len(held) < len(chosen):
        typer.echo(f"note: skipped {counted(len(chosen) - len(held), 'photo')} already in the model's gallery "
                   "(a gallery photo locates trivially)", err=True)
    if not held:
        raise DataError(f"{split or data}: every photo is in the model's gallery; nothing held out to evaluate")
    glat, glon = p.gallery["Latitude"].to_numpy(float), p.gallery["Longitude"].to_numpy(float)
    c = weighted_centre(glat, glon)
    sd = latlon_sd(glat, glon)
    rows = score_queries(p, ds, held, *sd, progress=len(held) >= 5)
    for r in rows:
        r["fraction"] = 1.0
    base = []
    for i in held:
        t = (ds.lat[i], ds.lon[i])
        base.append({"spec": "mean-coordinate (gallery centre)", "image": ds.ids[i], "true_lat": t[0], "true_lon": t[1],
                     "pred_lat": c[0], "pred_lon": c[1], "error_m": float(haversine_m(*t, *c)), "radius_m": np.nan,
                     "confidence": 0.0, "recognised": False,
                     "z2": z2_error(c[0], c[1], *t, sd), "predict_ms": 0.0,
                     "fraction": 1.0})
    preds = pd.DataFrame(base + rows)
    res = {s: metrics(g) for s, g in preds.groupby("spec", sort=False)}
    on = ds.name + (f" (split {split})" if split else "")
    print_results(res, f"{model} on {on} — {counted(len(held), 'held-out photo')}")
    result = {"data": ds.name, "split": str(split) if split else None, "protocol": f"model:{model}", "n": len(held),
              "results": res}
    if save_metrics:
        _record_metrics(model, on, res[p.spec])
    if json_out:
        write_outputs(json_out, result, preds, check=guard)


def _record_metrics(model_dir: Path, data: str, m: dict) -> None:
    """Add eval metrics to model.json (atomic rewrite; model.json itself is not checksummed)."""
    from ..modeldir import model_lock

    mp = Path(model_dir) / "model.json"
    with model_lock(model_dir, "eval --save-metrics"):  # read-modify-write: never over another writer's model
        man = json.loads(mp.read_text())
        man.setdefault("metrics", {})[f"eval:{data}"] = m
        tmp = mp.with_suffix(".json.tmp")
        from ..bench_outputs import strict_json

        # strict JSON: a figure that does not exist (a baseline's fit time) is null, never NaN
        tmp.write_text(json.dumps(strict_json(man), indent=2))
        os.replace(tmp, mp)
