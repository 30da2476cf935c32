"""The predictor contract every method implements, plus the shared model-directory plumbing."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from ..data.sources import GeoDataset
from ..errors import ModelError
from ..photos import ImageInput, open_image, read_focal35

FORMAT_VERSION = 1
MANIFEST = "model.json"


@dataclass
class Neighbour:
    image_id: str
    latitude: float
    longitude: float
    score: float


# Prediction.source values: a camera pose from relative geometry, a structure-from-motion pose, the consensus of
# verified gallery photos, a fallback when nothing verified, or a method's own model output (k-NN, regression).
SOURCES = ("pose", "sfm", "consensus", "fallback", "model")


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
        d = dataclasses.asdict(self)
        d["photo_exif_position"] = list(self.photo_exif_position) if self.photo_exif_position else None
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("img2gps", "torch", "numpy", "faiss-cpu", "opencv-python-headless", "onnxruntime", "pillow"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


class BasePredictor:
    """Shared plumbing: spec/config, opening query images (metadata stripped), gallery table, save/load."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # Largest side a query photo is decoded at (None = full size). Methods needing detail raise it.
    query_max_side: ClassVar[int | None] = 640
    # True for methods that use the query's EXIF focal length (the only query metadata any method may read):
    # predict then calls _predict_one(image, top_k, focal35=...) with it (None when the photo has none).
    uses_focal_length: ClassVar[bool] = False

    def __init__(self, config=None, spec: str | None = None):
        self.config = config if config is not None else self.Config()
        self.spec = spec or self.name
        self.gallery: pd.DataFrame | None = None  # image, Latitude, Longitude of the fitted gallery
        self.gallery_fingerprint: str | None = None
        self.metrics: dict[str, Any] = {}
        self._train: GeoDataset | None = None

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

    # -- prediction --------------------------------------------------------------------------------------
    def predict(self, images: Sequence[ImageInput], top_k: int = 5) -> list[Prediction]:
        if self.gallery is None:
            raise ModelError(f"{self.spec}: predict called before fit/load")
        # open_image returns upright RGB pixels with all metadata dropped: no method can read EXIF GPS or
        # direction. The focal length alone is read from the header, for methods that model the camera.
        if not self.uses_focal_length:
            return [self._predict_one(open_image(im, max_side=self.query_max_side), top_k) for im in images]
        return [self._predict_one(open_image(im, max_side=self.query_max_side), top_k, focal35=read_focal35(im))
                for im in images]

    def _predict_one(self, image, top_k: int) -> Prediction:
        raise NotImplementedError

    def neighbours(self, idx: Sequence[int], scores: Sequence[float], top_k: int) -> list[Neighbour]:
        g = self.gallery
        return [
            Neighbour(str(g.at[int(i), "image"]), float(g.at[int(i), "Latitude"]), float(g.at[int(i), "Longitude"]), float(s))
            for i, s in list(zip(idx, scores))[:top_k]
        ]

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, model_dir: Path, thumbnails: bool = True) -> None:
        """Write atomically: a temp dir beside the target, then rename; an old model is replaced only at the end."""
        model_dir = Path(model_dir)
        if self.gallery is None:
            raise ModelError("cannot save a model that was not fitted")
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.tmp-", dir=model_dir.parent))
        try:
            self.gallery.to_csv(tmp / "gallery.csv", index=False, float_format="%.9f")
            self._save_files(tmp)
            if thumbnails and self._train is not None:
                write_thumbnails(self._train, tmp / "thumbs")
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            manifest = {
                "format_version": FORMAT_VERSION,
                "spec": self.spec,
                "method": self.name,
                "config": dataclasses.asdict(self.config),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "data_fingerprint": self.gallery_fingerprint,
                "gallery_size": int(len(self.gallery)),
                "package_versions": package_versions(),
                "metrics": self.metrics,
                "state": self._state(),
                "checksums": {str(p.relative_to(tmp)): file_sha256(p) for p in files},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
            old = None
            if model_dir.exists():
                old = model_dir.parent / f".{model_dir.name}.old-{os.getpid()}"
                os.replace(model_dir, old)
            os.replace(tmp, model_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _save_files(self, d: Path) -> None:
        pass

    def _state(self) -> dict[str, Any]:
        """Small JSON-able state (e.g. calibration) stored in the manifest."""
        return {}

    @classmethod
    def load(cls, model_dir: Path):
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        from .registry import predictor_class

        if cls is BasePredictor:
            cls = predictor_class(manifest["method"])
        name, params = parse_spec(manifest["spec"])
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


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_manifest(model_dir: Path, verify: bool = True) -> dict[str, Any]:
    """Read model.json and check every listed file's checksum; name exactly what is wrong."""
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
        raise ModelError(f"{mpath}: model format version {fv} is not supported by this img2gps (expects {FORMAT_VERSION}); re-fit the model")
    if verify:
        for rel, digest in manifest.get("checksums", {}).items():
            p = model_dir / rel
            if not p.is_file():
                raise ModelError(f"{model_dir}: missing file {rel}")
            if file_sha256(p) != digest:
                raise ModelError(f"{model_dir}: file {rel} is corrupted (checksum mismatch)")
    return manifest


def write_thumbnails(ds: GeoDataset, out: Path, side: int = 320) -> None:
    """Small JPEGs of the gallery so a model works without the original photo folder."""
    from ..photos import PhotoError

    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(ds.ids):
        try:
            im = ds.open(i, max_side=side)
        except PhotoError:
            continue
        im.save(out / thumb_name(name), "JPEG", quality=80)


def thumb_name(image_id: str) -> str:
    return hashlib.sha1(image_id.encode()).hexdigest()[:20] + ".jpg"
