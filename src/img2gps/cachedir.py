"""Where img2gps keeps what it can recompute (features, keypoints, pair caches, weights exports)."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """$IMG2GPS_CACHE, else $XDG_CACHE_HOME/img2gps, else ~/.cache/img2gps (never beside the data)."""
    env = os.environ.get("IMG2GPS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "img2gps"
