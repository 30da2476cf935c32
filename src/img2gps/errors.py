"""One exception family: the CLI prints these as a single line, never a traceback."""
from __future__ import annotations


class Img2GPSError(Exception):
    """A problem the user can act on; str() is the whole message."""


class PhotoError(Img2GPSError):
    def __init__(self, source: str, problem: str):
        self.source, self.problem = source, problem
        super().__init__(f"{source}: {problem}")


class ImageTooLarge(PhotoError):
    """The photo has more pixels than the configured limit (photos.MAX_PIXELS by default); HTTP 413."""


class UnsupportedFormat(PhotoError):
    """Not an image format img2gps can open (a HEIC photo without pillow-heif says so); HTTP 415."""


class DataError(Img2GPSError):
    pass


class NoUsablePhotos(DataError):
    """None of a batch's photos could be used; skipped: [{"file": relative path, "reason": problem}], one per file,
    so a caller that staged the files can name each by the user's own path."""

    def __init__(self, message: str, skipped: list[dict]):
        super().__init__(message)
        self.skipped = skipped


class ModelError(Img2GPSError):
    pass
