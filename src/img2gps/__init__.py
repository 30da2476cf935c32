"""img2gps: tell where on a campus a photo was taken."""
from .errors import DataError, Img2GPSError, ModelError, PhotoError

__version__ = "0.1.0"


def __getattr__(name):  # keep `import img2gps` light; the API pulls in torch/faiss only when used
    if name == "Img2GPS":
        from .api import Img2GPS

        return Img2GPS
    if name in ("Prediction", "Neighbour"):
        from .predictors import base

        return getattr(base, name)
    raise AttributeError(name)


__all__ = ["Img2GPS", "Prediction", "Neighbour", "DataError", "Img2GPSError", "ModelError", "PhotoError"]
