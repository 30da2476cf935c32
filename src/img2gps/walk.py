"""Walking a photo folder the way every command does (`data build`, `predict FOLDER`, `index add`).

Symbolic links to folders are followed (an album is often a link to another disk), each real folder is read
once: a link back to a folder above it (a loop) or to a folder already read is skipped and reported, as is a
link that points nowhere or to a folder that cannot be read. `Path.rglob` before Python 3.13 silently skips
linked folders, which is why this exists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Container


def walk_files(root: Path, listed_dirs: Container[str] = ()) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files under `root` (links followed), sorted, as paths through `root`; and [(path, why skipped)] for linked
    folders not entered. Broken links are returned as files (the caller reports them when it opens them), and so
    are folders whose (lower-case) suffix is in `listed_dirs` (a folder named like a photo is reported, not
    silently walked into and forgotten; its contents are read too)."""
    root = Path(root)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen = {os.path.realpath(root): root}

    def onerror(e: OSError) -> None:
        skipped.append((Path(e.filename or root), f"folder cannot be read ({e.strerror})"))

    for here, dirs, names in os.walk(root, followlinks=True, onerror=onerror):
        keep = []
        for d in sorted(dirs):
            p = Path(here) / d
            real = os.path.realpath(p)
            if real in seen:
                first = seen[real]
                why = ("link loop: points back to the folder " if _inside(Path(here), first)
                       else "link to a folder already read as ") + str(first)
                skipped.append((p, why))
            else:
                seen[real] = p
                keep.append(d)
        dirs[:] = keep
        files += [Path(here) / n for n in names]
        files += [Path(here) / d for d in dirs if Path(d).suffix.lower() in listed_dirs]
    return sorted(files), skipped


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents
