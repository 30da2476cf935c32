"""`img2gps index add|replace|remove`: edit a fitted model's gallery without recomputing the other photos, under
the model's writer lock (modeldir.model_lock), so concurrent edits wait for each other and none is lost."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from . import App, app
from ..modeldir import LOCK_WAIT_S
from ..outputs import counted
from .modelling import indexing_config, indexing_metrics

index_app = App(no_args_is_help=True, help="Add, replace or remove a fitted model's gallery photos.")
app.add_typer(index_app, name="index")


def _combine(parts, origin: dict[int, dict[str, str]]):
    """Several GeoDatasets -> one (a later photo whose name is taken is skipped); returns (dataset, skipped).
    origin: id(dataset) -> {name: the user's file} for the photos read from files (others: "dataset (name)")."""
    import pandas as pd

    from ..data.sources import GeoDataset

    owner, rows, skipped = {}, [], []
    for ds in parts:
        for i, name in enumerate(ds.ids):
            if name in owner:
                where = origin.get(id(ds), {}).get(name) or f"{ds.name} ({name})"
                skipped.append((where, "same name as another photo being added"))
                continue
            owner[name] = ds
            rows.append(ds.table.iloc[i][["image", "Latitude", "Longitude"]])
    table = pd.DataFrame(rows).reset_index(drop=True) if rows else pd.DataFrame(columns=["image", "Latitude", "Longitude"])
    return GeoDataset(table, lambda name: owner[name].reader(name), name="added photos"), skipped


def not_a_photo(path: Path) -> str:
    """Why a file given by name is not read as a photo: what opening it says (as `predict` reports it), or that
    its suffix is not one img2gps reads."""
    from ..errors import PhotoError
    from ..photos import PHOTO_SUFFIXES, read_header

    try:
        read_header(path)
    except PhotoError as e:
        return f"not a photo ({e.problem})"
    return f"not a photo file name (img2gps reads {', '.join(sorted(PHOTO_SUFFIXES))})"


def _stage(raw: list[Path], stage: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Link the photos of PHOTO arguments under `stage` for `data build`, one sub-folder per folder the user named
    (a file: its own folder), named as that folder (made unique), so gallery names read like the user's own.
    Returns ({staged relative path: the user's path}, [(argument, problem)] for arguments with no photo)."""
    from ..photos import PHOTO_SUFFIXES
    from ..walk import walk_files

    where, problems, sub = {}, [], {}
    for p in raw:
        files, links = walk_files(p) if p.is_dir() else ([p], [])  # linked folders followed
        problems += [(str(f), why) for f, why in links]
        top = p if p.is_dir() else p.parent
        photos = [f for f in files if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES
                  and not any(part.startswith(".") for part in f.relative_to(top).parts)]
        if not photos:
            problems.append((str(p), not_a_photo(p) if p.is_file() else
                             "folder has no photos (" + ", ".join(sorted(PHOTO_SUFFIXES)) + ")"))
            continue
        key = top.resolve()
        if key not in sub:
            name, k = top.resolve().name or "photos", 2
            while name in sub.values():
                name, k = f"{top.resolve().name or 'photos'}_{k}", k + 1
            sub[key] = name
        for f in photos:
            rel = Path(sub[key]) / f.relative_to(top)
            link = stage / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(f.resolve())
                where[rel.as_posix()] = str(f)
    return where, problems


def read_inputs(paths: list[Path], labels: Path | None, work: Path):
    """PHOTOS arguments -> (GeoDataset, skipped [(the user's path, reason)]).

    A folder with labels.csv is a dataset, read as `fit --data` reads it. Other files and folders are read
    exactly as `data build` reads them (positions from EXIF, or --labels), into a temporary dataset under work;
    every message names the user's own files, never that staging.
    """
    from ..data import load_dataset
    from ..data.build import BuildConfig, build_dataset
    from ..errors import DataError, NoUsablePhotos

    datasets, raw, skipped, origin = [], [], [], {}
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
        where, problems = _stage(raw, stage)
        skipped += problems
        user = lambda rel: where.get(rel, rel)  # noqa: E731
        try:
            report = build_dataset(stage, work / "built", BuildConfig(labels=labels), log=lambda m: None) \
                if where else None
        except NoUsablePhotos as e:
            skipped += [(user(s["file"]), s["reason"]) for s in e.skipped]
        except DataError as e:  # e.g. a bad --labels CSV: its message names the user's file, not the staging
            why = str(e).replace(str(stage), "the given photos").replace(str(work), "a temporary folder")
            skipped.append((", ".join(map(str, raw)), why))
        else:
            if report is not None:
                skipped += [(user(s["file"]), s["reason"]) for s in report["skipped"]]
                datasets.append(load_dataset(work / "built"))
                origin[id(datasets[-1])] = {ph["image"]: user(ph["source"]) for ph in report["photos"]}
    ds, more = _combine(datasets, origin)
    return ds, skipped + more


WAIT_HELP = "Seconds to wait while another img2gps process writes the model (0 = refuse at once)."
MODEL_HELP = "A fitted knn or rerank model directory (replaced atomically, under the model's writer lock)."


@index_app.command("add")
def add(
    photos: List[Path] = typer.Argument(..., metavar="PHOTO", help="Photo files, folders of photos, or datasets (folder with labels.csv)."),
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help=MODEL_HELP),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV", help="CSV (image,Latitude,Longitude) whose positions override EXIF, as in `data build`."),
    workers: int = typer.Option(0, "--workers", help="Processes (or local Ray CPUs) for decode/embedding/SIFT; 0 = all cores."),
    engine: str = typer.Option("pool", "--engine", help="pool | local | ray (Ray Data; RAY_ADDRESS for a cluster)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
    wait: float = typer.Option(LOCK_WAIT_S, "--wait", metavar="SECONDS", help=WAIT_HELP),
):
    """Append photos to a fitted model without recomputing the existing ones, recalibrate, replace atomically."""
    _edit(model, "index add", wait, photos, labels, indexing_config(workers, engine, quiet), replace=False)


@index_app.command("replace")
def replace(
    photos: List[Path] = typer.Argument(..., metavar="PHOTO", help="New versions of gallery photos (same names as in the gallery: files, folders or datasets)."),
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help=MODEL_HELP),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV", help="CSV (image,Latitude,Longitude) whose positions override EXIF, e.g. corrected labels."),
    workers: int = typer.Option(0, "--workers", help="Processes (or local Ray CPUs) for decode/embedding/SIFT; 0 = all cores."),
    engine: str = typer.Option("pool", "--engine", help="pool | local | ray (Ray Data; RAY_ADDRESS for a cluster)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
    wait: float = typer.Option(LOCK_WAIT_S, "--wait", metavar="SECONDS", help=WAIT_HELP),
):
    """Update gallery photos in place (new position or pixels): the named photos are dropped and the given versions
    added, the others untouched; one recalibration; replaced atomically."""
    _edit(model, "index replace", wait, photos, labels, indexing_config(workers, engine, quiet), replace=True)


@index_app.command("remove")
def remove(
    names: List[str] = typer.Argument(..., metavar="NAME", help="Gallery photo names (gallery.csv's image column, as `predict` lists them), or a file with one name per line."),
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help=MODEL_HELP),
    wait: float = typer.Option(LOCK_WAIT_S, "--wait", metavar="SECONDS", help=WAIT_HELP),
):
    """Drop photos from a fitted model's gallery without recomputing the others; the radius calibration is
    refreshed on what is left (it was measured on the old gallery's spacing and neighbours); replaced atomically."""
    import time

    from ..errors import DataError
    from ..modeldir import model_lock
    from ..predictors.registry import load_model
    from .modelling import read_name_list

    wanted = [n for v in names for n in read_name_list(v)]
    if not wanted:
        raise DataError("index remove: no photo names given")
    with model_lock(model, "index remove", wait):
        p = load_model(model)
        before, t0 = len(p.gallery), time.perf_counter()
        p.remove(wanted)
        p.metrics = dict(p.metrics, remove_s=round(time.perf_counter() - t0, 2),
                         calibration=_calibration_note("index remove", len(set(wanted))))
        p.save(model)
    typer.echo(f"removed {counted(len(set(wanted)), 'photo')} from {model} ({before} -> {len(p.gallery)}); calibration "
               f"refreshed on the {counted(len(p.gallery), 'photo')} left ({time.perf_counter() - t0:.1f} s)")


def _calibration_note(action: str, n: int) -> dict:
    """What model.json says about its calibration after an edit (refreshed, never left stale)."""
    return {"state": "refreshed", "after": action, "photos": n,
            "why": "the radii are re-measured on the edited gallery: its spacing and neighbours changed"}


def _edit(model: Path, action: str, wait: float, photos: list[Path], labels, cfg, replace: bool) -> None:
    """index add / replace: read the photos, then under the model's lock load, edit, recalibrate and save."""
    import time

    from ..errors import DataError
    from ..modeldir import model_lock
    from ..predictors.registry import load_model

    with model_lock(model, action, wait), tempfile.TemporaryDirectory(prefix="img2gps-add-") as work:
        p = load_model(model)  # the model as it is now: any writer before us has finished
        why = p.add_refusal()
        if why:
            raise DataError(why)
        ds, skipped = read_inputs(photos, labels, Path(work))
        have = set(p.gallery["image"].astype(str))
        clash = [n for n in ds.ids if n in have]
        if replace:
            skipped += [(n, "not in the gallery (use `img2gps index add`)") for n in ds.ids if n not in have]
            ds = ds.select_ids(clash)
        else:
            skipped += [(n, "a photo of this name is already in the gallery (use `img2gps index replace`)")
                        for n in clash]
            ds = ds.exclude_ids(clash)
        if len(ds) == 0 and len(skipped) == 1:  # one thing given and it is unusable: its own reason is the line
            raise DataError(f"{skipped[0][0]}: {skipped[0][1]}")
        for where, reason in skipped:
            typer.echo(f"skipped {where}: {reason}", err=True)
        if len(ds) == 0:
            hint = ("; give their positions with --labels CSV (columns image,Latitude,Longitude)"
                    if labels is None and any("GPS" in why for _, why in skipped) else "")
            raise DataError(f"nothing to {action.split()[1]}: none of the given photos is usable "
                            f"({len(skipped)} skipped){hint}")
        before = len(p.gallery)
        p.indexing = cfg
        t0 = time.perf_counter()
        if replace:
            p.remove(list(ds.ids), recalibrate=False)  # the add below recalibrates once
        p.add(ds)
        p.metrics = dict(p.metrics, add_s=round(time.perf_counter() - t0, 2), **indexing_metrics(p),
                         calibration=_calibration_note(action, len(ds)))
        p.save(model)
    if replace:
        typer.echo(f"replaced {counted(len(ds), 'photo')} in {model} ({counted(len(p.gallery), 'photo')}; {len(skipped)} skipped); "
                   "calibration refreshed")
    else:
        typer.echo(f"added {counted(len(ds), 'photo')} to {model} ({before} -> {len(p.gallery)}; {len(skipped)} skipped)")
