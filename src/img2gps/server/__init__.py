"""HTTP server: FastAPI app (app.py) and one static web page (static/)."""
from .app import UploadLimits, create_app

__all__ = ["UploadLimits", "create_app"]
