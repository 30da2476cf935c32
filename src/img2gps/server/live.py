"""The served model, kept in step with its folder: another process may replace it while the server runs
(`index add|remove|replace`, `fit --overwrite`), and the server must not keep answering from the old gallery
without a word.

Each request compares model.json's stamp (modeldir.model_stamp; every writer replaces that file) with the one
loaded; after a change the next request loads the new model first. If the new model cannot be loaded, the old one
keeps serving and `stale` says why (the API's /health and /model show it, and so does the page).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from ..api import Img2GPS
from ..errors import Img2GPSError
from ..modeldir import model_stamp


class LiveModel:
    """`current()` -> the Img2GPS to answer with. model_dir None: a fixed model (never reloaded)."""

    def __init__(self, model: Img2GPS, model_dir: Path | None, load: Callable[[], Img2GPS],
                 on_change: Callable[[Img2GPS], None] = lambda m: None):
        self.model, self.model_dir, self._load, self._on_change = model, model_dir, load, on_change
        self._stamp = model_stamp(model_dir) if model_dir is not None else None
        self._lock = threading.Lock()
        self.stale: str | None = None  # why the model on disk is not the one serving (None: they are the same)
        self.reloads = 0
        self.loaded_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def current(self) -> Img2GPS:
        if self.model_dir is None or model_stamp(self.model_dir) == self._stamp:
            return self.model
        with self._lock:  # one request reloads; the others wait for it, then see the new stamp
            stamp = model_stamp(self.model_dir)
            if stamp == self._stamp:
                return self.model
            self._stamp = stamp  # a failed load is retried only when the model changes again
            try:
                model = self._load()
            except Img2GPSError as e:
                self.stale = (f"the model at {self.model_dir} changed on disk but could not be loaded ({e}); still "
                              f"serving the one loaded at {self.loaded_at}")
                return self.model
            self.model, self.stale = model, None
            self.reloads += 1
            self.loaded_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self._on_change(model)
        return self.model

    def status(self) -> dict:
        """For the API: when the serving model was loaded, how often it was reloaded, and why it is stale."""
        return {"loaded_at": self.loaded_at, "reloads": self.reloads, "stale": self.stale}
