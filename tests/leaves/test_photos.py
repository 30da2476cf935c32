import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from img2gps.errors import PhotoError
from img2gps.photos import open_image, read_meta
from synth import scene, write_jpeg


def test_exif_gps_time_device_are_read(tmp_path):
    p = write_jpeg(tmp_path / "a.jpg", scene(1), -33.8568, 151.2153, when="2024:09:23 10:11:12",
                   make="Apple", model="iPhone 13")
    m = read_meta(p)
    assert abs(m.latitude + 33.8568) < 1e-6 and abs(m.longitude - 151.2153) < 1e-6
    assert m.time == "2024-09-23T10:11:12" and m.device == "Apple iPhone 13"


def test_orientation_applied_and_metadata_stripped(tmp_path):
    im = Image.new("RGB", (200, 100), "red")
    p = write_jpeg(tmp_path / "rot.jpg", im, 40.0, -75.0, orientation=6)
    out = open_image(p)
    assert out.size == (100, 200)  # portrait after applying Orientation=6
    assert not out.info and len(out.getexif()) == 0
    assert read_meta(p).width == 100 and read_meta(p).height == 200


@pytest.mark.parametrize("gps,problem", [
    ({1: "N", 2: (IFDRational(40, 0), IFDRational(0, 1), IFDRational(0, 1)), 3: "W", 4: (75.0, 0.0, 0.0)},
     "zero denominator"),
    ({2: (40.0, 0.0, 0.0), 4: (75.0, 0.0, 0.0)}, "reference"),
    ({1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (5.0, 0.0, 0.0)}, "out of range"),
    ({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}, "(0, 0)"),
])
def test_bad_gps_is_reported_not_used(tmp_path, gps, problem):
    p = write_jpeg(tmp_path / "g.jpg", scene(2), raw_gps=gps)
    m = read_meta(p)
    assert not m.has_gps and problem in m.gps_problem


@pytest.mark.parametrize("content,msg", [
    (b"", "empty"), (b"\xff\xd8\xff\xe0garbage" * 3, "corrupt"), (b"hello, not an image", "unknown"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, msg):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(PhotoError) as e:
        open_image(p)
    assert str(p) in str(e.value) and msg in str(e.value) and "\n" not in str(e.value)


def test_truncated_jpeg_and_bomb(tmp_path):
    p = write_jpeg(tmp_path / "t.jpg", scene(3, 256))
    p.write_bytes(p.read_bytes()[:400])
    with pytest.raises(PhotoError, match="corrupt or truncated"):
        open_image(p)
    big = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(big)  # 144 MP of 1-bit pixels: a tiny file, a huge decode
    with pytest.raises(PhotoError, match="too large"):
        open_image(big)


def test_inputs_of_every_kind_and_odd_modes(tmp_path):
    rgba = Image.new("RGBA", (30, 20), (0, 0, 255, 0))
    assert open_image(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white, not black
    assert open_image(np.zeros((10, 12), np.uint8)).size == (12, 10)
    i16 = Image.fromarray(np.full((8, 8), 4000, np.uint16))
    assert open_image(i16).mode == "RGB"
    p = tmp_path / "pal.png"
    Image.new("P", (9, 9)).save(p)
    assert open_image(p.read_bytes()).size == (9, 9)
    with pytest.raises(PhotoError, match="unsupported input"):
        open_image(3.14)
