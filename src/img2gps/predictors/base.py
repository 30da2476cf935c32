"""The predictor contract every method implements: BasePredictor (queries in as types.Query, Predictions out;
specs and configs are predictors/spec.py's, model-directory I/O is img2gps.modeldir's)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from ..data.sources import GeoDataset
from ..errors import ModelError
from ..features.indexing import IndexingConfig
from ..modeldir import read_manifest, thumb_name, write_model_dir, write_thumbnails
from ..outputs import counted
from ..photos import ImageInput, open_query
from ..types import Neighbour, Prediction, Query
from .spec import config_from_params, config_from_saved, parse_spec, validate

__all__ = ["BasePredictor", "Neighbour", "Prediction", "Query", "config_from_params", "parse_spec"]


class BasePredictor:
    """Shared plumbing: spec/config, opening query images (metadata stripped), gallery table, save/load."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # Largest side a query photo is decoded at (None = full size): whoever makes the Query reads it. Methods
    # needing detail raise it.
    query_max_side: ClassVar[int | None] = 640

    def __init__(self, config=None, spec: str | None = None):
        self.spec = spec or self.name
        # registry.make_predictor validates while parsing; a config built in code is checked the same way here
        self.config = validate(config if config is not None else self.Config(), f"method spec {self.spec!r}")
        self.gallery: pd.DataFrame | None = None  # image, Latitude, Longitude of the fitted gallery
        self.gallery_fingerprint: str | None = None
        self.metrics: dict[str, Any] = {}
        self.manifest: dict[str, Any] | None = None  # model.json of a loaded model (set by load)
        self._train: GeoDataset | None = None
        # How gallery features are computed (engine, workers); never saved: the model does not depend on it.
        # Library default: in-process; the CLI's --workers defaults to all cores.
        self.indexing = IndexingConfig(workers=1, engine="local")
        self.indexing_stats = None

    # -- fitting -----------------------------------------------------------------------------------------
    def fit(self, train: GeoDataset) -> None:
        if len(train) == 0:
            raise ModelError("cannot fit on an empty gallery")
        self._train = train
        self.gallery = train.table[["image", "Latitude", "Longitude"]].reset_index(drop=True).copy()
        self.gallery_fingerprint = train.fingerprint()
        self._fit(train)

    def _fit(self, train: GeoDataset) -> None:
        raise NotImplementedError

    # -- appending ---------------------------------------------------------------------------------------
    def add_refusal(self) -> str | None:
        """Why this model cannot take new gallery photos without a re-fit (None when it can)."""
        return (f"{self.spec}: a {self.name} model cannot be extended in place (index add, remove and replace "
                "support knn and rerank); re-fit it with `img2gps fit`")

    def add(self, new: GeoDataset) -> None:
        """Append photos to a fitted (or loaded) gallery without recomputing the existing ones, then recalibrate.

        Raises ModelError when the method cannot be extended, or when a new photo's name is already in the gallery.
        """
        why = self.add_refusal()
        if why:
            raise ModelError(why)
        if self.gallery is None:
            raise ModelError(f"{self.spec}: add called before fit/load")
        clash = sorted(set(new.ids) & set(self.gallery["image"].astype(str)))
        if clash:
            raise ModelError(f"{clash[0]}: already in the model's gallery ({counted(len(clash), 'name')} clash)")
        self._train = new  # thumbnails of the new photos; the old ones are copied by save
        self.gallery = pd.concat([self.gallery, new.table[["image", "Latitude", "Longitude"]]], ignore_index=True)
        self.gallery_fingerprint = GeoDataset(self.gallery, new.reader).fingerprint()
        self._add(new)

    def _add(self, new: GeoDataset) -> None:
        raise NotImplementedError

    def remove(self, names: Sequence[str], recalibrate: bool = True) -> None:
        """Drop gallery photos by name; the others' features are kept, not recomputed. The calibration is then
        refreshed on the edited gallery (removing photos changes the spacing and neighbours the radii were measured
        on), or, with recalibrate=False, left to an add() that follows at once (index replace).

        Raises ModelError for a method that cannot be edited, a name not in the gallery, or a gallery left too
        small or too uniform to calibrate.
        """
        from ..localization.calibration import calibration_problem

        why = self.add_refusal()
        if why:
            raise ModelError(why)
        drop = set(map(str, names))
        ids = self.gallery["image"].astype(str)
        unknown = sorted(drop - set(ids))
        if unknown:
            raise ModelError(f"{unknown[0]}: not in the model's gallery ({counted(len(unknown), 'unknown name')})")
        keep = np.flatnonzero(~ids.isin(drop).to_numpy())
        rest = self.gallery.iloc[keep]
        problem = calibration_problem(rest["Latitude"].to_numpy(float), rest["Longitude"].to_numpy(float))
        if recalibrate and problem:
            raise ModelError(f"{self.spec}: not removed: the radius could not be calibrated on the {len(keep)} "
                             f"photos left (a gallery of {problem})")
        self._train = None
        self.gallery = rest.reset_index(drop=True)
        self.gallery_fingerprint = GeoDataset(self.gallery, lambda name: b"").fingerprint()
        self._remove(keep, recalibrate)

    def _remove(self, keep: np.ndarray, recalibrate: bool) -> None:
        """Keep gallery rows `keep` ((M,) int, ascending) of every array; recalibrate unless told not to."""
        raise NotImplementedError

    # -- prediction --------------------------------------------------------------------------------------
    def query(self, image: Query | ImageInput) -> Query:
        """A Query as this model decodes it (long side query_max_side). Callers that receive photos (api,
        evaluate) make Queries themselves with photos.open_query; other inputs are opened here the same way."""
        return image if isinstance(image, Query) else open_query(image, max_side=self.query_max_side)[0]

    def predict(self, images: Sequence[Query | ImageInput], top_k: int = 5) -> list[Prediction]:
        """Queries (or photos, opened by `query`) -> one Prediction each. Methods see pixels and the focal
        length only: the query's own EXIF GPS and direction never reach them."""
        if self.gallery is None:
            raise ModelError(f"{self.spec}: predict called before fit/load")
        return [self._stamped(self._predict_one(self.query(im), top_k)) for im in images]

    def predict_ranked(self, images: Sequence[Query | ImageInput], top_k: int = 5,
                       n: int = 10) -> list[tuple[Prediction, np.ndarray | None]]:
        """Predictions, each with the retrieval stage's top-n gallery row indices ((<=n,) int, best first;
        before any verification) for retrieval methods, None for the others. Used by the bench's recall@N."""
        if self.gallery is None:
            raise ModelError(f"{self.spec}: predict called before fit/load")
        return [(self._stamped(p), r) for p, r in (self._predict_ranked_one(self.query(im), top_k, n) for im in images)]

    def _stamped(self, pred: Prediction) -> Prediction:
        """The Prediction with the coverage its radius was calibrated for (the method's `coverage` option)."""
        pred.radius_coverage = float(getattr(self.config, "coverage", pred.radius_coverage))
        return pred

    def _predict_one(self, query: Query, top_k: int) -> Prediction:
        return self._predict_ranked_one(query, top_k, 0)[0]

    def _predict_ranked_one(self, query: Query, top_k: int, n: int) -> tuple[Prediction, np.ndarray | None]:
        """Methods override either this (retrieval methods: also return their ranking) or _predict_one."""
        if type(self)._predict_one is BasePredictor._predict_one:
            raise NotImplementedError
        return self._predict_one(query, top_k), None

    def neighbours(self, idx: Sequence[int], scores: Sequence[float], top_k: int) -> list[Neighbour]:
        g = self.gallery
        return [
            Neighbour(str(g.at[int(i), "image"]), float(g.at[int(i), "Latitude"]), float(g.at[int(i), "Longitude"]), float(s))
            for i, s in list(zip(idx, scores))[:top_k]
        ]

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, model_dir: Path, thumbnails: bool = True) -> None:
        """Write atomically (modeldir.write_model_dir): an old model is replaced only at the end."""
        if self.gallery is None:
            raise ModelError("cannot save a model that was not fitted")

        def write_files(tmp: Path) -> None:
            self.gallery.to_csv(tmp / "gallery.csv", index=False, float_format="%.9f")
            self._save_files(tmp)
            old = getattr(self, "model_dir", None)
            if thumbnails and old is not None and (Path(old) / "thumbs").is_dir():  # a loaded model, edited
                (tmp / "thumbs").mkdir()
                for name in map(thumb_name, self.gallery["image"].astype(str)):  # removed photos' are left out
                    if (Path(old) / "thumbs" / name).is_file():
                        shutil.copy2(Path(old) / "thumbs" / name, tmp / "thumbs" / name)
            if thumbnails and self._train is not None:
                write_thumbnails(self._train, tmp / "thumbs")

        write_model_dir(Path(model_dir), {
            "spec": self.spec, "method": self.name, "config": dataclasses.asdict(self.config),
            "data_fingerprint": self.gallery_fingerprint, "gallery_size": int(len(self.gallery)),
            "metrics": self.metrics, "state": self._state()}, write_files)

    def fit_report(self) -> dict[str, Any]:
        """What fit found worth telling the user (e.g. the retrieval index and its recall vs exact); {} if nothing."""
        return {}

    def _save_files(self, d: Path) -> None:
        pass

    def _state(self) -> dict[str, Any]:
        """Small JSON-able state (e.g. calibration) stored in the manifest."""
        return {}

    @classmethod
    def load(cls, model_dir: Path, manifest: dict[str, Any] | None = None):
        """Load a model of this class (registry.load_model picks the class from the manifest). `manifest`: the
        directory's model.json as modeldir.read_manifest read and checked it (read here when not given); kept as
        `self.manifest`."""
        if cls is BasePredictor:
            raise ModelError("BasePredictor.load needs a concrete method class; use img2gps.predictors.load_model")
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir) if manifest is None else manifest
        if manifest["method"] != cls.name:
            raise ModelError(f"{model_dir}: a {manifest['method']!r} model, not {cls.name!r}")
        cfg = config_from_saved(cls.Config, cls.saved_config(manifest), f"{model_dir}: model.json config")
        obj = cls(cfg, spec=manifest["spec"])
        obj.gallery = pd.read_csv(model_dir / "gallery.csv")
        obj.gallery_fingerprint = manifest.get("data_fingerprint")
        obj.metrics = manifest.get("metrics", {})
        obj.model_dir = model_dir
        obj.manifest = manifest
        obj._load_files(model_dir, manifest.get("state", {}))
        return obj

    @classmethod
    def saved_config(cls, manifest: dict[str, Any]) -> dict[str, Any]:
        """The config values to load, from the manifest (a method whose saved model must run differently on this
        machine, e.g. a GPU-trained net on a CPU, says so here, explicitly)."""
        return dict(manifest.get("config", {}))

    def _load_files(self, d: Path, state: dict[str, Any]) -> None:
        pass
