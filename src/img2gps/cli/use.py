"""predict, serve, export: the commands that use a fitted model."""
from __future__ import annotations

import csv
import glob
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import app, megapixels_option
from ..answer_kinds import SCORE_INLIERS
from ..errors import DataError, PhotoError
from ..photos import MAX_PIXELS
from ..outputs import counted, wrote


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"
    geojson = "geojson"
    kml = "kml"


class Runtime(str, Enum):
    torch = "torch"
    onnx = "onnx"


def expand_photos(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Arguments -> (photo paths in order, [(argument, problem)]). Folders are walked recursively for photo
    suffixes; a glob is expanded here too (quoted globs, or shells that do not expand them)."""
    from ..photos import PHOTO_SUFFIXES
    from ..walk import walk_files

    photos, problems, seen = [], [], set()

    def add(p: str):
        if p not in seen:
            seen.add(p)
            photos.append(p)

    for a in args:
        p = Path(a)
        if p.is_dir():
            # a broken link named like a photo is kept, so that it is reported rather than silently lost
            # hidden entries are never photos: macOS '._IMG.jpg' AppleDouble forks, .thumbnails/ folders
            files, links = walk_files(p)  # linked album folders are followed; loops and repeats reported
            problems += [(str(f), why) for f, why in links]
            found = sorted(str(f) for f in files if f.suffix.lower() in PHOTO_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                problems.append((a, "folder has no photos (" + ", ".join(sorted(PHOTO_SUFFIXES)) + ")"))
            for f in found:
                add(f)
        elif not p.exists() and glob.has_magic(a):
            found = sorted(f for f in glob.glob(a, recursive=True) if Path(f).is_file())
            if not found:
                problems.append((a, "no file matches this pattern"))
            for f in found:
                add(f)
        else:
            add(a)  # a missing or unreadable file is reported when it is opened, in order
    return photos, problems


def _record(photo: str, pred, meta) -> dict:
    """The output record of one photo; exif_problem says why it shows no EXIF position (display only, e.g. "EXIF
    GPS block is corrupt"), from the EXIF read when the photo was opened (it is not read again)."""
    from ..photos import readable_name
    from ..types import prediction_dict

    d = prediction_dict(pred, photo=readable_name(photo))
    d["exif_problem"] = None if pred.photo_exif_position or meta is None else meta.gps_problem
    return d


def as_text(rec: dict) -> str:
    """One prediction as text: the answer, whether it was recognised (in words), then the supporting gallery
    photos best first, each score labelled with what it is (inliers of a verified match, else cosine similarity)."""
    lines = [rec["photo"]]
    chance = rec.get("chance_note") or f"confidence {rec['confidence']:.2f}"  # older models: no calibrated chance
    lines.append(f"  prediction  {rec['latitude']:.6f}, {rec['longitude']:.6f}   radius {rec['radius_text']}   "
                 f"{chance}   {rec['method']}   source {rec['source']}")
    lines.append(f"  {rec['answer']}: {rec['source_note']}; the radius {rec['radius_note']}")
    if rec.get("exif_note"):
        lines.append(f"  photo from elsewhere: {rec['exif_note']}")
    if rec.get("query_region"):
        x0, y0, x1, y1 = rec["query_region"]
        lines.append(f"  photo found inside the image (a screenshot or a border): pixels {x0},{y0} to {x1},{y1} "
                     "were located")
    if rec.get("query_view"):
        lines.append(f"  verified on the photo {rec['query_view']} (as given, nothing verified)")
    if rec.get("heading_deg") is not None:
        hr = rec.get("heading_radius_deg")
        lines.append(f"  heading     {rec['heading_deg']:.0f} deg from north" + (f" +/- {hr:.0f} deg" if hr else ""))
    if rec["photo_exif_position"]:
        la, lo = rec["photo_exif_position"]
        lines.append(f"  photo EXIF  {la:.6f}, {lo:.6f}   {rec['exif_distance_text']} from the prediction")
    elif rec.get("exif_problem"):
        lines.append(f"  photo EXIF  no position: {rec['exif_problem']}")
    neighbours = rec["neighbours"]  # best first by the score shown (types.Prediction)
    if neighbours:
        verified = rec["score_kind"] == SCORE_INLIERS
        lines.append("  supporting gallery photos (" + ("inliers of the verified match" if verified
                                                        else "cosine similarity of the embeddings") + "):")
    for i, n in enumerate(neighbours, 1):
        score = (f"inliers {n['score']:.0f}" if verified else f"cosine similarity {n['score']:.3f}")
        lines.append(f"  {i:>2}. {n['latitude']:.6f}, {n['longitude']:.6f}  {score}  {n['image_id']}")
    return "\n".join(lines)


def _csv(records: list[dict], top_k: int) -> str:
    base = ["photo", "latitude", "longitude", "radius_m", "confidence", "chance_25m", "recognised", "method", "source",
            "heading_deg", "heading_radius_deg", "answer", "radius_note", "source_note", "chance_note"]
    cols = base + ["exif_latitude", "exif_longitude", "exif_distance_m", "exif_note"]
    for i in range(1, top_k + 1):
        cols += [f"n{i}_image", f"n{i}_latitude", f"n{i}_longitude", f"n{i}_score"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {k: r.get(k) for k in base}
        exif = r["photo_exif_position"] or (None, None)
        row.update(exif_latitude=exif[0], exif_longitude=exif[1], exif_distance_m=r["exif_distance_m"],
                   exif_note=r["exif_note"])
        for i, n in enumerate(r["neighbours"][:top_k], 1):
            row.update({f"n{i}_image": n["image_id"], f"n{i}_latitude": n["latitude"],
                        f"n{i}_longitude": n["longitude"], f"n{i}_score": n["score"]})
        w.writerow(row)
    return buf.getvalue()


@app.command()
def predict(
    photos: List[str] = typer.Argument(..., metavar="PHOTO", help="Photos, folders (searched recursively) or glob patterns."),
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help="Model directory written by `img2gps fit`."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Supporting gallery photos to list per photo."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output on stdout: text, json, csv, geojson "
                               "(GIS tools) or kml (Google Earth)."),
    map_out: Optional[Path] = typer.Option(None, "--map", help="Also write an offline HTML map of the predictions."),
    geojson_out: Optional[Path] = typer.Option(None, "--geojson", metavar="FILE", help="Also write the predictions "
                                               "as GeoJSON (one point per photo, for GIS tools)."),
    kml_out: Optional[Path] = typer.Option(None, "--kml", metavar="FILE", help="Also write the predictions as KML "
                                           "(point and error circle per photo, for Google Earth)."),
    exif_out: Optional[Path] = typer.Option(None, "--write-exif", metavar="OUT", help="Write a copy of each JPEG "
                                            "with the found position in its EXIF GPS tags (the original is never "
                                            "changed): OUT is the copy's file for one photo, a folder for several."),
    runtime: Runtime = typer.Option(Runtime.torch, "--runtime", help="Run the query encoder with torch or onnx."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX file for --runtime onnx (default: "
                                        "MODEL/encoder.onnx, else an export cached once in the user cache dir)."),
    tiles: bool = typer.Option(True, "--tiles/--no-tiles", help="Let the HTML map try to load map tiles (network)."),
    max_megapixels: Optional[float] = typer.Option(None, "--max-megapixels", metavar="MP",
                                                   help=f"Refuse photos larger than this [default: {MAX_PIXELS / 1e6:g}]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --map/--geojson/--kml/--write-exif replace an "
                                   "existing file that is not their own kind of output (never one of the inputs)."),
):
    """Locate photos: position, error radius, confidence and the gallery photos that support it.

    Bad files are reported on stderr (one line each) and skipped; the exit code is 1 if any were skipped.
    """
    from tqdm.auto import tqdm

    from .. import geofiles
    from ..api import Img2GPS

    paths, problems = expand_photos(photos)
    if not paths and len(problems) == 1:  # one photo asked for: its own reason is the one line
        raise DataError(f"{problems[0][0]}: {problems[0][1]}")
    for a, why in problems:
        typer.echo(f"skipped {a}: {why}", err=True)
    if not paths:
        raise DataError("no photos to locate")
    from ..outputs import check_file, model_inputs

    inputs = [Path(p) for p in paths] + model_inputs(model) + ([onnx] if onnx else [])
    for out, kind in ((map_out, "map-html"), (geojson_out, "geojson"), (kml_out, "kml")):
        if out is not None:  # every output checked before any work: never over an input, never another kind
            check_file(out, inputs, kind, overwrite)
    exif_targets = _exif_targets(paths, exif_out, inputs, overwrite) if exif_out is not None else {}
    m = Img2GPS.load(model, runtime=runtime.value, onnx_path=onnx, max_pixels=megapixels_option(max_megapixels))
    records, preds, located, failed = [], [], [], len(problems)
    bar = tqdm(paths, desc="locating", unit="photo", disable=True if len(paths) < 2 else None,
                file=sys.stderr, leave=False)  # None: a bar only on a terminal, never in redirected output
    for p in bar:
        try:
            pred, meta = m.locate(p, top_k=top_k)
        except PhotoError as e:
            if len(paths) == 1 and not problems:  # a single photo: its reason is the error, not a batch skip
                raise
            failed += 1
            bar.write(f"skipped {e}", file=sys.stderr)
            continue
        preds.append(pred)
        located.append(p)
        records.append(_record(p, pred, meta))
        if fmt is Format.text:
            bar.write(as_text(records[-1]), file=sys.stdout)
    bar.close()
    if fmt is Format.json:
        typer.echo(json.dumps(records, indent=2))
    elif fmt is Format.csv:
        typer.echo(_csv(records, top_k), nl=False)
    elif fmt is Format.geojson:
        typer.echo(geofiles.geojson_text(records), nl=False)
    elif fmt is Format.kml:
        typer.echo(geofiles.kml_text(records), nl=False)
    for path, text in ((geojson_out, geofiles.geojson_text), (kml_out, geofiles.kml_text)):
        if path is not None and records:
            typer.echo(wrote(geofiles.write_atomic(path, text(records))), err=True)
    if exif_out is not None:
        failed += _write_exif_copies([(p, r) for p, r in zip(located, records)], exif_targets, len(paths) > 1)
    if map_out is not None and preds:
        from ..maps import write_map_html

        write_map_html(map_out, preds, gallery=m.gallery, labels=[Path(r["photo"]).name for r in records],
                       title=f"img2gps predictions ({m.spec})", tiles=tiles)
        typer.echo(wrote(map_out), err=True)
    if not records:
        raise PhotoError(", ".join(paths[:3]) + (" ..." if len(paths) > 3 else ""), "no photo could be located")
    if failed:
        typer.echo(f"{failed} of {counted(len(paths) + len(problems), 'input')} skipped", err=True)
        raise typer.Exit(1)


def _exif_targets(paths: list[str], out: Path, inputs: list[Path], overwrite: bool) -> dict[str, Path]:
    """--write-exif: photo -> its copy's path, every one checked before any work (outputs.check_file: never an
    input, an existing file only with --overwrite). OUT is the copy's file for one photo, a folder (copies keep
    the photos' names) for several. Raises DataError (one line)."""
    from ..outputs import check_file

    many = len(paths) > 1
    if many and out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; --write-exif needs a folder for several photos")
    targets, seen = {}, {}
    for p in paths:
        target = out / Path(p).name if many or out.is_dir() else out
        if target in seen:
            raise DataError(f"{target}: {seen[target]} and {p} share this name; give each its own --write-exif folder")
        seen[target] = p
        check_file(target, inputs, "exif-copy", overwrite)
        targets[p] = target
    return targets


def _write_exif_copies(done: list[tuple[str, dict]], targets: dict[str, Path], many: bool) -> int:
    """Each located photo's copy with its answer in EXIF (geofiles.write_exif_copy) at its checked target. A photo
    whose copy cannot be made is reported on one line and counted; returns how many failed."""
    from ..geofiles import write_exif_copy

    failed = 0
    for photo, rec in done:
        try:
            typer.echo(wrote(write_exif_copy(photo, rec, targets[photo])), err=True)
        except (PhotoError, DataError) as e:
            if not many:
                raise
            failed += 1
            typer.echo(f"skipped {e}", err=True)
    return failed


@app.command()
def serve(
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help="Model directory written by `img2gps fit`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to open it to the network)."),
    port: int = typer.Option(8000, "--port", help="Port."),
    max_upload_mb: float = typer.Option(25.0, "--max-upload-mb", help="Largest accepted upload, MiB."),
    max_megapixels: Optional[float] = typer.Option(None, "--max-megapixels", metavar="MP",
                                                   help=f"Refuse larger images with 413 [default: {MAX_PIXELS / 1e6:g}]."),
    tiles: bool = typer.Option(True, "--tiles/--no-tiles", help="Let the page try to load map tiles (needs a network)."),
    runtime: Runtime = typer.Option(Runtime.torch, "--runtime", help="Run the query encoder with torch or onnx."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX file for --runtime onnx."),
):
    """Serve the HTTP API (POST /predict, GET /health, /gallery/{id}, /docs) and the web page with a map."""
    import uvicorn

    from ..server import UploadLimits, create_app

    limits = UploadLimits(max_bytes=int(max_upload_mb * 2**20), max_pixels=megapixels_option(max_megapixels))
    application = create_app(model, limits=limits, tiles=tiles, runtime=runtime.value, onnx_path=onnx)
    typer.echo(f"img2gps: serving {application.state.model.spec} on http://{host}:{port}/  (API docs: /docs)", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")


class ExportFormat(str, Enum):
    onnx = "onnx"
    leaderboard = "leaderboard"


@app.command()
def export(
    model: Path = typer.Option(..., "--model", "-m", metavar="MODEL_DIR", help="Model directory written by `img2gps fit`."),
    fmt: Optional[ExportFormat] = typer.Option(None, "--format", help="onnx: the query encoder as one .onnx file; "
                                               "leaderboard: model.py + preprocess.py + model.pt for the course "
                                               "leaderboard (a folder)."),
    out: Optional[Path] = typer.Option(None, "--out", help="File (onnx) or folder (leaderboard) to write."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="Same as --format onnx --out PATH (MODEL/encoder.onnx "
                                        "is used by `predict --runtime onnx` without --onnx)."),
    max_mb: Optional[float] = typer.Option(None, "--max-mb", help="Warn when the written model.pt / .onnx is larger "
                                           "than this many MiB (e.g. the leaderboard's upload limit)."),
    check: int = typer.Option(8, "--check-images", min=1, help="Gallery thumbnails to compare PyTorch and ONNX on."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --onnx/--out replace a file that is not an ONNX model."),
):
    """Export a fitted model: its query-embedding network to ONNX (checked against PyTorch), or the course
    leaderboard's model.py + preprocess.py + model.pt (self-contained: it imports only numpy, pandas, torch, Pillow and
    opencv, which the leaderboard's backend has)."""
    from ..predictors.registry import load_model

    if onnx is not None:
        if fmt == ExportFormat.leaderboard or (out is not None and out != onnx):
            raise DataError("--onnx PATH means --format onnx --out PATH; do not combine it with another format/--out")
        fmt, out = ExportFormat.onnx, onnx
    if fmt is None or out is None:
        raise DataError("give --format onnx|leaderboard and --out PATH (or --onnx PATH)")
    from ..outputs import check_file, model_inputs, refuse_input

    if fmt == ExportFormat.leaderboard:
        refuse_input(out, model_inputs(model), folder=True)
    else:
        check_file(out, model_inputs(model), "onnx", overwrite)
    if fmt == ExportFormat.leaderboard:
        from ..export.leaderboard import export_leaderboard

        predictor = load_model(model)  # refuses unexportable methods before writing anything
        report = export_leaderboard(predictor, out, model_dir=model)
    else:
        from ..export import export_onnx

        predictor = load_model(model)
        report = export_onnx(predictor, out, model_dir=model, n_check=check, opset=opset)
    typer.echo(report.line())
    if max_mb is not None and report.size_bytes > max_mb * 2**20:
        typer.echo(f"warning: {report.weights_path} is {report.size_bytes / 2**20:.1f} MiB, over --max-mb {max_mb:g}",
                   err=True)
