"""Method registry: spec name -> predictor class, imported lazily so optional methods cost nothing."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ModelError
from ..modeldir import read_manifest
from .base import BasePredictor
from .spec import config_from_params, parse_spec

# The default method: the best one in the bench (see bench/results.md). Change it here only.
DEFAULT_METHOD = "rerank"

REGISTRY = {
    "mean-coordinate": "img2gps.predictors.baseline:MeanCoordinate",
    "knn": "img2gps.predictors.knn:KNNPredictor",
    "regression": "img2gps.predictors.trained.regression:RegressionPredictor",
    "contrastive": "img2gps.predictors.trained.contrastive:ContrastivePredictor",
    "rerank": "img2gps.predictors.rerank.method:RerankPredictor",
}


def available_methods() -> list[str]:
    out = []
    for name, target in REGISTRY.items():
        mod = target.split(":")[0]
        if importlib.util.find_spec(mod) is not None:
            out.append(name)
    return out


def predictor_class(name: str) -> type[BasePredictor]:
    if name not in REGISTRY:
        raise ModelError(f"unknown method {name!r}; known: {', '.join(available_methods())}")
    mod, cls = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name == mod:
            raise ModelError(f"method {name!r} is not available in this version of img2gps") from None
        raise
    return getattr(module, cls)


def make_predictor(spec: str) -> BasePredictor:
    name, params = parse_spec(spec)
    cls = predictor_class(name)
    return cls(config_from_params(cls.Config, params, spec), spec=spec)


def load_model(model_dir: str | Path) -> BasePredictor:
    manifest = read_manifest(Path(model_dir))  # parsed once: the class's load() takes it as read and checked
    return predictor_class(manifest["method"]).load(Path(model_dir), manifest)
