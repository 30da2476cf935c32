"""`img2gps data build|split`: photo folder -> clean dataset; dataset -> train/val CSVs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..photos import MAX_PIXELS
from ..outputs import counted, wrote
from . import App, app, megapixels_option

data_app = App(no_args_is_help=True, help="Build a clean dataset from a photo folder; split it; check its labels against the photos.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def build(
    src: Path = typer.Argument(..., metavar="PHOTOS_DIR", help="Folder of photos (searched recursively; JPEG/MPO, HEIC/HEIF, PNG, WebP, TIFF) "
                                                           "and walk videos (MP4, MOV; need --track), or one video. Never written to."),
    out: Path = typer.Argument(..., metavar="DATASET", help="New dataset folder: images/, labels.csv, report.json, report.md, points.png."),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV", help="CSV (image,Latitude,Longitude) whose positions override EXIF GPS [default: none, EXIF only]."),
    max_side: int = typer.Option(1200, "--max-side", help="Long side of the written JPEGs in pixels (0 = keep size)."),
    bbox: Optional[str] = typer.Option(None, "--bbox", metavar="BOX", help="Drop photos outside 'auto' (robust box from the data) or LAT_MIN,LON_MIN,LAT_MAX,LON_MAX (LON_MIN > LON_MAX: across the 180 meridian) [default: off]."),
    drop_singletons: Optional[float] = typer.Option(None, "--drop-singletons", metavar="RADIUS_M",
                                                    help="Drop photos with no other photo within RADIUS_M metres."),
    drop_dates: Optional[str] = typer.Option(None, "--drop-dates", metavar="D1,D2", help="Drop photos taken on these dates (YYYY-MM-DD)."),
    drop_drift_dates: bool = typer.Option(False, "--drop-drift-dates", help="Drop dates flagged for GPS drift (impossible walking speed)."),
    dedup: bool = typer.Option(False, "--dedup", help="Drop near-duplicate photos (perceptual hash), keeping the first."),
    dedup_hamming: int = typer.Option(4, "--dedup-hamming", help="phash distance (0-64) that counts as a duplicate."),
    max_megapixels: Optional[float] = typer.Option(None, "--max-megapixels", metavar="MP",
                                                   help=f"Refuse photos larger than this [default: {MAX_PIXELS / 1e6:g}]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DATASET if it holds an earlier build."),
    track: Optional[Path] = typer.Option(None, "--track", metavar="FILE", help="GPS track (GPX; CSV time,latitude,longitude; "
                                         "Google Takeout JSON; KML): videos become frames placed on it, and photos without GPS are placed by capture time."),
    time_offset: Optional[float] = typer.Option(None, "--time-offset", metavar="S", help="Seconds added to capture times to "
                                                "reach the track's clock [default: estimated from photos with GPS and a time, else 0]."),
    allow_outside_track: bool = typer.Option(False, "--allow-outside-track", help="Place photos taken outside the track's "
                                             "time span (or in a gap over 5 min) at the nearest track point instead of skipping them."),
    frame_step: float = typer.Option(2.0, "--frame-step", metavar="M", help="Take a video frame every M metres walked "
                                     "(and at each view change)."),
    check_labels: bool = typer.Option(False, "--check-labels", help="Then run `data check` on the result: report in "
                                                                    "OUT/label_check/ (labels are not changed)."),
) -> None:
    """Read geotagged photos, orient and resize them, clean (opt-in steps) and write a dataset with a report."""
    from ..data.build import BuildConfig, build_dataset
    from ..data.video import SamplingConfig
    from ..data.walk_gallery import TrackConfig

    cfg = BuildConfig(max_side=max_side, labels=labels, bbox=bbox, drop_singletons_m=drop_singletons,
                      drop_dates=tuple((drop_dates or "").split(",")) if drop_dates else (),
                      drop_drift_dates=drop_drift_dates, dedup=dedup, dedup_hamming=dedup_hamming, overwrite=overwrite,
                      max_pixels=megapixels_option(max_megapixels),
                      track=TrackConfig(path=track, time_offset_s=time_offset, allow_outside=allow_outside_track,
                                        sampling=SamplingConfig(step_m=frame_step)))
    r = build_dataset(src, out, cfg)
    c, sp = r["counts"], r["area"]["nearest_other_photo_m"]
    files = (f"of {counted(c['photo_files'], 'photo file')}" if not c.get("videos") else
             f"photos and frames from {counted(c['photo_files'], 'photo file')} and {counted(c['videos'], 'video')}")
    typer.echo(f"{out}: kept {c['kept']} {files} "
               f"({c['skipped']} skipped, {c['geotagged'] - c['kept']} dropped by cleaning); "
               f"spacing median {sp['median']} m, P90 {sp['p90']} m")
    for line in r["area"]["areas"]:
        typer.echo(f"  {line}")
    for step, s in r["cleaning"].items():
        verb = "dropped" if s["enabled"] else "would drop (off)"
        typer.echo(f"  {step}: {verb} {s['would_drop']}")
    if r.get("track"):
        t = r["track"]
        typer.echo(f"  track {t['file']}: {counted(t['placed_by_time'], 'photo')} placed by time, {t['refused_outside_track']} "
                   f"outside it; frames from {counted(len(t['videos']), 'video')}: {sum(v['frames'] for v in t['videos'].values())}; "
                   f"clock offset used {t['offset_used_s']['zoned']:+.1f} s (zoned times, videos), "
                   f"{t['offset_used_s']['zone_less']:+.1f} s (zone-less times)")
    typer.echo("  " + wrote(out / "report.md"))
    if check_labels:
        from ..labelcheck import check_dataset
        from ..labelcheck.report import write_check
        from ..data.sources import from_folder

        ds = from_folder(out)
        res = check_dataset(ds)
        write_check(res, ds, out / "label_check")
        s = res.summary
        typer.echo(f"  label check: {s['ok']} ok, {s['doubtful']} doubtful, {s['wrong']} wrong; "
                   f"{out / 'label_check' / 'report.md'}")


@data_app.command("split")
def split(
    dataset: str = typer.Argument(..., metavar="DATASET", help="Dataset folder (images/ + labels.csv) or a parquet file."),
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
    typer.echo(wrote(out))


@data_app.command("check")
def check(
    dataset: Path = typer.Argument(..., metavar="DATASET", help="Dataset folder (images/ + labels.csv). Never written to."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="Report folder; with --apply, the new dataset [default: ./label-check-NAME]."),
    apply: bool = typer.Option(False, "--apply", help="Write OUT as a new dataset with the wrong labels corrected "
                                                      "(column label_check says which and why; report in OUT/label_check/)."),
    topn: int = typer.Option(8, "--topn", help="Retrieval neighbours verified per photo (bounds the cost per photo)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it holds an earlier check."),
    tiles: bool = typer.Option(True, "--tiles/--no-tiles", help="Map tiles in map.html (need a network; the map works without)."),
) -> None:
    """Check every label against the other photos (verified views, capture times, the phone's accuracy) and propose fixes."""
    from dataclasses import replace

    from ..labelcheck import CheckConfig, check_dataset
    from ..labelcheck.apply import apply_check
    from ..labelcheck.report import write_check, write_into
    from ..data.sources import from_folder

    ds = from_folder(dataset)
    for where, why in ds.skipped:
        typer.echo(f"skipped {where}: {why}", err=True)
    cfg = CheckConfig()
    cfg.evidence = replace(cfg.evidence, topn=topn)
    out = out or Path(f"label-check-{dataset.resolve().name}")
    res = check_dataset(ds, cfg)
    s = res.summary
    if apply:
        apply_check(res, dataset, out, overwrite, extra=lambda tmp: (tmp / "label_check").mkdir() or
                    write_into(res, ds, tmp / "label_check", tiles))
        where = out / "label_check"
    else:
        write_check(res, ds, out, overwrite, protected=[dataset], tiles=tiles)
        where = out
    typer.echo(f"{dataset}: {counted(s['photos'], 'photo')}, {s['ok']} ok, {s['doubtful']} doubtful, {s['wrong']} wrong "
               f"({s['unchecked']} without evidence; {s['with_verified_view']} with a verified view); "
               f"{s['seconds']['total']:.0f} s")
    for x in s["shifted_sessions"]:
        typer.echo(f"  session {x['session']}: {counted(x['photos'], 'photo')} offset {x['offset_m']} m")
    for r in res.table[res.table["verdict"] == "wrong"].itertuples(index=False):
        typer.echo(f"  wrong: {r.image}: {r.reason}")
    if apply:
        typer.echo(f"corrected dataset: {out} (labels.csv column label_check)")
    typer.echo(wrote(where / "report.md"))
    typer.echo(wrote(where / "map.html"))
