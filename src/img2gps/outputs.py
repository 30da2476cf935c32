"""Output files that never overwrite what the user gave: the one check every command's file writer uses; and the
output wording shared by every message (`wrote`, `counted`). A leaf: it imports only errors, so every stage may
word its counts with it.

Rules (data/outdir.check_out applies the first to output folders):
- an output is never one of the command's inputs: not the same path once links are resolved, not the same file
  through a hard link (st_dev, st_ino), not a file inside an input folder, and an output folder never contains
  an input. `--overwrite` does not lift this.
- an existing file is replaced only when it is this command's own kind of output, recognised by its content
  (`KINDS`); anything else needs `--overwrite`.
- running out of disk space (or quota, or a read-only disk) while writing is a one-line error naming the folder.
Files are written atomically (temp file beside the target, then rename), so a hard link to an old output is
never written through.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import DataError

_HEAD = 1 << 16  # bytes read to recognise a file's kind


def _json_with(*keys: str) -> Callable[[Path, bytes], bool]:
    """A JSON object holding any of `keys`."""
    def ok(path: Path, head: bytes) -> bool:
        if not head.lstrip().startswith(b"{"):
            return False
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and any(k in d for k in keys)
    return ok


def _csv_header(*cols: str) -> Callable[[Path, bytes], bool]:
    def ok(path: Path, head: bytes) -> bool:
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
        return all(c in first for c in cols)
    return ok


# kind -> (words for messages, recogniser(path, first bytes)): what img2gps itself writes
KINDS: dict[str, tuple[str, Callable[[Path, bytes], bool]]] = {
    "bench-json": ("img2gps results JSON", _json_with("results", "table")),  # bench/eval, analyze tables
    "predictions-csv": ("img2gps predictions CSV", _csv_header("image", "pred_lat", "pred_lon")),
    "plot-png": ("img2gps plot (PNG)", lambda p, h: h.startswith(b"\x89PNG") and b"matplotlib" in h[:4096].lower()),
    "map-html": ("img2gps HTML map", lambda p, h: b'<meta name="generator" content="img2gps">' in h[:4096]),
    # torch.onnx writes ModelProto field 1 (ir_version, tag 0x08) then field 2, producer_name "pytorch"
    "onnx": ("ONNX model", lambda p, h: h[:1] == b"\x08" and b"pytorch" in h[:64]),
    "geojson": ("img2gps GeoJSON", _json_with("features")),
    "kml": ("img2gps KML file", lambda p, h: b"<kml" in h[:4096] and b"img2gps" in h[:4096]),
    # a photo copy with the answer in its EXIF: an existing file there may be anyone's photo, so never replaced
    # without --overwrite
    "exif-copy": ("img2gps EXIF copy", lambda p, h: False),
}


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def refuse_input(out: Path, inputs: Iterable[Path], folder: bool = False, inside_ok: bool = False) -> None:
    """DataError (one line) when OUT is one of `inputs` (files or folders): the same path after resolving links,
    the same file through a hard link, inside an input folder (unless inside_ok: a new model folder may sit in
    its dataset, it replaces nothing there), or (folder=True: OUT is an output folder) a folder that contains an
    input."""
    o = Path(out).expanduser().resolve()
    ost = o.stat() if o.exists() else None
    for p in inputs:
        q = Path(p).expanduser().resolve()
        if not q.exists():
            continue
        if _inside(o, q) and not (inside_ok and o != q):
            what = "is" if o == q else "is inside"
            raise DataError(f"{out}: output {what} the input {p}; choose a path outside the command's inputs")
        if folder and _inside(q, o):
            raise DataError(f"{out}: output folder contains the input {p}; choose another folder")
        if ost is None or ost.st_nlink < 2 or o.is_dir():
            continue
        qst = q.stat()
        if q.is_file() and _same_file(ost, qst):
            raise DataError(f"{out}: output is the input {p} (a hard link to it); choose another path")
        if q.is_dir():
            for f in q.rglob("*"):
                try:
                    if f.is_file() and _same_file(ost, f.stat()):
                        raise DataError(f"{out}: output is the input {f} (a hard link to it); choose another path")
                except OSError:
                    continue


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun as every message words them: "1 photo", "0 photos", "3 photos" (plural: the noun's
    plural when it is not noun + "s", e.g. counted(n, "query", "queries")). The one plural rule: no message
    writes "photo(s)" or "1 photos"."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def wrote(path: str | Path) -> str:
    """The one line every command prints for a file or folder it wrote (a map, a report, a copy, a table)."""
    return f"wrote {path}"


def check_file(out: Path, inputs: Iterable[Path], kind: str, overwrite: bool = False) -> None:
    """Refuse (DataError, one line) to write output file OUT of `kind` (a KINDS key) when it is one of the
    command's inputs, is a folder, or exists and is not that kind of img2gps output (unless overwrite)."""
    words, recognise = KINDS[kind]
    out = Path(out)
    refuse_input(out, inputs)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        try:
            with open(out, "rb") as f:
                head = f.read(_HEAD)
        except OSError as e:
            raise DataError(f"{out}: exists and cannot be read ({e.strerror}); not replacing it") from None
        if not recognise(out, head):
            raise DataError(f"{out}: exists and is not an {words}; pass --overwrite to replace it")


def model_inputs(model_dir: Path) -> list[Path]:
    """A model directory's own files (model.json and every file it lists) as inputs for check_file: files the
    model reads, while new files beside them (an exported encoder.onnx) are allowed."""
    model_dir = Path(model_dir)
    files = [model_dir / "model.json"]
    try:
        files += [model_dir / rel for rel in json.loads(files[0].read_text()).get("checksums", {})]
    except (OSError, ValueError, AttributeError):
        pass
    return files


def dataset_inputs(data: str | Path) -> list[Path]:
    """A dataset argument (folder, parquet file or hf:// address) as inputs: the path itself when it exists."""
    p = Path(str(data))
    return [p] if data and not str(data).startswith("hf://") and p.exists() else []


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def disk_problem(e: BaseException) -> bool:
    """True for an OSError that means the output disk cannot take the data (full, over quota, read-only)."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def write_failed(where: Path, e: OSError) -> DataError:
    """The one-line error for a failed write under `where` (the user's output path, not a temp name)."""
    return DataError(f"{where}: cannot write there ({e.strerror or e}); nothing was left in its place")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) for a temp file beside PATH, then rename it over PATH; on failure remove the temp file.
    A disk problem becomes write_failed(PATH)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if disk_problem(e):
            raise write_failed(path, e) from None
        raise
    return path
