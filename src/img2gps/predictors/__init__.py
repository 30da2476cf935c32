from .base import BasePredictor, Neighbour, Prediction, parse_spec
from .registry import DEFAULT_METHOD, available_methods, load_model, make_predictor

__all__ = ["BasePredictor", "Neighbour", "Prediction", "parse_spec", "DEFAULT_METHOD",
           "available_methods", "load_model", "make_predictor"]
