"""`img2gps predict`: text/json/csv output, folders and globs, bad files skipped with one line each, EXIF shown."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield from model_env(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("queries")
    (d / "sub").mkdir()
    (d / "a_place1.jpg").write_bytes(jpeg_bytes(place_image(1, seed=501)))
    (d / "sub" / "b_place3.jpg").write_bytes(jpeg_bytes(place_image(3, seed=502), gps=place_latlon(3)))
    (d / "notes.txt").write_text("not a photo, and not picked up from the folder")
    return d


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_shows_prediction_neighbours_and_exif(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos / "sub" / "b_place3.jpg", "--model", model_dir, "--top-k", 2)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("b_place3.jpg")
    assert "prediction" in lines[1] and "radius" in lines[1] and "chance within 25 m: " in lines[1] and "knn:k=2" in lines[1]
    # knn never verifies: said in words, with what its radius promises
    assert lines[2].strip() == ("not recognised: the method's own estimate (no geometric verification); "
                                "the radius holds for 80% of photos taken within the gallery's area")
    assert "photo EXIF" in lines[3] and "m from the prediction" in lines[3]
    assert "supporting gallery photos (cosine similarity" in lines[4]
    assert lines[5].strip().startswith("1.") and "place3_" in lines[5] and "cosine similarity 0." in lines[5]
    assert lines[6].strip().startswith("2.") and len(lines) == 7
    scores = [float(ln.split("cosine similarity ")[1].split()[0]) for ln in lines[5:7]]
    assert scores == sorted(scores, reverse=True)


def test_top_k_lists_that_many_sorted(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos / "a_place1.jpg", "--model", model_dir, "--top-k", 6)
    assert code == 0, err
    rows = [ln.strip() for ln in out.splitlines() if re.match(r"\s+\d+\. ", ln)]
    assert [int(r.split(".")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    scores = [float(r.split("cosine similarity ")[1].split()[0]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_json_output(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos, "--model", model_dir, "--format", "json", "--top-k", 3)
    assert code == 0, err
    recs = json.loads(out)
    assert [r["photo"].rsplit("/", 1)[-1] for r in recs] == ["a_place1.jpg", "b_place3.jpg"]  # folder, recursive
    for r in recs:
        assert {"latitude", "longitude", "radius_m", "confidence", "recognised", "method", "neighbours",
                "photo_exif_position", "exif_distance_m", "source", "heading_deg", "heading_radius_deg"} <= set(r)
        assert r["source"] == "model" and r["heading_deg"] is None
        assert r["answer"] == "not recognised" and "within the gallery's area" in r["radius_note"]
        assert len(r["neighbours"]) == 3
    assert recs[0]["photo_exif_position"] is None and recs[0]["exif_distance_m"] is None
    assert recs[1]["photo_exif_position"] == pytest.approx(list(place_latlon(3)), abs=1e-6)
    assert recs[1]["exif_distance_m"] < 20  # pixels of place 3, EXIF of place 3


def test_csv_output(capsys, model_dir, photos):
    code, out, err = run(capsys, "predict", photos / "*.jpg", photos / "sub" / "*.jpg", "--model", model_dir,
                         "-f", "csv", "--top-k", 2)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2
    assert rows[0]["n1_image"].startswith("place1_") and rows[1]["n2_image"].startswith("place3_")
    assert "n3_image" not in rows[0]
    assert rows[0]["exif_latitude"] == "" and float(rows[1]["exif_latitude"]) == pytest.approx(place_latlon(3)[0])
    assert 0 <= float(rows[0]["confidence"]) <= 1 and float(rows[0]["radius_m"]) > 0
    assert rows[0]["answer"] == "not recognised" and "gallery's area" in rows[0]["radius_note"]


def test_bad_files_are_skipped_one_line_each(capsys, model_dir, photos, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    code, out, err = run(capsys, "predict", tmp_path / "broken.jpg", photos / "a_place1.jpg", tmp_path / "empty.png",
                         tmp_path / "missing.jpg", tmp_path / "none-*.jpg", "--model", model_dir, "-f", "json")
    assert code == 1
    assert len(json.loads(out)) == 1  # the good photo is still located, stdout stays valid JSON
    skipped = [ln for ln in err.splitlines() if ln.startswith("skipped ")]
    assert len(skipped) == 4
    assert any("broken.jpg:" in ln for ln in skipped) and any("empty.png: empty file" in ln for ln in skipped)
    assert any("missing.jpg: file not found" in ln for ln in skipped)
    assert any("none-*.jpg: no file matches" in ln for ln in skipped)
    assert "4 of 5 inputs skipped" in err and "Traceback" not in err


def test_nothing_to_locate_is_one_error_line(capsys, model_dir, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    code, out, err = run(capsys, "predict", tmp_path / "broken.jpg", "--model", model_dir)
    assert code == 2 and out == ""  # one photo: exactly its own reason, one line
    assert err.strip().splitlines() == [f"error: {tmp_path / 'broken.jpg'}: unknown or unsupported image format"]
    code, out, err = run(capsys, "predict", tmp_path / "missing.jpg", "--model", model_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.jpg" in err
    (tmp_path / "broken2.jpg").write_bytes(b"nope")  # a batch: each bad file skipped, then one summary error
    code, out, err = run(capsys, "predict", tmp_path / "broken.jpg", tmp_path / "broken2.jpg", "--model", model_dir)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and lines[-1].startswith("error: ") and "no photo could be located" in lines[-1]
    assert sum(line.startswith("skipped ") for line in lines) == 2


def test_missing_model_is_one_error_line(capsys, photos, tmp_path):
    code, out, err = run(capsys, "predict", photos / "a_place1.jpg", "--model", tmp_path / "nomodel")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nomodel'}: model directory not found"


def test_map_is_written_offline(capsys, model_dir, photos, tmp_path):
    out_html = tmp_path / "m.html"
    code, out, err = run(capsys, "predict", photos, "--model", model_dir, "--map", out_html)
    assert code == 0, err
    page = out_html.read_text()
    assert "Leaflet 1.9" in page and "Img2GPSMap" in page
    assert "<script src" not in page and "<link" not in page  # everything inline, nothing fetched
    assert "a_place1.jpg" in page and "place0_0.jpg" in page  # a prediction label and a gallery point
