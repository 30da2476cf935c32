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
from ..outputs import disk_problem, refuse_input, write_failed


def check_out(out: Path, protected: list[Path], overwrite: bool, marker: str) -> None:
    """Refuse OUT when it is (inside) a protected input, contains one, or holds something we did not write.

    `marker` is the file our own command writes last (report.json, split_report.json): with --overwrite we
    replace only an empty folder or a previous result of the same command, never an arbitrary folder.
    """
    refuse_input(out, protected, folder=True)  # the one input rule (outputs.py)
    o = out.expanduser().resolve()
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
    """Yield a temp folder beside OUT; on success swap it into place, on any failure delete it. A full (or
    read-only) disk is one DataError naming OUT: the partial result is deleted, OUT stays as it was."""
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_problem(e):
            raise write_failed(out, e) from None
        raise
