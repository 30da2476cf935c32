"""`img2gps data build|split`: photo folder -> clean dataset; dataset -> train/val CSVs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..photos import MAX_PIXELS
from . import app, megapixels_option

data_app = typer.Typer(no_args_is_help=True, help="Build a clean dataset from a photo folder; split it.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def build(
    src: Path = typer.Argument(..., help="Folder of photos (searched recursively; JPEG, HEIC/HEIF, PNG). Never written to."),
    out: Path = typer.Argument(..., help="New dataset folder: images/, labels.csv, report.json, report.md, points.png."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="CSV (image,Latitude,Longitude) whose positions override EXIF GPS."),
    max_side: int = typer.Option(1200, "--max-side", help="Long side of the written JPEGs in pixels (0 = keep size)."),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="Drop photos outside 'auto' (robust box from the data) or LAT_MIN,LON_MIN,LAT_MAX,LON_MAX."),
    drop_singletons: Optional[float] = typer.Option(None, "--drop-singletons", metavar="RADIUS_M",
                                                    help="Drop photos with no other photo within RADIUS_M metres."),
    drop_dates: Optional[str] = typer.Option(None, "--drop-dates", metavar="D1,D2", help="Drop photos taken on these dates (YYYY-MM-DD)."),
    drop_drift_dates: bool = typer.Option(False, "--drop-drift-dates", help="Drop dates flagged for GPS drift (impossible walking speed)."),
    dedup: bool = typer.Option(False, "--dedup", help="Drop near-duplicate photos (perceptual hash), keeping the first."),
    dedup_hamming: int = typer.Option(4, "--dedup-hamming", help="phash distance (0-64) that counts as a duplicate."),
    max_megapixels: Optional[float] = typer.Option(None, "--max-megapixels", metavar="MP",
                                                   help=f"Refuse photos larger than this [default: {MAX_PIXELS / 1e6:g}]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it holds an earlier build."),
) -> None:
    """Read geotagged photos, orient and resize them, clean (opt-in steps) and write a dataset with a report."""
    from ..data.build import BuildConfig, build_dataset

    cfg = BuildConfig(max_side=max_side, labels=labels, bbox=bbox, drop_singletons_m=drop_singletons,
                      drop_dates=tuple((drop_dates or "").split(",")) if drop_dates else (),
                      drop_drift_dates=drop_drift_dates, dedup=dedup, dedup_hamming=dedup_hamming, overwrite=overwrite,
                      max_pixels=megapixels_option(max_megapixels))
    r = build_dataset(src, out, cfg)
    c, sp = r["counts"], r["area"]["nearest_other_photo_m"]
    typer.echo(f"{out}: kept {c['kept']} of {c['photo_files']} photo files "
               f"({c['skipped']} skipped, {c['geotagged'] - c['kept']} dropped by cleaning); "
               f"spacing median {sp['median']} m, P90 {sp['p90']} m")
    for step, s in r["cleaning"].items():
        verb = "dropped" if s["enabled"] else "would drop (off)"
        typer.echo(f"  {step}: {verb} {s['would_drop']}")
    typer.echo(f"  report: {out / 'report.md'}")


@data_app.command("split")
def split(
    dataset: str = typer.Argument(..., help="Dataset folder (images/ + labels.csv) or a parquet file."),
    out: Path = typer.Option(..., "--out", help="Output folder (outside the dataset)."),
    kind: str = typer.Option("both", "--kind", help="both | random | geo (location-disjoint)."),
    val_frac: float = typer.Option(0.2, "--val-frac", help="Fraction of photos for validation."),
    radius: float = typer.Option(10.0, "--radius", help="Buffer in metres: no training photo this close to a validation photo (geo)."),
    seed: int = typer.Option(42, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it holds an earlier split."),
) -> None:
    """Seeded random and location-disjoint (spatial clusters + buffer) train/val splits."""
    from ..data.split_files import SplitConfig, write_split

    r = write_split(dataset, out, SplitConfig(kind=kind, val_frac=val_frac, radius_m=radius, seed=seed,
                                              overwrite=overwrite))
    for k, s in r["splits"].items():
        d = s["val_to_nearest_train_m"]
        typer.echo(f"{k}: train {s['train']}, val {s['val']}, dropped by buffer {s['dropped_by_buffer']}; "
                   f"val -> nearest train: min {d['min']} m, median {d['median']} m, P90 {d['p90']} m")
    typer.echo(f"written to {out}")
