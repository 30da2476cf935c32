"""HTTP API with FastAPI's test client: endpoints, prediction JSON, upload limits, no path traversal, no CDN."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps.api import Img2GPS
from img2gps.server import UploadLimits, create_app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return Img2GPS.load(model_dir)


@pytest.fixture(scope="module")
def client(loaded):
    app = create_app(model=loaded, limits=UploadLimits(max_bytes=200_000, max_pixels=300 * 300))
    with TestClient(app) as c:
        yield c


def upload(client, data, name="q.jpg", ctype="image/jpeg", **params):
    return client.post("/predict", files={"file": (name, data, ctype)}, params=params)


def test_health_model_and_gallery(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["spec"] == "knn:k=2" and h["gallery_size"] == 12
    m = client.get("/model").json()
    assert m["limits"]["max_bytes"] == 200_000 and m["tiles"]["url"].startswith("https://")
    g = client.get("/gallery").json()
    assert len(g) == 12 and {"id", "latitude", "longitude", "thumbnail"} <= set(g[0])
    r = client.get(g[0]["thumbnail"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"


def test_predict_returns_prediction_json(client):
    tagged = jpeg_bytes(place_image(2, seed=321), gps=place_latlon(0))
    r = upload(client, tagged, name="campus.jpg", top_k=3)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["photo"] == "campus.jpg" and p["method"] == "knn:k=2" and p["recognised"] is False
    assert p["source"] == "model" and p["heading_deg"] is None and p["heading_radius_deg"] is None  # k-NN: no pose
    assert p["answer"] == "not recognised" and "within the gallery's area" in p["radius_note"] and p["source_note"]
    assert 0 <= p["confidence"] <= 1 and p["radius_m"] > 0 and p["elapsed_ms"] >= 0
    assert len(p["neighbours"]) == 3 and all(n["image_id"].startswith("place2_") for n in p["neighbours"])
    assert all(client.get(n["thumbnail"]).status_code == 200 for n in p["neighbours"])
    assert p["photo_exif_position"] == pytest.approx(list(place_latlon(0)), abs=1e-6)
    assert p["exif_distance_m"] > 50  # EXIF says place 0, the pixels say place 2: displayed, not used
    lat2, lon2 = place_latlon(2)
    assert abs(p["latitude"] - lat2) < 1e-4 and abs(p["longitude"] - lon2) < 1e-4


def test_other_image_formats_and_octet_stream(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(place_image(3, seed=8)).save(buf, "PNG")
    r = upload(client, buf.getvalue(), name="x.png", ctype="application/octet-stream", top_k=1)
    assert r.status_code == 200 and r.json()["neighbours"][0]["image_id"].startswith("place3_")
    assert r.json()["photo_exif_position"] is None and r.json()["exif_distance_m"] is None
    buf = io.BytesIO()
    Image.fromarray(place_image(1, seed=9)).save(buf, "HEIF")  # phones' default format (pillow-heif)
    r = upload(client, buf.getvalue(), name="IMG_0001.HEIC", ctype="image/heic", top_k=1)
    assert r.status_code == 200, r.text
    assert r.json()["neighbours"][0]["image_id"].startswith("place1_")


@pytest.mark.parametrize("case,status,message", [
    ("no file", 422, "missing form field 'file'"),
    ("wrong field", 422, "missing form field 'file'"),
    ("empty", 422, "empty file"),
    ("text type", 415, "content type text/plain is not an image"),
    ("not an image", 415, "unknown or unsupported image format"),
    ("truncated", 422, "q.jpg"),
    ("too many bytes", 413, "too large"),
    ("too many pixels", 413, "MP"),
    ("top_k 0", 422, "top_k"),
    ("top_k huge", 422, "at most 50"),
])
def test_bad_uploads_get_clear_4xx(client, case, status, message):
    good = jpeg_bytes(place_image(0, seed=1))
    if case == "no file":
        r = client.post("/predict", data={"x": "1"})
    elif case == "wrong field":
        r = client.post("/predict", files={"photo": ("q.jpg", good, "image/jpeg")})
    elif case == "empty":
        r = upload(client, b"")
    elif case == "text type":
        r = upload(client, b"hello", name="notes.txt", ctype="text/plain")
    elif case == "not an image":
        r = upload(client, b"%PDF-1.4 not an image at all" * 10)
    elif case == "truncated":
        r = upload(client, good[: len(good) // 3])
    elif case == "too many bytes":
        r = upload(client, good + b"\0" * 230_000)  # under the early Content-Length cut, over the read limit
    elif case == "too many pixels":
        import numpy as np

        r = upload(client, jpeg_bytes(np.zeros((400, 400, 3), np.uint8)))
    elif case == "top_k 0":
        r = upload(client, good, top_k=0)
    else:
        r = upload(client, good, top_k=1000)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, detail  # one line, like every other 4xx answer
    assert message in detail


@pytest.mark.slow
def test_one_pixel_limit_and_every_oversize_refusal_is_413(loaded):
    """A 108 MP (12000x9000) phone photo passes at the default limit (Pillow's ~89 MP bomb guard must not fire
    first); with a lower --max-megapixels it gets 413; so does a header that claims more than Pillow allows."""
    import io

    from PIL import Image

    from corpus import _png_header_only
    from img2gps.photos import MAX_PIXELS

    buf = io.BytesIO()
    Image.new("RGB", (12000, 9000), (90, 100, 110)).save(buf, "JPEG", quality=80)
    big = buf.getvalue()
    assert MAX_PIXELS >= 108_000_000
    with TestClient(create_app(model=loaded, limits=UploadLimits(max_bytes=8 * 2**20))) as c:
        r = upload(c, big, name="phone.jpg")
        assert r.status_code == 200, r.text
    with TestClient(create_app(model=loaded, limits=UploadLimits(max_bytes=8 * 2**20, max_pixels=64_000_000))) as c:
        r = upload(c, big, name="phone.jpg")
        assert r.status_code == 413 and r.json()["detail"] == (
            "phone.jpg: image too large (12000x9000 = 108 MP; limit 64 MP)"), r.text
    with TestClient(create_app(model=loaded, limits=UploadLimits(max_bytes=8 * 2**20, max_pixels=150_000_000))) as c:
        assert upload(c, big, name="phone.jpg").status_code == 200  # above Pillow's 89 MP warning: still ours
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            _png_header_only(Path(d) / "b.png", 30000, 30000)
            r = upload(c, (Path(d) / "b.png").read_bytes(), name="bomb.png", ctype="image/png")
        assert r.status_code == 413 and "image too large" in r.json()["detail"], r.text


def test_huge_upload_is_refused_from_its_content_length(client):
    r = upload(client, b"\xff\xd8" + b"\0" * 2_000_000)
    assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.parametrize("path", [
    "/gallery/../model.json", "/gallery/..%2Fmodel.json", "/gallery/%2e%2e/%2e%2e/etc/passwd",
    "/gallery/model.json", "/gallery/thumbs", "/gallery/%2Fetc%2Fpasswd", "/gallery/not-a-photo.jpg",
])
def test_gallery_thumbnails_have_no_path_traversal(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert b"format_version" not in r.content and b"root:" not in r.content


def test_thumbnail_file_names_are_not_urls(client, loaded):
    from img2gps.modeldir import thumb_name

    name = thumb_name(loaded.gallery["image"][0])
    assert client.get(f"/gallery/{name}").status_code == 404
    assert client.get(f"/gallery/thumbs/{name}").status_code == 404


def test_page_docs_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and "drop" in page.text.lower()
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert srcs and not [s for s in srcs if s.startswith(("http:", "https:", "//"))]
    for s in srcs:
        assert client.get("/" + s).status_code == 200, s
    assert "Leaflet 1.9" in client.get("/vendor/leaflet/leaflet.js").text[:200]
    docs = client.get("/docs").text
    assert "vendor/docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/vendor/docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "413" in spec["paths"]["/predict"]["post"]["responses"]


def test_model_is_loaded_once(model_dir, monkeypatch):
    import img2gps.server.app as server_app

    calls = []
    real = server_app.Img2GPS.load

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(server_app.Img2GPS, "load", counting)
    with TestClient(create_app(model_dir)) as c:
        for seed in range(3):
            assert upload(c, jpeg_bytes(place_image(1, seed=seed)), top_k=1).status_code == 200
    assert len(calls) == 1
