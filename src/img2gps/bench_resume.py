"""Per-fold checkpoints of a bench run, so a run stopped part-way continues from its last finished fold.

Each finished (gallery fraction, method, fold) is saved atomically as one JSON file in a folder beside the bench
JSON (`OUT.folds/`), under a key of everything that decides its figures: the data (name and a digest of its
photos' names and positions), the protocol, the method specs, the query kinds and their seed, the fractions and
the code revision. A folder holding another key is cleared (and the run says so) before anything is reused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

from .errors import DataError
from .outputs import atomic_write, counted

KEY_FILE = "key.json"
SUFFIX = ".fold.json"


def run_key(ds, protocol: str, specs: Sequence[str], kinds: Sequence[str], seed: int,
            fractions: Sequence[float], code: dict) -> dict:
    """The key of a bench run (JSON-able dict): equal keys give equal fold results, up to timing."""
    h = hashlib.sha256()
    for name, lat, lon in zip(ds.ids, ds.lat, ds.lon):
        h.update(f"{name}\0{float(lat):.9f}\0{float(lon):.9f}\n".encode())
    return {"data": ds.name, "data_sha256": h.hexdigest(), "protocol": protocol, "methods": list(specs),
            "query_as": list(kinds), "seed": int(seed), "fractions": [float(f) for f in fractions],
            "code": {k: code.get(k) for k in ("version", "git_revision", "git_dirty")}
            | {"sources_sha256": sources_digest()}}


def sources_digest() -> str:
    """sha256 over img2gps's own Python sources: the code version even with uncommitted changes."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


class FoldCheckpoints:
    """The finished folds of one bench run, in `folder` (created on the first save).

    load(frac, spec, fold) -> (rows, fit_s) or None; save(...) writes one fold atomically. Raises DataError when
    `folder` exists and was not written by a bench run (nothing the user made is overwritten)."""

    def __init__(self, folder: Path, key: dict, say: Callable[[str], None] = print):
        self.folder, self.key, self.say = Path(folder), key, say
        if self.folder.exists() and not (self.folder / KEY_FILE).exists() and any(self.folder.iterdir()):
            raise DataError(f"{self.folder}: exists and is not a bench checkpoint folder; "
                            "move it or pick another --json")
        old = self._read(self.folder / KEY_FILE)
        if old is not None and old != key:
            changed = ", ".join(k for k in key if old.get(k) != key[k]) or "format"
            self.say(f"note: {self.folder} holds folds of another run (changed: {changed}); starting fresh")
            self.clear()
        self.done = sorted(p.name for p in self.folder.glob(f"*{SUFFIX}")) if self.folder.exists() else []
        if self.done:
            self.say(f"resuming: {counted(len(self.done), 'finished fold')} read from {self.folder}")

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _path(self, frac: float, spec: str, fold: int) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
        tag = hashlib.sha256(spec.encode()).hexdigest()[:8]  # two specs that sanitise alike stay apart
        return self.folder / f"f{frac:g}-{safe}-{tag}-fold{fold}{SUFFIX}"

    def load(self, frac: float, spec: str, fold: int) -> tuple[list[dict], float] | None:
        d = self._read(self._path(frac, spec, fold))
        if d is None:
            return None
        return d["rows"], float(d["fit_s"])

    def save(self, frac: float, spec: str, fold: int, rows: list[dict], fit_s: float) -> None:
        if not (self.folder / KEY_FILE).exists():
            atomic_write(self.folder / KEY_FILE, lambda t: t.write_text(json.dumps(self.key, indent=1)))
        # NaN stays NaN (Python's JSON reads it back): the rows round-trip exactly
        text = json.dumps({"fit_s": fit_s, "rows": rows}, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        atomic_write(self._path(frac, spec, fold), lambda t: t.write_text(text))

    def clear(self) -> None:
        self.remove(self.folder)

    @staticmethod
    def remove(folder: Path) -> None:
        """Remove a checkpoint folder's files (only those a bench run writes), and the folder when it is then empty."""
        folder = Path(folder)
        if not (folder / KEY_FILE).exists():
            return
        for p in folder.glob(f"*{SUFFIX}"):
            p.unlink()
        (folder / KEY_FILE).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass


def folder_for(json_path: Path) -> Path:
    """The checkpoint folder beside a bench JSON: OUT.json -> OUT.folds/."""
    return Path(json_path).with_suffix(".folds")
