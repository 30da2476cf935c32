"""Which code produced a result: the git revision of the img2gps checkout and whether it had uncommitted changes.

Every bench JSON records it (bench_outputs.write_outputs, analysis.report, bench/*.py), so two files that disagree
about the same method on the same folds can be traced to the code each was run with.
"""
from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

from . import __version__

REPO = Path(__file__).resolve().parents[2]  # src/img2gps/provenance.py -> the checkout's root


def code_revision(repo: Path = REPO) -> dict:
    """{"version", "git_revision" (40 hex digits, or None outside a git checkout), "git_dirty" (bool or None:
    tracked files differ from that revision)}. Never raises: a missing git is recorded as None."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if rev else None
    return {"version": __version__, "git_revision": rev.strip() if rev else None,
            "git_dirty": (bool(status.strip()) if status is not None else None)}


PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """20 hex digits of SHA-1 over the installed img2gps package's source (every .py file's path and bytes, in
    path order): it changes with any change to the code, committed or not, in a checkout or an installed wheel.
    What keys the cache of models fitted by this code (`img2gps demo`)."""
    h = hashlib.sha1()
    for f in sorted(PACKAGE.rglob("*.py")):
        h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:20]
