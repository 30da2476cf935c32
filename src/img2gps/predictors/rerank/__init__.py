"""rerank: retrieval, geometric verification and consensus (method.py); config, fitted state, query procedure and
calibration each in their own module."""
from .config import RerankConfig
from .method import RerankPredictor, single_threaded
from .query import Located, resolve, shortlist_median, verify_candidates
from .state import Calibration, RerankState

__all__ = ["Calibration", "Located", "RerankConfig", "RerankPredictor", "RerankState", "resolve", "shortlist_median",
           "single_threaded", "verify_candidates"]
