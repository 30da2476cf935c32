"""Outputs people ask for (issue 30): the found position written into a COPY of the photo's EXIF (never the
original), and predictions as GeoJSON (GIS tools) and KML (Google Earth), all from types.prediction_dict and
written atomically. Each test failed on 559cef9 (no such options)."""
from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps.cli import main
from img2gps.photos import read_meta


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.fixture()
def photos(tmp_path):
    d = tmp_path / "queries"
    d.mkdir()
    (d / "a_place1.jpg").write_bytes(jpeg_bytes(place_image(1, seed=501)))  # no EXIF at all
    own = (place_latlon(3)[0] + 0.0005, place_latlon(3)[1])  # its own GPS, 56 m off: no answer lands exactly there
    (d / "b_place3.jpg").write_bytes(jpeg_bytes(place_image(3, seed=502), gps=own))
    return d


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _json_answer(capsys, photo, model_dir) -> dict:
    code, out, err = run(capsys, "predict", photo, "--model", model_dir, "--format", "json")
    assert code == 0, err
    return json.loads(out)[0]


def test_write_exif_puts_the_answer_in_a_copy_and_leaves_the_photo_alone(capsys, model_dir, photos, tmp_path):
    photo = photos / "b_place3.jpg"
    before = _sha(photo)
    want = _json_answer(capsys, photo, model_dir)
    code, out, err = run(capsys, "predict", photo, "--model", model_dir, "--write-exif", tmp_path / "copy.jpg")
    assert code == 0, err
    assert _sha(photo) == before  # the original is untouched
    meta = read_meta(tmp_path / "copy.jpg")  # read back by img2gps's own EXIF reader
    assert meta.latitude == pytest.approx(want["latitude"], abs=1e-7)
    assert meta.longitude == pytest.approx(want["longitude"], abs=1e-7)
    assert meta.latitude != pytest.approx(place_latlon(3)[0] + 0.0005, abs=1e-7)  # the answer, not its old GPS
    assert meta.h_error_m == pytest.approx(want["radius_m"], abs=0.01)  # the radius as the positioning error
    with Image.open(photo) as a, Image.open(tmp_path / "copy.jpg") as b:  # pixels unchanged: no re-encoding
        assert a.tobytes() == b.tobytes()
    assert "copy.jpg" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_write_exif_refuses_the_original_as_its_output(capsys, model_dir, photos):
    photo = photos / "a_place1.jpg"
    before = _sha(photo)
    os.link(photo, photos / "hard_link.jpg")
    for target in (photo, photos / "hard_link.jpg", photos):  # the file, a hard link to it, its own folder
        code, out, err = run(capsys, "predict", photo, "--model", model_dir, "--write-exif", target)
        assert code == 2 and "is the input" in err and len(err.strip().splitlines()) == 1, err
    assert _sha(photo) == before


def test_write_exif_for_a_batch_fills_a_folder(capsys, model_dir, photos, tmp_path):
    code, out, err = run(capsys, "predict", photos, "--model", model_dir, "--write-exif", tmp_path / "tagged")
    assert code == 0, err
    got = sorted(p.name for p in (tmp_path / "tagged").iterdir())
    assert got == ["a_place1.jpg", "b_place3.jpg"]
    assert read_meta(tmp_path / "tagged" / "a_place1.jpg").has_gps  # it had no EXIF before


def test_write_exif_refuses_a_png_in_one_line(capsys, model_dir, tmp_path):
    png = tmp_path / "q.png"
    Image.fromarray(place_image(2, seed=7)).save(png)
    code, out, err = run(capsys, "predict", png, "--model", model_dir, "--write-exif", tmp_path / "q_gps.png")
    assert code == 2 and "JPEG" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "q_gps.png").exists()


def test_geojson_and_kml_files_carry_the_same_answers_as_json(capsys, model_dir, photos, tmp_path):
    code, out, err = run(capsys, "predict", photos, "--model", model_dir, "--format", "json",
                         "--geojson", tmp_path / "p.geojson", "--kml", tmp_path / "p.kml")
    assert code == 0, err
    records = json.loads(out)
    gj = json.loads((tmp_path / "p.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(records) == 2
    for f, r in zip(gj["features"], records):
        assert f["geometry"] == {"type": "Point", "coordinates": [r["longitude"], r["latitude"]]}  # lon first
        assert f["properties"]["radius_m"] == r["radius_m"] and f["properties"]["answer"] == r["answer"]
        assert [n["image_id"] for n in f["properties"]["neighbours"]] == [n["image_id"] for n in r["neighbours"]]
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    doc = ET.parse(tmp_path / "p.kml").getroot()
    marks = doc.findall(".//k:Placemark", ns)
    assert len(marks) == 2
    for m, r in zip(marks, records):
        lon, lat, _ = (float(x) for x in m.find(".//k:Point/k:coordinates", ns).text.split(","))
        assert (lat, lon) == (pytest.approx(r["latitude"], abs=1e-12), pytest.approx(r["longitude"], abs=1e-12))
        ring = [tuple(map(float, p.split(",")[:2])) for p in m.find(".//k:LinearRing/k:coordinates", ns).text.split()]
        from img2gps.geo import haversine_m

        d = [float(haversine_m(lat, lon, b, a)) for a, b in ring]
        assert ring[0] == ring[-1] and min(d) == pytest.approx(r["radius_m"], rel=0.01) and max(d) == pytest.approx(
            r["radius_m"], rel=0.01)  # the error circle, radius_m metres all round
        assert r["answer"] in m.find("k:description", ns).text


def test_geojson_and_kml_on_stdout(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos / "a_place1.jpg", "--model", model_dir, "--format", "geojson")
    assert code == 0 and json.loads(out)["features"][0]["properties"]["photo"].endswith("a_place1.jpg"), err
    code, out, err = run(capsys, "predict", photos / "a_place1.jpg", "--model", model_dir, "--format", "kml")
    assert code == 0 and ET.fromstring(out).tag.endswith("kml"), err


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    from img2gps import geofiles, outputs

    target = tmp_path / "p.geojson"
    target.write_text("old")

    def boom(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        geofiles.write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["p.geojson"]


def test_exif_copy_of_real_phone_photos_keeps_every_other_tag(penn91):
    """penn91's re-encoded iPhone/Samsung photos carry tags piexif reads but cannot write back as read (MakerNote,
    ComponentsConfiguration, SceneType): the copy keeps them all, with only the GPS block replaced."""
    import piexif

    from img2gps.geofiles import exif_copy_bytes

    names = ["whuang06__img2gps__img_00033.jpg", "CeciliaChen98__Image2GPS__IMG_7159.jpg",
             "LarrySimingDeng__IMG2GPS-Demo__penn-levine-hall-walnut-street.jpg"]
    for name in names:
        src = penn91 / "images" / name
        data = src.read_bytes()
        copy = exif_copy_bytes(data, name, {"latitude": -33.5, "longitude": 151.25, "radius_m": 40.0,
                                            "heading_deg": 271.0})
        a, b = piexif.load(data), piexif.load(copy)
        for ifd in ("0th", "Exif"):
            assert set(a[ifd]) <= set(b[ifd]), (name, ifd, set(a[ifd]) - set(b[ifd]))
        G = piexif.GPSIFD  # the photo's own GPS tags stay, but for its old fix (and direction: the answer has one)
        own = {t: v for t, v in a["GPS"].items() if t not in (G.GPSHPositioningError, G.GPSDOP, G.GPSImgDirection,
                                                              G.GPSLatitude, G.GPSLongitude, G.GPSLatitudeRef,
                                                              G.GPSLongitudeRef, G.GPSMapDatum, G.GPSVersionID)}
        assert {t: b["GPS"].get(t) for t in own} == own, name
        m0, m1 = read_meta(src), read_meta(copy)
        assert (m1.time, m1.device, m1.focal35) == (m0.time, m0.device, m0.focal35)
        assert (m1.latitude, m1.longitude) == (pytest.approx(-33.5, abs=1e-7), pytest.approx(151.25, abs=1e-7))
        assert m1.heading == pytest.approx(271.0) and m1.h_error_m == pytest.approx(40.0)


def test_geojson_kml_and_exif_copy_never_replace_an_input_or_another_file(capsys, model_dir, photos, tmp_path):
    """--geojson/--kml wrote over the input photo and --write-exif over any file, exit 0 (found by a new user)."""
    photo = photos / "a_place1.jpg"
    before = _sha(photo)
    for opt in ("--geojson", "--kml", "--write-exif"):
        code, out, err = run(capsys, "predict", photo, "--model", model_dir, opt, photo)
        assert code == 2 and "input" in err and len(err.strip().splitlines()) == 1, (opt, err)
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    for opt in ("--geojson", "--kml", "--write-exif"):
        code, out, err = run(capsys, "predict", photo, "--model", model_dir, opt, other)
        assert code == 2 and "--overwrite" in err, (opt, err)
    assert _sha(photo) == before and other.read_text() == "mine"
    geo = tmp_path / "p.geojson"
    assert run(capsys, "predict", photo, "--model", model_dir, "--geojson", geo)[0] == 0
    assert run(capsys, "predict", photo, "--model", model_dir, "--geojson", geo)[0] == 0  # its own kind: replaced
    props = json.loads(geo.read_text())["features"][0]["properties"]
    assert {"exif_note", "source_note", "chance_note"} <= set(props)
    code, out, err = run(capsys, "predict", photos, "--model", model_dir, "--write-exif", other)  # several photos
    assert code == 2 and "needs a folder" in err


def test_csv_says_what_the_answer_rests_on(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos / "a_place1.jpg", "--model", model_dir, "--format", "csv")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert "source_note" in header.split(",") and "chance_note" in header.split(",")


def test_exif_copy_keeps_the_photos_other_gps_tags_and_drops_its_old_fix(tmp_path):
    """The copy's GPS block holds the answer (position, datum, radius as positioning error) and keeps the photo's
    own GPS tags that are not its old fix: altitude, time and date stamps, speed, its image direction when the
    answer has none. The old positioning error and DOP would contradict the answer and are dropped."""
    import io

    import piexif

    from img2gps.geofiles import exif_copy_bytes

    G = piexif.GPSIFD
    own = {G.GPSLatitudeRef: b"N", G.GPSLatitude: ((39, 1), (57, 1), (207, 25)), G.GPSLongitudeRef: b"W",
           G.GPSLongitude: ((75, 1), (11, 1), (1479, 50)), G.GPSAltitudeRef: 0, G.GPSAltitude: (74263, 5135),
           G.GPSTimeStamp: ((20, 1), (23, 1), (29, 1)), G.GPSDateStamp: b"2024:09:23", G.GPSSpeedRef: b"K",
           G.GPSSpeed: (22611, 155111), G.GPSImgDirectionRef: b"T", G.GPSImgDirection: (1111635, 16384),
           G.GPSHPositioningError: (223346, 15669), G.GPSDOP: (5, 1)}
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 120, 60)).save(buf, "JPEG", exif=piexif.dump(
        {"0th": {piexif.ImageIFD.Make: b"Apple"}, "Exif": {}, "GPS": own}))
    for rec in ({"latitude": -33.5, "longitude": 151.25, "radius_m": 40.0, "heading_deg": None},
                {"latitude": 40.0, "longitude": -75.0, "radius_m": None, "heading_deg": 271.0}):
        gps = piexif.load(exif_copy_bytes(buf.getvalue(), "p.jpg", rec))["GPS"]
        for tag in (G.GPSAltitudeRef, G.GPSAltitude, G.GPSTimeStamp, G.GPSDateStamp, G.GPSSpeedRef, G.GPSSpeed):
            assert gps[tag] == own[tag], piexif.TAGS["GPS"][tag]["name"]
        assert gps[G.GPSMapDatum] == b"WGS-84" and G.GPSDOP not in gps
        assert gps[G.GPSLatitudeRef] == (b"S" if rec["latitude"] < 0 else b"N")
        assert gps[G.GPSLongitudeRef] == (b"E" if rec["longitude"] > 0 else b"W")
        if rec["radius_m"] is None:  # no radius: no stale positioning error of the old fix either
            assert G.GPSHPositioningError not in gps
        else:
            assert gps[G.GPSHPositioningError] == (40, 1)
        if rec["heading_deg"] is None:
            assert gps[G.GPSImgDirection] == own[G.GPSImgDirection]
        else:
            assert gps[G.GPSImgDirection] == (271, 1)


def test_every_file_predict_writes_is_announced_as_wrote(capsys, model_dir, photos, tmp_path):
    """--map said "map: PATH" while --geojson, --kml and --write-exif said "wrote PATH" (issue 30's fresh read)."""
    outs = {"--map": tmp_path / "m.html", "--geojson": tmp_path / "p.geojson", "--kml": tmp_path / "p.kml",
            "--write-exif": tmp_path / "copy.jpg"}
    code, out, err = run(capsys, "predict", photos / "b_place3.jpg", "--model", model_dir, "--no-tiles",
                         *[x for kv in outs.items() for x in kv])
    assert code == 0, err
    for path in outs.values():
        assert f"wrote {path}" in err.splitlines(), (path, err)
    assert "map:" not in err
