"""The predictor contract every method implements: spec parsing, Prediction, and BasePredictor (model-directory
I/O is delegated to img2gps.modeldir)."""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from ..data.sources import GeoDataset
from ..errors import ModelError
from ..indexing import IndexingConfig
from ..localization.answers import radius_words, source_words, status_words
from ..modeldir import read_manifest, write_model_dir, write_thumbnails
from ..photos import ImageInput, open_image, read_focal35

@dataclass
class Neighbour:
    image_id: str
    latitude: float
    longitude: float
    score: float


# Prediction.source values (localization/answers.py has the vocabulary): recognised answers rest on a camera pose
# from relative geometry, a structure-from-motion pose, or the consensus of verified gallery photos; "scene" is a
# verified scene seen from elsewhere, "fallback" nothing verified, "model" a method's own output (k-NN, regression).
SOURCES = ("pose", "sfm", "consensus", "scene", "fallback", "model")


@dataclass
class Prediction:
    latitude: float
    longitude: float
    radius_m: float
    confidence: float
    recognised: bool
    method: str
    neighbours: list[Neighbour] = field(default_factory=list)
    photo_exif_position: tuple[float, float] | None = None  # display only; never an input to any method
    heading_deg: float | None = None  # compass bearing of the camera's optical axis: 0 = north, clockwise
    heading_radius_deg: float | None = None  # calibrated (~80%) half-width of the heading's error; None = unknown
    source: str = "model"  # what the answer rests on: one of SOURCES

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus `answer` ("recognised" / "not recognised"), `radius_note` (what the radius
        promises) and `source_note` (what the answer rests on), in words (localization/answers.py): the one dict every output shows."""
        d = dataclasses.asdict(self)
        d["photo_exif_position"] = list(self.photo_exif_position) if self.photo_exif_position else None
        d["answer"] = status_words(self.recognised)
        d["radius_note"] = radius_words(self.recognised)
        d["source_note"] = source_words(self.source)
        return d


@runtime_checkable
class Predictor(Protocol):
    spec: str

    def fit(self, train: GeoDataset) -> None: ...

    def predict(self, images: Sequence[ImageInput], top_k: int = 5) -> list[Prediction]: ...

    def save(self, model_dir: Path) -> None: ...


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'knn:embed=lite0:k=3' -> ('knn', {'embed': 'lite0', 'k': '3'})."""
    parts = [p for p in spec.strip().split(":")]
    name, params = parts[0].strip(), {}
    if not name:
        raise ModelError(f"empty method spec {spec!r}")
    for p in parts[1:]:
        if "=" not in p:
            raise ModelError(f"method spec {spec!r}: '{p}' is not key=value")
        k, v = p.split("=", 1)
        params[k.strip()] = v.strip()
    return name, params


def _coerce(value: str, typ: Any, key: str, spec: str):
    typ = {"int": int, "float": float, "bool": bool, "str": str}.get(typ, typ) if isinstance(typ, str) else typ
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(value)
    except (TypeError, ValueError):
        raise ModelError(f"method spec {spec!r}: {key}={value!r} is not a valid {getattr(typ, '__name__', typ)}") from None


def config_from_params(config_cls: type, params: dict[str, str], spec: str):
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ModelError(f"method spec {spec!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kw = {k: _coerce(v, fields[k].type, k, spec) for k, v in params.items()}
    return config_cls(**kw)


class BasePredictor:
    """Shared plumbing: spec/config, opening query images (metadata stripped), gallery table, save/load."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # Largest side a query photo is decoded at (None = full size). Methods needing detail raise it.
    query_max_side: ClassVar[int | None] = 640
    # True for methods that use the query's EXIF focal length (the only query metadata any method may read):
    # predict/predict_ranked then pass focal35=... (mm, None when the photo has none) to _predict_one /
    # _predict_ranked_one.
    uses_focal_length: ClassVar[bool] = False

    def __init__(self, config=None, spec: str | None = None):
        self.config = config if config is not None else self.Config()
        self.spec = spec or self.name
        self.gallery: pd.DataFrame | None = None  # image, Latitude, Longitude of the fitted gallery
        self.gallery_fingerprint: str | None = None
        self.metrics: dict[str, Any] = {}
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
        return (f"{self.spec}: a {self.name} model cannot be extended in place (index add supports knn and rerank); "
                "re-fit it with `img2gps fit`")

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
            raise ModelError(f"{clash[0]}: already in the model's gallery ({len(clash)} name(s) clash)")
        self._train = new  # thumbnails of the new photos; the old ones are copied by save
        self.gallery = pd.concat([self.gallery, new.table[["image", "Latitude", "Longitude"]]], ignore_index=True)
        self.gallery_fingerprint = GeoDataset(self.gallery, new.reader).fingerprint()
        self._add(new)

    def _add(self, new: GeoDataset) -> None:
        raise NotImplementedError

    # -- prediction --------------------------------------------------------------------------------------
    def predict(self, images: Sequence[ImageInput], top_k: int = 5,
                focal35: Sequence[float | None] | None = None) -> list[Prediction]:
        """focal35: the photos' 35 mm-equivalent focal lengths (mm) when the caller already decoded them to bare
        pixels (api.Img2GPS does); by default each is read from the photo's own EXIF header."""
        if self.gallery is None:
            raise ModelError(f"{self.spec}: predict called before fit/load")
        f = list(focal35) if focal35 is not None else [None] * len(images)
        return [self._predict_one(*q, top_k, **kw) for q, kw in map(self._query_kw, images, f)]

    def _query_kw(self, im: ImageInput, focal35: float | None = None) -> tuple[tuple, dict]:
        """(decoded query image,), extra keyword arguments for the method.

        open_image returns upright RGB pixels with all metadata dropped: no method can read EXIF GPS or
        direction. The focal length alone is read from the header, for methods that model the camera."""
        kw = {"focal35": focal35 if focal35 is not None else read_focal35(im)} if self.uses_focal_length else {}
        return (open_image(im, max_side=self.query_max_side),), kw

    def predict_ranked(self, images: Sequence[ImageInput], top_k: int = 5,
                       n: int = 10) -> list[tuple[Prediction, np.ndarray | None]]:
        """Predictions, each with the retrieval stage's top-n gallery row indices ((<=n,) int, best first;
        before any verification) for retrieval methods, None for the others. Used by the bench's recall@N."""
        if self.gallery is None:
            raise ModelError(f"{self.spec}: predict called before fit/load")
        return [self._predict_ranked_one(*q, top_k, n, **kw) for q, kw in map(self._query_kw, images)]

    def _predict_one(self, image, top_k: int, **kw) -> Prediction:
        return self._predict_ranked_one(image, top_k, 0, **kw)[0]

    def _predict_ranked_one(self, image, top_k: int, n: int, **kw) -> tuple[Prediction, np.ndarray | None]:
        """Methods override either this (retrieval methods: also return their ranking) or _predict_one."""
        if type(self)._predict_one is BasePredictor._predict_one:
            raise NotImplementedError
        return self._predict_one(image, top_k, **kw), None

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
            if thumbnails and old is not None and (Path(old) / "thumbs").is_dir():  # a loaded model, extended
                shutil.copytree(Path(old) / "thumbs", tmp / "thumbs")
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
    def load(cls, model_dir: Path):
        """Load a model of this class (registry.load_model picks the class from the manifest)."""
        if cls is BasePredictor:
            raise ModelError("BasePredictor.load needs a concrete method class; use img2gps.predictors.load_model")
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        if manifest["method"] != cls.name:
            raise ModelError(f"{model_dir}: a {manifest['method']!r} model, not {cls.name!r}")
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        cfg = cls.Config(**{k: v for k, v in manifest.get("config", {}).items() if k in fields})
        obj = cls(cfg, spec=manifest["spec"])
        obj.gallery = pd.read_csv(model_dir / "gallery.csv")
        obj.gallery_fingerprint = manifest.get("data_fingerprint")
        obj.metrics = manifest.get("metrics", {})
        obj.model_dir = model_dir
        obj._load_files(model_dir, manifest.get("state", {}))
        return obj

    def _load_files(self, d: Path, state: dict[str, Any]) -> None:
        pass
