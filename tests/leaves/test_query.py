"""A query photo is opened once, by whoever receives it: photos.open_query -> types.Query (pixels + focal length).
Its pixels and focal length equal what open_image / read_focal35 give; the EXIF is read once."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from _use_helpers import model_env, place_image
from img2gps import Img2GPS
from img2gps.photos import open_image, open_query, read_focal35
from img2gps.types import Query
from synth import gps_exif


def _jpeg(im: Image.Image, **exif) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, exif=gps_exif(39.95, -75.19, **exif).tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("max_side", [None, 48, 300])
def test_open_query_equals_open_image_and_read_focal35(orientation, max_side):
    im = Image.fromarray(np.random.default_rng(orientation).integers(0, 255, (90, 160, 3), np.uint8))
    data = _jpeg(im, orientation=orientation, focal35=26)
    q, meta = open_query(data, max_side=max_side)
    assert isinstance(q, Query) and q.pixels.dtype == np.uint8 and q.pixels.shape[2] == 3
    assert np.array_equal(q.pixels, np.asarray(open_image(data, max_side=max_side)))
    assert q.focal35 == read_focal35(data) == 26
    assert meta.has_gps and meta.latitude == pytest.approx(39.95, abs=1e-4)
    if orientation in (6, 8):
        assert q.size[1] > q.size[0]  # upright: the 160x90 photo stands on its side


def test_focal_length_comes_from_the_upright_size():
    """A turned photo whose focal length comes from FocalLength and unequal focal-plane resolutions: the sensor
    diagonal is measured on the upright size, the same for the query and for the gallery's read_meta."""
    from img2gps.exif import EXIF_IFD, focal35_from_exif
    from img2gps.photos import read_meta
    from PIL.TiffImagePlugin import IFDRational

    im = Image.fromarray(np.zeros((90, 160, 3), np.uint8))
    ex = Image.Exif()
    ex[0x0112] = 6  # turned: upright it is 90 x 160
    ex.get_ifd(EXIF_IFD).update({0x920A: IFDRational(4, 1), 0xA20E: IFDRational(1000, 1), 0xA20F: IFDRational(250, 1),
                                 0xA210: 3})
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=ex.tobytes())
    data = buf.getvalue()
    sub = Image.open(io.BytesIO(data)).getexif().get_ifd(EXIF_IFD)
    upright, raw = focal35_from_exif(sub, 90, 160), focal35_from_exif(sub, 160, 90)
    assert upright != pytest.approx(raw)  # the test means something: the two sizes give different answers
    assert open_query(data)[0].focal35 == read_meta(data).focal35 == read_focal35(data) == pytest.approx(upright)


def test_query_refuses_what_is_not_an_rgb_photo_without_metadata():
    with pytest.raises(ValueError, match="RGB PIL image"):
        Query(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB PIL image"):
        Query(Image.new("L", (4, 4)))
    tagged = Image.new("RGB", (4, 4))
    tagged.info["exif"] = gps_exif(39.95, -75.19).tobytes()
    with pytest.raises(ValueError, match="no metadata"):
        Query(tagged)


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_query_reaches_the_method_without_a_copy_through_an_array(model_dir, tmp_path, monkeypatch, orientation):
    """The decoded photo is the image the method reads: no full-size PIL -> array -> PIL round trip, no copy to
    drop its metadata, and nothing in it a method could read the EXIF from."""
    model = Img2GPS.load(model_dir)
    model.warmup()
    path = tmp_path / "q.jpg"
    path.write_bytes(_jpeg(Image.fromarray(place_image(1, seed=5)), orientation=orientation, focal35=26))
    q, _ = open_query(path)
    assert q.image() is q.photo and not q.photo.info and not q.photo.getexif()
    full = {q.size, q.size[::-1]}
    copies = []
    real_fromarray, real_frombytes = Image.fromarray, Image.frombytes

    def fromarray(obj, *a, **k):
        im = real_fromarray(obj, *a, **k)
        copies.append(im.size)
        return im

    def frombytes(mode, size, *a, **k):
        copies.append(tuple(size))
        return real_frombytes(mode, size, *a, **k)

    monkeypatch.setattr(Image, "fromarray", fromarray)
    monkeypatch.setattr(Image, "frombytes", frombytes)
    model.predict(path, top_k=2)
    assert not [c for c in copies if c in full], copies


def test_a_jpeg_through_predict_is_opened_once_and_its_exif_read_once(model_dir, tmp_path, monkeypatch):
    model = Img2GPS.load(model_dir)
    model.warmup()  # the encoder's weights load outside the count
    path = tmp_path / "q.jpg"
    path.write_bytes(_jpeg(Image.fromarray(place_image(1, seed=5)), orientation=6, focal35=26))
    import img2gps.exif as exif_mod

    counts = {"open": 0, "getexif": 0, "focal": 0}
    real_open, real_getexif, real_focal = Image.open, Image.Image.getexif, exif_mod.focal35_from_exif

    def counting_focal(*a, **k):  # the focal length: computed once, from the upright size
        counts["focal"] += 1
        return real_focal(*a, **k)

    def counting_open(*a, **k):
        counts["open"] += 1
        return real_open(*a, **k)

    def counting_getexif(self):
        # Pillow's JPEG opener reads the EXIF once itself (for the DPI) and caches it: count img2gps's own reads
        counts["getexif"] += sys._getframe(1).f_globals.get("__name__", "").startswith("img2gps")
        return real_getexif(self)

    monkeypatch.setattr(Image, "open", counting_open)
    monkeypatch.setattr(Image.Image, "getexif", counting_getexif)
    monkeypatch.setattr(exif_mod, "focal35_from_exif", counting_focal)
    import img2gps.photos as photos_mod

    monkeypatch.setattr(photos_mod, "focal35_from_exif", counting_focal, raising=False)  # a by-name import counts too
    pred = model.predict(path, top_k=2)
    assert counts == {"open": 1, "getexif": 1, "focal": 1}
    assert pred.photo_exif_position == pytest.approx((39.95, -75.19), abs=1e-4)  # display only


class _Counts:
    """Counts, while active, how often a photo's bytes are read from disk, its header parsed (Image.open), its
    pixels decoded (an ImageFile load with tiles left to decode) and its EXIF read by img2gps."""

    def __init__(self, monkeypatch):
        from pathlib import Path

        from PIL import ImageFile

        self.n = {"bytes": 0, "header": 0, "pixels": 0, "exif": 0}
        self.on = False
        real_open, real_exif = Image.open, Image.Image.getexif
        real_load, real_read = ImageFile.ImageFile.load, Path.read_bytes

        def bump(k, cond=True):
            if self.on and cond:
                self.n[k] += 1

        def read_bytes(p):
            bump("bytes", p.suffix == ".jpg")
            return real_read(p)

        def open_(*a, **k):
            bump("header")
            return real_open(*a, **k)

        def load(im):
            bump("pixels", bool(getattr(im, "tile", None)))
            return real_load(im)

        def getexif(im):
            # Pillow's JPEG opener reads the EXIF once itself (for the DPI) and caches it: count img2gps's reads
            bump("exif", sys._getframe(1).f_globals.get("__name__", "").startswith("img2gps"))
            return real_exif(im)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        monkeypatch.setattr(Image, "open", open_)
        monkeypatch.setattr(ImageFile.ImageFile, "load", load)
        monkeypatch.setattr(Image.Image, "getexif", getexif)


@pytest.mark.parametrize("gps", [True, False])
@pytest.mark.parametrize("via", ["api", "cli", "http"])
def test_each_query_is_read_parsed_decoded_and_its_exif_read_once(model_dir, tmp_path, monkeypatch, capsys, via,
                                                                 gps):
    from fastapi.testclient import TestClient

    from img2gps.cli import main
    from img2gps.server import create_app

    model = Img2GPS.load(model_dir)
    model.warmup()  # the encoder's weights load outside the count
    path = tmp_path / "q.jpg"
    buf = io.BytesIO()
    exif = gps_exif(39.95, -75.19, orientation=6, focal35=26) if gps else gps_exif(None, None, focal35=26)
    Image.fromarray(place_image(1, seed=5)).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    path.write_bytes(buf.getvalue())
    counts = _Counts(monkeypatch)
    if via == "http":
        with TestClient(create_app(model=model, warmup=False)) as c:
            data = path.read_bytes()  # the client's upload, outside the count
            counts.on = True
            r = c.post("/predict", files={"file": ("q.jpg", data, "image/jpeg")})
        assert r.status_code == 200, r.text
        expected = {"bytes": 0, "header": 1, "pixels": 1, "exif": 1}  # the bytes come from the request
    elif via == "cli":
        counts.on = True
        assert main(["predict", str(path), "--model", str(model_dir), "--format", "json"]) == 0
        rec = json.loads(capsys.readouterr().out)[0]
        assert (rec["exif_problem"] is None) == gps
        expected = {"bytes": 1, "header": 1, "pixels": 1, "exif": 1}
    else:
        counts.on = True
        model.predict(path, top_k=2)
        expected = {"bytes": 1, "header": 1, "pixels": 1, "exif": 1}
    counts.on = False
    assert counts.n == expected
