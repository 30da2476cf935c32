"""Exports of a fitted model: the query encoder to ONNX (`onnx`), and the course leaderboard's three files
(`leaderboard`: model.py + preprocess.py + model.pt, self-contained; `harness` reproduces the leaderboard's
evaluation to check them)."""
from .leaderboard import LeaderboardReport, export_leaderboard
from .onnx import DEFAULT_TOLERANCE, ExportReport, OnnxEncoder, cached_onnx_path, export_onnx, query_encoder_of

__all__ = ["DEFAULT_TOLERANCE", "ExportReport", "LeaderboardReport", "OnnxEncoder", "cached_onnx_path",
           "export_leaderboard", "export_onnx", "query_encoder_of"]
