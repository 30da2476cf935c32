"""Words that follow the model: the radius note quotes the calibrated coverage, a photo whose own GPS lies far outside
the gallery's area says so on every output (while the answer stays the method's), one distance formatter."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps.api import Img2GPS
from img2gps.area import OUTSIDE_MARGIN_M, outside_m, split_areas
from img2gps.cli import main
from img2gps.geo import format_distance
from img2gps.server import create_app
from img2gps.types import Prediction, prediction_dict

IRVINE = (33.6405, -117.8443)  # UC Irvine: a photo from elsewhere for a Philadelphia-like gallery


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


def test_one_distance_rule():
    assert [format_distance(m) for m in (0.4, 740.2, 999.4, 1250, 99_990, 3_824_584)] == [
        "0 m", "740 m", "999 m", "1.25 km", "99.99 km", "3,825 km"]


def test_outside_means_farther_than_the_area_plus_a_margin():
    lat0, lon0 = place_latlon(0)
    lat = lat0 + np.array([0, 0, 1, 1]) * 200 / 111_195
    lon = lon0 + np.array([0, 1, 0, 1]) * 200 / 85_000
    areas = split_areas(lat, lon)
    size = areas[0].size_m
    assert outside_m(areas, lat0, lon0) is None  # inside
    just = lat0 - (size + OUTSIDE_MARGIN_M - 30) / 111_195  # outside the hull, within size + margin
    assert outside_m(areas, just, lon0) is None
    far = lat0 - (size + OUTSIDE_MARGIN_M + 30) / 111_195
    assert outside_m(areas, far, lon0) == pytest.approx(size + OUTSIDE_MARGIN_M + 30, abs=2)
    assert outside_m(areas, *IRVINE) > 3_500_000


def test_prediction_words_quote_the_coverage_and_the_photo_from_elsewhere():
    p = Prediction(40.0, -75.0, 30.0, 0.5, False, "knn", radius_coverage=0.9, exif_outside_m=3_824_584.0,
                   photo_exif_position=IRVINE)
    d = prediction_dict(p)
    assert d["radius_note"] == "holds for 90% of photos taken within the gallery's area"
    assert d["exif_note"] == ("its own GPS places it 3,825 km from this gallery's area; img2gps can only place "
                              "photos taken within it")
    assert d["radius_text"] == "30 m" and d["exif_distance_text"].endswith(" km")
    assert prediction_dict(Prediction(40.0, -75.0, 30.0, 0.5, False, "knn"))["exif_note"] is None


def test_every_output_says_so_and_the_answer_does_not_change(model_dir, tmp_path, capsys):
    img = place_image(2, seed=77)
    home = tmp_path / "home.jpg"
    away = tmp_path / "away.jpg"
    plain = tmp_path / "plain.jpg"
    home.write_bytes(jpeg_bytes(img, gps=place_latlon(2)))
    away.write_bytes(jpeg_bytes(img, gps=IRVINE))
    plain.write_bytes(jpeg_bytes(img))
    m = Img2GPS.load(model_dir)
    a, h, p = (m.predict(x) for x in (away, home, plain))
    assert (a.latitude, a.longitude, a.radius_m) == (p.latitude, p.longitude, p.radius_m) == (
        h.latitude, h.longitude, h.radius_m)  # EXIF is never an input
    assert h.exif_outside_m is None and p.exif_outside_m is None and a.exif_outside_m > 3_500_000
    note = "from this gallery's area; img2gps can only place photos taken within it"
    for fmt in ("text", "json", "csv"):
        assert main(["predict", str(away), str(home), "--model", str(model_dir), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert out.count(note) == 1, fmt
    assert main(["predict", str(away), "--model", str(model_dir), "--format", "json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    rec = rec[0] if isinstance(rec, list) else rec
    assert rec["exif_note"].startswith("its own GPS places it 3,")
    with TestClient(create_app(model=m)) as c:
        r = c.post("/predict", files={"file": ("away.jpg", away.read_bytes(), "image/jpeg")}).json()
        assert note in r["exif_note"] and r["latitude"] == pytest.approx(p.latitude)
        r = c.post("/predict", files={"file": ("home.jpg", home.read_bytes(), "image/jpeg")}).json()
        assert r["exif_note"] is None  # the page showing the note: tests/server/test_page.py


@pytest.mark.slow
def test_penn91_photos_against_a_bgu_west_model_say_they_are_from_elsewhere(penn91, bgu_west, tmp_path, capsys):
    """All 91 penn91 photos (own EXIF GPS in Philadelphia) answered by a bgu-west model (Beer Sheva): the JSON
    output of each, and the text and HTTP outputs of 11 of them, say their own GPS is outside the gallery's area;
    none does for penn91's own gallery, leaving each photo out."""
    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor

    p = make_predictor("knn")
    p.fit(load_dataset(bgu_west))
    p.save(tmp_path / "bgu")
    assert main(["predict", str(penn91 / "images"), "--model", str(tmp_path / "bgu"), "--format", "json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 91 and all("from this gallery's area" in (r["exif_note"] or "") for r in recs)
    # the text output and the HTTP answer on every 9th photo (11): each photo's note comes from its own EXIF, which
    # the JSON above checked on all 91
    files = sorted((penn91 / "images").iterdir())[::9]
    assert main(["predict", *map(str, files), "--model", str(tmp_path / "bgu"), "--format", "text"]) == 0
    assert capsys.readouterr().out.count("photo from elsewhere: its own GPS places it") == len(files) == 11
    with TestClient(create_app(model=Img2GPS.load(tmp_path / "bgu"))) as c:
        for f in files:
            r = c.post("/predict", files={"file": (f.name, f.read_bytes(), "image/jpeg")}).json()
            assert r["exif_note"] and r["exif_note"].startswith("its own GPS places it"), f.name
    ds = load_dataset(penn91)
    for i in range(len(ds)):  # penn91 leave-one-out: each photo's own GPS against the other 90's area
        rest = np.delete(np.arange(len(ds)), i)
        assert outside_m(split_areas(ds.lat[rest], ds.lon[rest]), ds.lat[i], ds.lon[i]) is None, ds.ids[i]


def test_the_map_page_says_so_too(tmp_path):
    from img2gps.maps import write_map_html

    p = Prediction(40.0, -75.0, 30.0, 0.5, False, "knn", photo_exif_position=IRVINE, exif_outside_m=3_824_584.0,
                   chance_25m=0.5)
    write_map_html(tmp_path / "m.html", [p])
    html = (tmp_path / "m.html").read_text()
    assert "its own GPS places it 3,825 km from this gallery" in html and "chance within 25 m: 50%" in html
