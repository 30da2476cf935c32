"""`img2gps index add`: append photos to a fitted model's gallery without recomputing the existing ones."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from . import App, app
from .modelling import indexing_config, indexing_metrics

index_app = App(no_args_is_help=True, help="Grow a fitted model's gallery.")
app.add_typer(index_app, name="index")


def _combine(parts):
    """Several GeoDatasets -> one (a later photo whose name is taken is skipped); returns (dataset, skipped)."""
    import pandas as pd

    from ..data.sources import GeoDataset

    owner, rows, skipped = {}, [], []
    for ds in parts:
        for i, name in enumerate(ds.ids):
            if name in owner:
                skipped.append((f"{ds.name} ({name})", "same name as another photo being added"))
                continue
            owner[name] = ds
            rows.append(ds.table.iloc[i][["image", "Latitude", "Longitude"]])
    table = pd.DataFrame(rows).reset_index(drop=True) if rows else pd.DataFrame(columns=["image", "Latitude", "Longitude"])
    return GeoDataset(table, lambda name: owner[name].reader(name), name="added photos"), skipped


def read_inputs(paths: list[Path], labels: Path | None, work: Path):
    """PHOTOS arguments -> (GeoDataset, skipped [(where, reason)]).

    A folder with labels.csv is a dataset, read as `fit --data` reads it. Other files and folders are read
    exactly as `data build` reads them (positions from EXIF, or --labels), into a temporary dataset under work.
    """
    from ..data import load_dataset
    from ..data.build import BuildConfig, build_dataset
    from ..errors import DataError
    from ..walk import walk_files

    datasets, raw, skipped = [], [], []
    for p in paths:
        if not p.exists():
            skipped.append((str(p), "not found"))
        elif p.is_dir() and (p / "labels.csv").is_file():
            ds = load_dataset(p)
            skipped += ds.skipped
            datasets.append(ds)
        else:
            raw.append(p)
    if raw:
        stage = work / "photos"
        stage.mkdir()
        for k, p in enumerate(raw):  # links to the files, one sub-folder per argument (names stay apart)
            files, links = walk_files(p) if p.is_dir() else ([p], [])  # linked folders followed
            skipped += [(str(f), why) for f, why in links]
            files = [f for f in files if f.is_file()]
            for f in files:
                link = stage / f"{k:03d}" / (f.name if f == p else f.relative_to(p))
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f.resolve())
        try:
            report = build_dataset(stage, work / "built", BuildConfig(labels=labels), log=lambda m: None)
        except DataError as e:
            skipped.append((", ".join(map(str, raw)), str(e).split(": ", 1)[-1]))
        else:
            skipped += [(s["file"].split("/", 1)[-1], s["reason"]) for s in report["skipped"]]
            datasets.append(load_dataset(work / "built"))
    ds, more = _combine(datasets)
    return ds, skipped + more


@index_app.command("add")
def add(
    photos: List[Path] = typer.Argument(..., metavar="PHOTO", help="Photo files, folders of photos, or datasets (folder with labels.csv)."),
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help="A fitted knn or rerank model directory (replaced atomically)."),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV", help="CSV (image,Latitude,Longitude) whose positions override EXIF, as in `data build`."),
    workers: int = typer.Option(0, "--workers", help="Processes (or local Ray CPUs) for decode/embedding/SIFT; 0 = all cores."),
    engine: str = typer.Option("pool", "--engine", help="pool | local | ray (Ray Data; RAY_ADDRESS for a cluster)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
):
    """Append photos to a fitted model without recomputing the existing ones, recalibrate, replace atomically."""
    import time

    from ..errors import DataError
    from ..predictors.registry import load_model

    cfg = indexing_config(workers, engine, quiet)
    p = load_model(model)
    why = p.add_refusal()
    if why:
        raise DataError(why)
    with tempfile.TemporaryDirectory(prefix="img2gps-add-") as work:
        ds, skipped = read_inputs(photos, labels, Path(work))
        have = set(p.gallery["image"].astype(str))
        clash = [n for n in ds.ids if n in have]
        skipped += [(n, "a photo of this name is already in the gallery") for n in clash]
        ds = ds.exclude_ids(clash)
        for where, reason in skipped:
            typer.echo(f"skipped {where}: {reason}", err=True)
        if len(ds) == 0:
            raise DataError(f"nothing to add: none of the given photos is usable ({len(skipped)} skipped)")
        before = len(p.gallery)
        p.indexing = cfg
        t0 = time.perf_counter()
        p.add(ds)
        p.metrics = dict(p.metrics, add_s=round(time.perf_counter() - t0, 2), **indexing_metrics(p))
        p.save(model)
    typer.echo(f"added {len(ds)} photos to {model} ({before} -> {len(p.gallery)}; {len(skipped)} skipped)")
