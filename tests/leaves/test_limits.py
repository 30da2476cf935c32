"""Issue 14: one pixel limit (photos.MAX_PIXELS) on every path, configurable, never pre-empted by Pillow's
decompression-bomb guard; library warnings reach the user only as the tool's own one-line reasons."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pandas as pd
import pytest
from PIL import Image

from img2gps.cli import main
from img2gps.errors import ImageTooLarge, PhotoError
from img2gps.photos import MAX_PIXELS, open_image, pixel_limit, read_meta
from synth import gps_exif

GPS = (40.0005, -75.0005)


@pytest.fixture(scope="module")
def phone_108mp(tmp_path_factory):
    p = tmp_path_factory.mktemp("big") / "src" / "phone.jpg"
    p.parent.mkdir()
    Image.new("RGB", (12000, 9000), (120, 130, 140)).save(p, "JPEG", quality=80, exif=gps_exif(*GPS).tobytes())
    return p


def test_108mp_photo_opens_without_any_warning(phone_108mp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning (or any other) would fail here
        meta = read_meta(phone_108mp)
        im = open_image(phone_108mp, max_side=640)
    assert (meta.width, meta.height) == (12000, 9000) and meta.latitude == pytest.approx(GPS[0])
    assert max(im.size) == 640
    with pytest.raises(ImageTooLarge, match=r"12000x9000 = 108 MP; limit 100 MP"):
        open_image(phone_108mp, max_pixels=100_000_000)
    assert MAX_PIXELS == pixel_limit(None) and pixel_limit(150) == 150_000_000
    for bad in (0, -1, 10_000):
        with pytest.raises(ValueError, match="--max-megapixels"):
            pixel_limit(bad)


def test_data_build_and_predict_keep_the_108mp_photo(phone_108mp, gallery_dir, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "build", str(phone_108mp.parent), str(out)]) == 0
    lab = pd.read_csv(out / "labels.csv")
    assert list(lab.image) == ["phone.jpg"] and (lab.Latitude[0], lab.Longitude[0]) == pytest.approx(GPS)
    capsys.readouterr()
    assert main(["data", "build", str(phone_108mp.parent), str(tmp_path / "ds2"), "--max-megapixels", "100"]) == 2
    err = capsys.readouterr().err
    assert "skipped phone.jpg: image too large (12000x9000 = 108 MP; limit 100 MP)" in err
    model = tmp_path / "m"
    assert main(["fit", "--data", str(gallery_dir), "--method", "mean-coordinate", "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", str(phone_108mp), "--model", str(model)]) == 0
    cap = capsys.readouterr()
    assert "photo EXIF  40.000500, -75.000500" in cap.out and "Warning" not in cap.err
    assert main(["predict", str(phone_108mp), "--model", str(model), "--max-megapixels", "50"]) == 2
    assert "limit 50 MP" in capsys.readouterr().err
    assert main(["predict", str(phone_108mp), "--model", str(model), "--max-megapixels", "9999"]) == 2
    assert "error: --max-megapixels must be in" in capsys.readouterr().err


def test_heic_without_pillow_heif_says_what_to_install(tmp_path):
    pytest.importorskip("pillow_heif")
    p = tmp_path / "a.heic"
    Image.new("RGB", (16, 16), "red").save(p, "HEIF")
    code = ("import sys; sys.modules['pillow_heif'] = None\n"  # as if pillow-heif were not installed
            "from img2gps.photos import open_image\nfrom img2gps.errors import PhotoError\n"
            f"try:\n    open_image({str(p)!r})\nexcept PhotoError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pillow-heif is not installed (pip install pillow-heif)" in out.stdout, out.stderr


def test_photo_errors_are_one_line():
    with pytest.raises(PhotoError) as e:
        open_image(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    assert "\n" not in str(e.value)


def test_predict_names_a_corrupt_exif_gps_block(gallery_dir, tmp_path, capsys):
    from corpus import corrupt_gps_pointer
    from synth import scene

    photo = tmp_path / "broken-gps.jpg"
    photo.write_bytes(corrupt_gps_pointer(scene(3, 96), 40))
    model = tmp_path / "m"
    assert main(["fit", "--data", str(gallery_dir), "--method", "mean-coordinate", "--out", str(model)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["predict", str(photo), "--model", str(model)]) == 0
    cap = capsys.readouterr()
    assert "photo EXIF  no position: EXIF GPS block is corrupt" in cap.out
    assert "Warning" not in cap.err and "site-packages" not in cap.err
