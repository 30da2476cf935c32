"""Output folders that never clobber user data: refuse unsafe targets, build in a temp dir, then rename.

An interrupted or failed run leaves OUT exactly as it was (absent, or the previous result), never half-written.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_out(out: Path, protected: list[Path], overwrite: bool, marker: str) -> None:
    """Refuse OUT when it is (inside) a protected input, contains one, or holds something we did not write.

    `marker` is the file our own command writes last (report.json, split_report.json): with --overwrite we
    replace only an empty folder or a previous result of the same command, never an arbitrary folder.
    """
    o = out.expanduser().resolve()
    for p in protected:
        q = p.expanduser().resolve()
        if _inside(o, q):
            raise DataError(f"{out}: output folder is inside the input {p}; choose a folder outside it")
        if _inside(q, o):
            raise DataError(f"{out}: output folder contains the input {p}; choose another folder")
    if o.exists() and not o.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if o.is_dir() and any(o.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: folder is not empty; pass --overwrite to replace it")
        if not (o / marker).is_file():
            raise DataError(f"{out}: not empty and not an earlier img2gps output (no {marker}); "
                            "refusing to replace it even with --overwrite")


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp folder beside OUT; on success swap it into place, on any failure delete it."""
    out = out.expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a dataset should be readable like any folder
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)  # put the previous result back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
