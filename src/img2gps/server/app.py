"""FastAPI app: POST /predict (photo upload -> Prediction JSON), GET /health, /model, /gallery, /gallery/{id}
thumbnails, the web page at /, and OpenAPI docs at /docs served from installed packages (no CDN).

The model is loaded once, when the app is created; uploads are checked (bytes, pixels, content type) before any
decoding work, with 413 / 415 / 422 answers that say what was wrong.
"""
from __future__ import annotations

import importlib.util
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from .. import __version__
from ..api import Img2GPS
from ..errors import ImageTooLarge, PhotoError
from ..maps import TILES_ATTRIBUTION, TILES_URL, leaflet_dir
from ..photos import MAX_PIXELS, PHOTO_SUFFIXES, check_pixels, library_warnings_to
from ..types import prediction_dict

STATIC = Path(__file__).parent / "static"
# Browsers often send HEIC as octet-stream or nothing; S3-style clients and some SDKs say binary/octet-stream.
ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


@dataclass
class UploadLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = MAX_PIXELS  # the one limit (photos.MAX_PIXELS); any larger image gets 413
    max_top_k: int = 50


class NeighbourOut(BaseModel):
    image_id: str
    latitude: float
    longitude: float
    score: float = Field(description="similarity of this gallery photo to the query (method-specific)")
    thumbnail: Optional[str] = Field(None, description="URL of the gallery thumbnail, if the model has one")
    distance_m: float = Field(description="metres from the predicted position")


class PredictionOut(BaseModel):
    photo: str = Field(description="uploaded file name")
    latitude: float
    longitude: float
    radius_m: float = Field(description="error radius in metres, calibrated to hold for radius_coverage of photos")
    confidence: float = Field(ge=0, le=1)
    recognised: bool = Field(description="true only when verified geometry places the photo at a gallery camera's spot")
    answer: str = Field(description='"recognised" or "not recognised", in words')
    radius_note: str = Field(description="what the radius promises, in words (an unrecognised answer's radius holds "
                                         "for photos taken within the gallery's area)")
    method: str
    source: str = Field("model", description="what the answer rests on: pose, consensus (recognised), scene "
                                             "(a verified scene seen from elsewhere), fallback or model")
    source_note: str = Field("", description="what the answer rests on, in words")
    score_kind: str = Field("cosine similarity", description='what each neighbour\'s score is: "inliers" (a verified '
                                                           'match) or "cosine similarity" (of the global embeddings)')
    heading_deg: Optional[float] = Field(
        None, description="compass bearing the camera faced (0 = north, clockwise); null when not determined")
    heading_radius_deg: Optional[float] = Field(
        None, description="calibrated (~80%) error of heading_deg in degrees; null when unknown")
    neighbours: list[NeighbourOut]
    photo_exif_position: Optional[list[float]] = Field(
        None, description="the photo's own EXIF GPS (lat, lon), for display only: never an input to the method")
    exif_distance_m: Optional[float] = Field(None, description="metres between the prediction and the EXIF position")
    exif_distance_text: Optional[str] = Field(None, description="exif_distance_m in words (metres below 1 km, km above)")
    exif_note: Optional[str] = Field(None, description="when the photo's own EXIF GPS lies far outside the gallery's "
                                                       "area: that, in words (the position is still the method's)")
    radius_text: str = Field("", description="radius_m in words (metres below 1 km, km above)")
    radius_coverage: float = Field(0.8, description="share of photos the radius was calibrated to hold for")
    chance_25m: Optional[float] = Field(None, description="calibrated probability that the true spot lies within 25 m "
                                                          "(confidence is its alias); null for older models")
    chance_note: Optional[str] = Field(None, description='chance_25m in words, e.g. "chance within 25 m: 83%"')
    query_region: Optional[list[int]] = Field(
        None, description="x0, y0, x1, y1 (pixels): the photo found inside a screenshot or padded image, which was "
                          "located instead of the whole image; null = the whole image")
    query_view: Optional[str] = Field(
        None, description="the view of the photo that verified when the image as given did not (upsampled, clahe, "
                          "turned 90 clockwise/anticlockwise); null = as given")
    elapsed_ms: float


# Multipart framing (boundaries, part headers) around the photo: a body this much over the limit is refused.
FORM_OVERHEAD = 64 * 1024


class _EarlySizeLimit:
    """Refuse a too-large upload before it is spooled to disk: at once from its Content-Length, and, for a body
    without one (chunked transfer encoding, as mobile HTTP clients send streams), as soon as the bytes received
    pass the limit; the rest of the body is never read."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        cap = self.max_bytes + FORM_OVERHEAD
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > cap:
                resp = JSONResponse({"detail": _too_big(self.max_bytes, int(v))}, status_code=413)
                await resp(scope, receive, send)
                return
        received, refused = 0, False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > cap:  # answer now; the app sees a client that went away and its answer is dropped
                    refused = True
                    await JSONResponse({"detail": _too_big(self.max_bytes)}, status_code=413)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if not refused:
                await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:  # after a 413 the app only fails on the body it was denied: nothing to report
                raise


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


def _too_big(limit: int, n: int | None = None) -> str:
    """The 413 line: the size only when it is known (a Content-Length), never one made up from where reading stopped."""
    return (f"upload too large ({_mib(n)}; limit {_mib(limit)})" if n is not None
            else f"upload too large (more than the {_mib(limit)} limit)")


@dataclass
class Upload:
    """The photo of a multipart request: its part's file name ('upload' without one), content type, bytes."""
    name: str
    content_type: str
    data: bytes


def _field_bytes(text: str) -> bytes:
    """A part sent without filename= arrives as text that Starlette decoded as UTF-8, else Latin-1. An image is
    never valid UTF-8 (JPEG starts with 0xFF, PNG with 0x89), so Latin-1 gives its bytes back exactly."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


async def read_upload(request: Request) -> Upload:
    """The multipart field `file`, with or without filename= (Flutter's MultipartFile.fromBytes and Retrofit send
    none), up to the upload limit; 413/422 HTTPException otherwise."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = request.app.state.limits
    try:
        form = await request.form(max_files=8, max_fields=64, max_part_size=limits.max_bytes + 1)
    except StarletteHTTPException as e:  # Starlette's multipart limits: a part over max_part_size
        if "maximum size" in str(e.detail):
            raise HTTPException(413, _too_big(limits.max_bytes)) from None
        raise HTTPException(422, f"unreadable form: {e.detail}") from None
    try:
        part = form.get("file")
        if part is None:
            raise HTTPException(422, "missing form field 'file': send the photo as multipart/form-data field "
                                     "named file")
        if isinstance(part, str):
            return Upload("upload", "", _field_bytes(part))
        data = await part.read(limits.max_bytes + 1)
        return Upload(part.filename or "upload", part.content_type or "", data)
    finally:
        await form.close()


_UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {
        "type": "string", "format": "binary",
        "description": "the photo (JPEG, PNG, HEIC, WebP, TIFF); a part without filename= is accepted too"}}}}}}}


def _docs_assets() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")  # Swagger UI files shipped in a pip package
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "static"
    return d if (d / "swagger-ui-bundle.js").is_file() else None


def create_app(model_dir: str | Path | None = None, limits: UploadLimits | None = None, tiles: bool = True,
               runtime: str = "torch", onnx_path: str | Path | None = None, model: Img2GPS | None = None,
               warmup: bool = True) -> FastAPI:
    """Build the app around one loaded model (from `model_dir`, or an already loaded `model`)."""
    if model is None:
        if model_dir is None:
            raise ValueError("create_app needs model_dir or model")
        model = Img2GPS.load(model_dir, runtime=runtime, onnx_path=onnx_path)
    if warmup:
        model.warmup()  # encoder weights load now, not on the first upload
    limits = limits or UploadLimits()
    gallery_ids = set(model.gallery["image"].astype(str))

    app = FastAPI(title="img2gps", version=__version__, docs_url=None, redoc_url=None,
                  description="Locate a photo within the model's gallery area: position, error radius, confidence "
                              "and the gallery photos that support it.")
    app.state.model, app.state.limits = model, limits
    app.add_middleware(_EarlySizeLimit, max_bytes=limits.max_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/vendor/leaflet", StaticFiles(directory=leaflet_dir()), name="leaflet")
    docs = _docs_assets()
    if docs is not None:
        app.mount("/vendor/docs", StaticFiles(directory=docs), name="docs-assets")

    def thumb_url(image_id: str) -> str | None:
        from urllib.parse import quote

        return f"gallery/{quote(image_id, safe='')}" if model.thumbnail_path(image_id) else None

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def swagger():
        if docs is None:
            return HTMLResponse("<p>Interactive docs need <code>pip install fastapi-offline</code>; "
                                "the schema is at <a href='openapi.json'>openapi.json</a>.</p>")
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="openapi.json", title="img2gps API",
                                   swagger_js_url="vendor/docs/swagger-ui-bundle.js",
                                   swagger_css_url="vendor/docs/swagger-ui.css",
                                   swagger_favicon_url="vendor/docs/favicon.png")

    @app.get("/health", summary="Liveness and what model is loaded")
    def health():
        return {"status": "ok", "version": __version__, "spec": model.spec, "gallery_size": int(len(model.gallery)),
                "runtime": model.runtime}

    @app.get("/model", summary="The loaded model, upload limits and map settings")
    def model_info():
        m = model.manifest
        return {"spec": model.spec, "method": m.get("method"), "created": m.get("created"),
                "data_fingerprint": m.get("data_fingerprint"), "gallery_size": int(len(model.gallery)),
                "runtime": model.runtime, "limits": asdict(limits),
                "accepted_suffixes": sorted(PHOTO_SUFFIXES),
                "tiles": {"url": TILES_URL, "attribution": TILES_ATTRIBUTION} if tiles else None}

    @app.get("/gallery", summary="Every gallery photo: id, position, thumbnail URL")
    def gallery():
        return [{"id": str(r.image), "latitude": float(r.Latitude), "longitude": float(r.Longitude),
                 "thumbnail": thumb_url(str(r.image))}
                for r in model.gallery[["image", "Latitude", "Longitude"]].itertuples(index=False)]

    @app.get("/gallery/{image_id:path}", summary="Thumbnail of one gallery photo",
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "not a gallery photo"}})
    def gallery_thumb(image_id: str):
        # Only ids that are in the gallery table map to a file, via a hash name: no path from the URL is opened.
        p = model.thumbnail_path(image_id) if image_id in gallery_ids else None
        if p is None:
            raise HTTPException(404, f"no thumbnail for {image_id!r}")
        return FileResponse(p, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/predict", response_model=PredictionOut, summary="Locate one uploaded photo",
              responses={413: {"description": "file or image too large"},
                         415: {"description": "not an image / unsupported format"},
                         422: {"description": "missing, empty or corrupt upload, or a bad top_k"}},
              openapi_extra=_UPLOAD_SCHEMA)
    def predict(upload: Upload = Depends(read_upload),
                top_k: int = Query(5, ge=1, description="how many supporting gallery photos to return")):
        name = upload.name
        if top_k > limits.max_top_k:
            raise HTTPException(422, f"top_k must be at most {limits.max_top_k}")
        ctype = upload.content_type.split(";")[0].strip().lower()
        if ctype and not ctype.startswith(ACCEPTED_TYPES):
            raise HTTPException(415, f"{name}: content type {ctype} is not an image")
        data = upload.data
        if len(data) > limits.max_bytes:
            raise HTTPException(413, f"{name}: {_too_big(limits.max_bytes)}")
        if not data:
            raise HTTPException(422, f"{name}: empty file (0 bytes)")
        try:  # header only: the size is known before any pixel is decoded
            with library_warnings_to([]):
                with Image.open(io.BytesIO(data)) as im:
                    w, h = im.size
        except Image.DecompressionBombError:
            raise HTTPException(413, f"{name}: image too large (limit {limits.max_pixels / 1e6:.0f} MP)") from None
        except UnidentifiedImageError:
            raise HTTPException(415, f"{name}: not a supported image format (JPEG, PNG, HEIC, WebP, TIFF)") from None
        except Exception as e:
            raise HTTPException(422, f"{name}: unreadable image header ({type(e).__name__})") from None
        t0 = time.perf_counter()
        try:
            check_pixels(w, h, name, limits.max_pixels)
            pred = model.predict(data, top_k=top_k, max_pixels=limits.max_pixels)  # one limit, header and decode
        except ImageTooLarge as e:
            raise HTTPException(413, f"{name}: {e.problem}") from None
        except PhotoError as e:
            raise HTTPException(422, f"{name}: {e.problem}") from None
        out = prediction_dict(pred, photo=name, thumb_url=thumb_url)
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        """Every 4xx answer is {"detail": one line}; a missing or misnamed upload field names the field `file`."""
        parts = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query")]
            field = ".".join(loc) or "request"
            if field == "file" and e.get("type") == "missing":
                parts.append("missing form field 'file': send the photo as multipart/form-data field named file")
            else:
                parts.append(f"{field}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(PhotoError)
    async def photo_error(request: Request, exc: PhotoError):
        return JSONResponse({"detail": str(exc)}, status_code=413 if isinstance(exc, ImageTooLarge) else 422)

    return app
