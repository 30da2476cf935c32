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
from ..errors import DataError, PhotoError
from ..photos import MAX_PIXELS


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"


class Runtime(str, Enum):
    torch = "torch"
    onnx = "onnx"


def expand_photos(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Arguments -> (photo paths in order, [(argument, problem)]). Folders are walked recursively for photo
    suffixes; a glob is expanded here too (quoted globs, or shells that do not expand them)."""
    from ..photos import PHOTO_SUFFIXES

    photos, problems, seen = [], [], set()

    def add(p: str):
        if p not in seen:
            seen.add(p)
            photos.append(p)

    for a in args:
        p = Path(a)
        if p.is_dir():
            # a broken link named like a photo is kept, so that it is reported rather than silently lost
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in PHOTO_SUFFIXES
                           and (f.is_file() or (f.is_symlink() and not f.exists())))
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


def _record(photo: str, pred) -> dict:
    from ..api import exif_distance_m

    from ..photos import readable_name

    d = {"photo": readable_name(photo)}
    d.update(pred.to_dict())
    d["exif_distance_m"] = exif_distance_m(pred)
    return d


def _text(rec: dict) -> str:
    """One prediction as text: the answer, whether it was recognised (in words), then the supporting gallery
    photos best first, each score labelled with what it is (inliers of a verified match, else cosine similarity)."""
    lines = [rec["photo"]]
    status = ("recognised: verified against gallery photos" if rec["recognised"]
              else "not recognised: a wide estimate")
    lines.append(f"  prediction  {rec['latitude']:.6f}, {rec['longitude']:.6f}   radius {rec['radius_m']:.0f} m   "
                 f"confidence {rec['confidence']:.2f}   {rec['method']}")
    lines.append(f"  {status}")
    if rec["photo_exif_position"]:
        la, lo = rec["photo_exif_position"]
        lines.append(f"  photo EXIF  {la:.6f}, {lo:.6f}   {rec['exif_distance_m']:.0f} m from the prediction")
    neighbours = sorted(rec["neighbours"], key=lambda n: -n["score"])
    if neighbours:
        lines.append("  supporting gallery photos (" + ("inliers of the verified match" if rec["recognised"]
                                                        else "cosine similarity of the embeddings") + "):")
    for i, n in enumerate(neighbours, 1):
        score = (f"inliers {n['score']:.0f}" if rec["recognised"] else f"cosine similarity {n['score']:.3f}")
        lines.append(f"  {i:>2}. {n['latitude']:.6f}, {n['longitude']:.6f}  {score}  {n['image_id']}")
    return "\n".join(lines)


def _csv(records: list[dict], top_k: int) -> str:
    cols = ["photo", "latitude", "longitude", "radius_m", "confidence", "recognised", "method",
            "exif_latitude", "exif_longitude", "exif_distance_m"]
    for i in range(1, top_k + 1):
        cols += [f"n{i}_image", f"n{i}_latitude", f"n{i}_longitude", f"n{i}_score"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {k: r[k] for k in cols[:7]}
        exif = r["photo_exif_position"] or (None, None)
        row.update(exif_latitude=exif[0], exif_longitude=exif[1], exif_distance_m=r["exif_distance_m"])
        for i, n in enumerate(r["neighbours"][:top_k], 1):
            row.update({f"n{i}_image": n["image_id"], f"n{i}_latitude": n["latitude"],
                        f"n{i}_longitude": n["longitude"], f"n{i}_score": n["score"]})
        w.writerow(row)
    return buf.getvalue()


@app.command()
def predict(
    photos: List[str] = typer.Argument(..., help="Photos, folders (searched recursively) or glob patterns."),
    model: Path = typer.Option(..., "--model", "-m", help="Model directory written by `img2gps fit`."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Supporting gallery photos to list per photo."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output on stdout: text, json or csv."),
    map_out: Optional[Path] = typer.Option(None, "--map", help="Also write an offline HTML map of the predictions."),
    runtime: Runtime = typer.Option(Runtime.torch, "--runtime", help="Run the query encoder with torch or onnx."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX file for --runtime onnx (default: "
                                        "MODEL/encoder.onnx, else an export cached once in the user cache dir)."),
    tiles: bool = typer.Option(True, "--tiles/--no-tiles", help="Let the HTML map try to load map tiles (network)."),
    max_megapixels: Optional[float] = typer.Option(None, "--max-megapixels", metavar="MP",
                                                   help=f"Refuse photos larger than this [default: {MAX_PIXELS / 1e6:g}]."),
):
    """Locate photos: position, error radius, confidence and the gallery photos that support it.

    Bad files are reported on stderr (one line each) and skipped; the exit code is 1 if any were skipped.
    """
    from tqdm.auto import tqdm

    from ..api import Img2GPS

    paths, problems = expand_photos(photos)
    for a, why in problems:
        typer.echo(f"skipped {a}: {why}", err=True)
    if not paths:
        raise DataError("no photos to locate")
    m = Img2GPS.load(model, runtime=runtime.value, onnx_path=onnx, max_pixels=megapixels_option(max_megapixels))
    records, preds, failed = [], [], len(problems)
    bar = tqdm(paths, desc="locating", unit="photo", disable=len(paths) < 2, file=sys.stderr, leave=False)
    for p in bar:
        try:
            pred = m.predict(p, top_k=top_k)
        except PhotoError as e:
            failed += 1
            bar.write(f"skipped {e}", file=sys.stderr)
            continue
        preds.append(pred)
        records.append(_record(p, pred))
        if fmt is Format.text:
            bar.write(_text(records[-1]), file=sys.stdout)
    bar.close()
    if fmt is Format.json:
        typer.echo(json.dumps(records, indent=2))
    elif fmt is Format.csv:
        typer.echo(_csv(records, top_k), nl=False)
    if map_out is not None and preds:
        from ..maps import write_map_html

        write_map_html(map_out, preds, gallery=m.gallery, labels=[Path(r["photo"]).name for r in records],
                       title=f"img2gps predictions ({m.spec})", tiles=tiles)
        typer.echo(f"map: {map_out}", err=True)
    if not records:
        raise PhotoError(", ".join(paths[:3]) + (" ..." if len(paths) > 3 else ""), "no photo could be located")
    if failed:
        typer.echo(f"{failed} of {len(paths) + len(problems)} input(s) skipped", err=True)
        raise typer.Exit(1)


@app.command()
def serve(
    model: Path = typer.Option(..., "--model", "-m", help="Model directory written by `img2gps fit`."),
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


@app.command()
def export(
    model: Path = typer.Option(..., "--model", "-m", help="Model directory written by `img2gps fit`."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (MODEL/encoder.onnx is used by "
                              "`predict --runtime onnx` without --onnx)."),
    check: int = typer.Option(8, "--check-images", min=1, help="Gallery thumbnails to compare PyTorch and ONNX on."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
):
    """Export the model's query-embedding network (with its pooling) to ONNX and check it against PyTorch."""
    from ..export import export_onnx
    from ..predictors.registry import load_model

    predictor = load_model(model)
    report = export_onnx(predictor, onnx, model_dir=model, n_check=check, opset=opset)
    typer.echo(report.line())
