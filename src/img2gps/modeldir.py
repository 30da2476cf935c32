"""The model directory: the model.json manifest, file checksums and atomic writes.

This is the only module that reads or writes a model directory's manifest; predictors hand it their files
(through a callback) and their small JSON state. Layout: `model.json` + `gallery.csv` + `thumbs/` + the
method's own files. Every file is checksummed (SHA-256) into the manifest at save time and verified by
`read_manifest`. What is checked when: loading a model (`read_manifest(verify=True)`, i.e. "quick") hashes every
file up to QUICK_HASH_MAX bytes and checks the size of larger ones (a 20,000-photo keypoint store is GBs; hashing
it would dominate the load time); `read_manifest(verify="full")` (the `img2gps verify --model DIR` command)
hashes every file.

Writers lock the model (`model_lock`): a lock file beside the directory (not inside it: the directory itself is
replaced by rename), held with flock for the whole read-modify-write, so two `index add` never lose one another's
photos and two `fit --out` never both claim one folder. A reader (serve) needs no lock: it sees the old model or
the new one, never a mix, and notices the change by `model_stamp`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .data.outdir import atomic_dir
from . import __version__
from .errors import ModelError, PhotoError
from .provenance import code_fingerprint

# 2: per-area plane, radius models and calibrations (area.py); 3: rerank's gallery store (uint16 positions, a
# keypoint cap, gzip descriptors; float16 VLAD: verification/store.py, predictors/rerank/state.py)
FORMAT_VERSION = 3
MANIFEST = "model.json"
QUICK_HASH_MAX = 64 * 2**20  # bytes: larger files are size-checked at load and hashed by verify="full"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a model's numbers depend on (missing ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("img2gps", "torch", "numpy", "faiss-cpu", "opencv-python-headless", "onnxruntime", "pillow"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def json_default(o):
    """json.dumps default= for numpy scalars/arrays and paths."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_model_dir(model_dir: Path, manifest: dict[str, Any], write_files: Callable[[Path], None]) -> None:
    """Write a model directory atomically.

    `write_files(tmp)` writes the method's files into a temp dir beside the target; then every file is
    checksummed into `manifest` (format_version, created, package_versions and checksums are filled in here),
    model.json is written, and the temp dir replaces `model_dir` by rename (an old model is replaced only at
    the very end; on any error nothing changes).
    """
    with atomic_dir(Path(model_dir)) as tmp:
        write_files(tmp)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        full = {"format_version": FORMAT_VERSION, **manifest,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "package_versions": package_versions(), "code_fingerprint": code_fingerprint(),
                "checksums": {str(p.relative_to(tmp)): file_sha256(p) for p in files},
                "sizes": {str(p.relative_to(tmp)): p.stat().st_size for p in files}}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, default=json_default))


def read_manifest(model_dir: Path, verify: bool | str = True) -> dict[str, Any]:
    """Read model.json and check the files it lists; name exactly what is wrong.

    verify: True or "quick" (hash files up to QUICK_HASH_MAX bytes, size-check larger ones; a manifest
    without sizes hashes everything), "full" (hash every file), False (no file checks).
    Raises ModelError (missing dir/manifest, corrupt JSON, unsupported format version, missing, truncated or
    corrupted file).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    mpath = model_dir / MANIFEST
    if not mpath.is_file():
        raise ModelError(f"{model_dir}: no {MANIFEST} (not an img2gps model directory)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{mpath}: corrupted manifest ({e})") from None
    if not isinstance(manifest, dict) or "spec" not in manifest or "method" not in manifest:
        raise ModelError(f"{mpath}: manifest lacks spec/method")
    fv = manifest.get("format_version")
    if fv != FORMAT_VERSION:
        raise ModelError(f"{mpath}: {writer(manifest)} (model format {fv}); this img2gps {__version__} reads "
                         f"format {FORMAT_VERSION}: re-fit the model")
    if verify not in (True, False, "quick", "full"):
        raise ValueError(f"verify must be True, False, 'quick' or 'full', not {verify!r}")
    if verify:
        sizes = manifest.get("sizes", {})
        for rel, digest in manifest.get("checksums", {}).items():
            p = model_dir / rel
            if not p.is_file():
                raise ModelError(f"{model_dir}: missing file {rel}")
            size = sizes.get(rel)
            if size is not None and p.stat().st_size != size:
                raise ModelError(f"{model_dir}: file {rel} is corrupted (size {p.stat().st_size}, expected {size})")
            if verify == "full" or size is None or size <= QUICK_HASH_MAX:
                if file_sha256(p) != digest:
                    raise ModelError(f"{model_dir}: file {rel} is corrupted (checksum mismatch)")
    return manifest


LOCK_WAIT_S = 600.0  # how long a second writer waits for the first by default


def lock_path(model_dir: Path) -> Path:
    """The lock file of a model directory: a hidden file beside it, stable while the directory is replaced."""
    model_dir = Path(model_dir).expanduser().absolute()
    return model_dir.parent / f".{model_dir.name}.img2gps-lock"


@contextlib.contextmanager
def model_lock(model_dir: Path, action: str, wait_s: float = LOCK_WAIT_S,
               say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> Iterator[None]:
    """Hold the writer's lock on `model_dir` inside the block. When another process holds it, say so in one line
    and wait up to `wait_s` seconds (0: do not wait), then raise ModelError naming the holder (pid and action).
    `action` (e.g. "index add") is recorded for the other writers' messages."""
    import fcntl

    path = lock_path(model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    waited = f"waited {wait_s:g} s; " if wait_s > 0 else ""
                    raise ModelError(f"{model_dir}: {holder} is writing this model ({waited}try again when it has "
                                     "finished)") from None
                if not told:
                    say(f"waiting for {holder} to finish writing {model_dir} (up to {wait_s:g} s)")
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {action}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would let two writers lock two files)


def _holder(path: Path) -> str:
    try:
        pid, action = path.read_text().split(None, 1)
        return f"another img2gps process (pid {int(pid)}, {action.strip()})"
    except (OSError, ValueError):
        return "another img2gps process"


def model_stamp(model_dir: Path) -> tuple | None:
    """What identifies the model now on disk (model.json's inode, mtime, size; every write replaces it), or None
    when there is none: a reader compares stamps to notice that a writer replaced the model."""
    try:
        st = (Path(model_dir) / MANIFEST).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def writer(manifest: dict[str, Any]) -> str:
    """Which code wrote a model, in words: the img2gps version and the code fingerprint in its manifest."""
    pv = manifest.get("package_versions")
    version = pv.get("img2gps") if isinstance(pv, dict) else None
    code = manifest.get("code_fingerprint")
    return (f"written by img2gps {version or '(unknown version)'}"
            + (f", code {str(code)[:10]}" if code else ", before code fingerprints"))


THUMB_SIDE = 200  # px: the web page shows a neighbour in a ~160 x 96 CSS px card (server/static/style.css)


def write_thumbnails(ds, out: Path, side: int = THUMB_SIDE) -> None:
    """Small JPEGs (long side `side` px, quality 80) of a GeoDataset's photos, so a model works without the
    photo folder. 200 px: 9.6 KB per photo of the 1,000-photo synthetic gallery, 23.1 KB at 320 px (docs/scale.md)."""
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(ds.ids):
        try:
            im = ds.open(i, max_side=side)
        except PhotoError:
            continue
        im.save(out / thumb_name(name), "JPEG", quality=80)


def thumb_name(image_id: str) -> str:
    """File name of a gallery photo's thumbnail under thumbs/."""
    return hashlib.sha1(image_id.encode()).hexdigest()[:20] + ".jpg"
