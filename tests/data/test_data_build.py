"""`img2gps data build`: formats, EXIF, orientation, labels override, cleaning steps, safe output, real originals."""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from img2gps.cli import main
from img2gps.data import build as build_mod
from img2gps.data import cleaning as cl
from img2gps.errors import DataError
from img2gps.geo import LocalFrame
from img2gps.exif import dms as exif_dms
from img2gps.photos import read_meta
from synth import gps_exif

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BASE = (39.9515, -75.1915)  # somewhere on a campus; every synthetic position is a metre offset from here


def exif_bytes(lat=None, lon=None, orientation=None, time=None, make=None, model=None, direction=None,
               focal35=None) -> bytes:
    return gps_exif(lat, lon, orientation=orientation, when=time, make=make, model=model, direction=direction,
                    focal35=focal35).tobytes()


def pattern(seed: int, size=(64, 48)) -> Image.Image:
    """Blocky random picture: different seeds give unrelated perceptual hashes."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.NEAREST)


def photo(path: Path, lat=None, lon=None, seed=0, size=(64, 48), fmt="JPEG", **exif) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = pattern(seed, size)
    im.save(path, fmt, exif=exif_bytes(lat, lon, **exif), **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb), with a valid header CRC."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", width, height)  # IHDR data starts at byte 16
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def at(east_m: float, north_m: float) -> tuple[float, float]:
    f = LocalFrame(*BASE)
    la, lo = f.to_latlon(np.array([east_m, north_m]))
    return float(la), float(lo)


def run(*args) -> int:
    return main(["data", "build", *map(str, args)])


def labels(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "labels.csv").set_index("image")


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# --------------------------------------------------------------------------- reading photos

def test_formats_exif_and_bad_files(tmp_path, capsys):
    src = tmp_path / "src"
    photo(src / "north_west.jpg", 39.9521, -75.1932, seed=1, time="2024:09:23 16:05:37", make="Apple",
          model="iPhone 13", direction=271.5, focal35=26)
    photo(src / "sub" / "south_east.heic", -33.8688, 151.2093, seed=2, fmt="HEIF")
    photo(src / "gps.png", 39.95, -75.19, seed=3, fmt="PNG")
    photo(src / "nogps.png", seed=4, fmt="PNG")
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("not a picture")
    good = io.BytesIO()
    pattern(5, (200, 150)).save(good, "JPEG", exif=exif_bytes(39.95, -75.19))
    (src / "truncated.jpg").write_bytes(good.getvalue()[:300])
    (src / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (src / "notes.txt").write_text("ignored")
    (src / "._north_west.jpg").write_bytes(b"\0\5\26\7")  # macOS resource fork: hidden, ignored
    before = sorted((p.name, p.stat().st_mtime_ns) for p in src.rglob("*"))

    out = tmp_path / "out"
    assert run(src, out) == 0
    err = capsys.readouterr().err
    lab = labels(out)
    assert sorted(lab.index) == ["gps.jpg", "north_west.jpg", "south_east.jpg"]
    assert abs(lab.loc["north_west.jpg", "Latitude"] - 39.9521) < 1e-6
    assert abs(lab.loc["north_west.jpg", "Longitude"] + 75.1932) < 1e-6
    assert abs(lab.loc["south_east.jpg", "Latitude"] + 33.8688) < 1e-6  # S and E refs honoured
    assert abs(lab.loc["south_east.jpg", "Longitude"] - 151.2093) < 1e-6
    assert lab.loc["north_west.jpg", "time"] == "2024-09-23T16:05:37"
    assert lab.loc["north_west.jpg", "device"] == "Apple iPhone 13"
    assert lab.loc["north_west.jpg", "heading"] == pytest.approx(271.5)  # EXIF GPSImgDirection, true north
    assert lab.loc["north_west.jpg", "focal35"] == 26
    assert pd.isna(lab.loc["gps.jpg", "heading"])
    assert list(pd.read_csv(out / "labels.csv").columns) == ["image", "Latitude", "Longitude", "time", "device",
                                                             "heading", "focal35"]
    r = report(out)
    reasons = {s["file"]: s["reason"] for s in r["skipped"]}
    assert set(reasons) == {"nogps.png", "zero.jpg", "text.jpg", "truncated.jpg", "bomb.png"}
    assert "too large" in reasons["bomb.png"]
    assert "0 bytes" in reasons["zero.jpg"]
    assert "unknown or unsupported image format" in reasons["text.jpg"]
    assert "corrupt or truncated" in reasons["truncated.jpg"]
    assert "GPS" in reasons["nogps.png"]
    for name in reasons:  # every bad file is listed on stderr, one line each
        assert sum(name in line for line in err.splitlines()) == 1
    assert r["counts"]["ignored_files"] == {".txt": 1, "hidden": 1}
    for f in (out / "images").iterdir():  # written JPEGs carry no metadata (no GPS for a predictor to read)
        with Image.open(f) as im:
            assert im.format == "JPEG" and not im.getexif()
    assert {"report.md", "points.png", "report.json", "labels.csv"} <= {p.name for p in out.iterdir()}
    assert sorted((p.name, p.stat().st_mtime_ns) for p in src.rglob("*")) == before  # SRC untouched


def test_each_photo_is_read_and_opened_once(tmp_path, monkeypatch):
    """data build reads each photo's bytes once and parses its header once (its EXIF decides whether the pixels
    are decoded at all: a photo without a position is skipped undecoded), whatever its orientation."""
    from PIL import ImageFile

    src = tmp_path / "src"
    photo(src / "a.jpg", *at(0, 0), seed=1, orientation=6, focal35=26)
    photo(src / "b.jpg", *at(30, 0), seed=2)
    photo(src / "c.png", *at(0, 30), seed=3, fmt="PNG")
    photo(src / "nogps.jpg", seed=4)
    n = {"bytes": 0, "header": 0, "pixels": 0}
    real_read, real_open, real_load = Path.read_bytes, Image.open, ImageFile.ImageFile.load

    def read_bytes(path):
        n["bytes"] += path.parent == src
        return real_read(path)

    def open_(*a, **k):
        n["header"] += 1
        return real_open(*a, **k)

    def load(im):
        n["pixels"] += bool(getattr(im, "tile", None))
        return real_load(im)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Image, "open", open_)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    assert build_mod.build_dataset(src, tmp_path / "out", log=lambda m: None)
    monkeypatch.undo()
    assert n == {"bytes": 4, "header": 4, "pixels": 3}
    assert sorted(labels(tmp_path / "out").index) == ["a.jpg", "b.jpg", "c.jpg"]
    assert Image.open(tmp_path / "out" / "images" / "a.jpg").size == (48, 64)  # turned upright


def test_orientation_and_resize(tmp_path):
    src = tmp_path / "src"
    im = Image.new("RGB", (1600, 800), "black")
    im.paste((255, 0, 0), (0, 0, 200, 200))  # red in the stored top-left corner
    src.mkdir()
    im.save(src / "rot6.jpg", "JPEG", exif=exif_bytes(39.95, -75.19, orientation=6))
    photo(src / "big.jpg", 39.951, -75.191, seed=1, size=(2000, 1500))
    out = tmp_path / "out"
    assert run(src, out) == 0
    with Image.open(out / "images" / "rot6.jpg") as r6:
        assert r6.size == (600, 1200)  # upright (portrait) and long side 1200 by default
        a = np.asarray(r6)
    # Orientation 6 = rotate 90 degrees clockwise to display: stored top-left ends up top-right.
    assert a[20, 580, 0] > 200 and a[20, 580, 1] < 60
    assert a[20, 20, 0] < 60
    with Image.open(out / "images" / "big.jpg") as b:
        assert b.size == (1200, 900)
    r = report(out)
    assert r["counts"]["portrait"] == 1 and r["counts"]["landscape"] == 1

    out2 = tmp_path / "small"
    assert run(src, out2, "--max-side", 100) == 0
    assert max(Image.open(out2 / "images" / "big.jpg").size) == 100


def test_name_collisions_get_unique_outputs(tmp_path):
    src = tmp_path / "src"
    photo(src / "a" / "IMG_1.jpg", 39.95, -75.19, seed=1)
    photo(src / "b" / "IMG_1.jpg", 39.951, -75.19, seed=2)
    photo(src / "c" / "IMG_1.png", 39.952, -75.19, seed=3, fmt="PNG")
    out = tmp_path / "out"
    assert run(src, out) == 0
    names = sorted(labels(out).index)
    assert len(set(n.lower() for n in names)) == 3 and all((out / "images" / n).is_file() for n in names)
    src_of = {p["image"]: p["source"] for p in report(out)["photos"]}
    assert sorted(src_of.values()) == ["a/IMG_1.jpg", "b/IMG_1.jpg", "c/IMG_1.png"]


def test_labels_csv_overrides_exif(tmp_path):
    src = tmp_path / "src"
    photo(src / "a.jpg", 39.95, -75.19, seed=1)
    photo(src / "b.png", seed=2, fmt="PNG")  # no GPS: the CSV supplies it
    photo(src / "c.jpg", 39.952, -75.192, seed=3)  # not in the CSV: EXIF is used
    photo(src / "d.jpg", 39.953, -75.193, seed=4)  # CSV row is invalid: skipped, not silently EXIF
    csv = tmp_path / "my labels.csv"
    csv.write_text("file_name,lat,lng\na.jpg,40.1,-75.5\nimages/b.png,40.2,-75.6\nd.jpg,nan,-75\nghost.jpg,40,-75\n")
    out = tmp_path / "out"
    assert run(src, out, "--labels", csv) == 0
    lab = labels(out)
    assert (lab.loc["a.jpg", "Latitude"], lab.loc["a.jpg", "Longitude"]) == (40.1, -75.5)
    assert (lab.loc["b.jpg", "Latitude"], lab.loc["b.jpg", "Longitude"]) == (40.2, -75.6)
    assert abs(lab.loc["c.jpg", "Latitude"] - 39.952) < 1e-6
    assert "d.jpg" not in lab.index
    r = report(out)
    assert "--labels row invalid" in {s["file"]: s["reason"] for s in r["skipped"]}["d.jpg"]
    assert r["labels"]["rows_without_photo"] == ["ghost.jpg"]
    assert r["counts"]["label_source"] == {"csv": 2, "exif": 1}


def test_labels_csv_without_needed_columns(tmp_path, capsys):
    src = tmp_path / "src"
    photo(src / "a.jpg", 39.95, -75.19)
    csv = tmp_path / "l.csv"
    csv.write_text("name,x,y\na.jpg,1,2\n")
    assert run(src, tmp_path / "out", "--labels", csv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing column" in err and "l.csv" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["empty", "no_gps", "missing"])
def test_no_usable_photo_is_one_line_error(tmp_path, capsys, case):
    src = tmp_path / "src"
    src.mkdir()
    if case == "no_gps":
        photo(src / "a.jpg")
        photo(src / "b.png", fmt="PNG")
    if case == "missing":
        src = tmp_path / "nowhere"
    assert run(src, tmp_path / "out") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(src) in err[0]
    assert {"empty": "no photos found", "no_gps": "none of 2 photo/video files", "missing": "not found"}[case] in err[0]
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left behind


# --------------------------------------------------------------------------- output safety

def test_refuses_unsafe_outputs_and_overwrites_only_on_request(tmp_path, capsys):
    src = tmp_path / "src"
    photo(src / "a.jpg", 39.95, -75.19, seed=1)
    assert run(src, src) == 2
    assert run(src, src / "out") == 2
    errs = capsys.readouterr().err
    assert "inside the input" in errs
    assert not (src / "out").exists()

    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    assert run(src, other) == 2
    assert run(src, other, "--overwrite") == 2  # not an earlier build: never replaced
    assert (other / "keep.txt").read_text() == "precious"
    assert "not empty" in capsys.readouterr().err

    out = tmp_path / "out"
    assert run(src, out) == 0
    assert run(src, out) == 2
    photo(src / "b.jpg", 39.951, -75.19, seed=2)
    assert run(src, out, "--overwrite") == 0
    assert sorted(labels(out).index) == ["a.jpg", "b.jpg"]


def test_output_containing_source_is_refused(tmp_path):
    src = tmp_path / "out" / "photos"
    photo(src / "a.jpg", 39.95, -75.19)
    with pytest.raises(DataError, match="contains the input"):
        build_mod.build_dataset(src, tmp_path / "out", build_mod.BuildConfig(overwrite=True))


def test_interrupted_build_leaves_no_half_written_output(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(3):
        photo(src / f"p{i}.jpg", 39.95 + i * 1e-4, -75.19, seed=i)
    out = tmp_path / "out"
    assert run(src, out) == 0
    first = (out / "labels.csv").read_text()
    real = build_mod.read_one
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(build_mod, "read_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_mod.build_dataset(src, out, build_mod.BuildConfig(overwrite=True))
    assert (out / "labels.csv").read_text() == first  # the previous build is intact
    calls["n"] = 0
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        build_mod.build_dataset(src, fresh)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp folders left


# --------------------------------------------------------------------------- cleaning steps (pure functions)

def test_robust_bbox_ignores_a_far_glitch():
    pts = [at(e, n) for e, n in [(0, 0), (30, 10), (-40, 25), (60, -30), (10, 80), (-70, -60), (5000, 3000)]]
    lat, lon = np.array(pts).T
    box = cl.robust_bbox(lat, lon)
    out = cl.outside_bbox(lat, lon, box)
    assert out.tolist() == [False] * 6 + [True]
    assert cl.parse_bbox("auto") == "auto"
    assert cl.parse_bbox("39.9,-75.2,40.0,-75.1") == (39.9, -75.2, 40.0, -75.1)
    for bad in ("1,2,3", "40,-75,39,-74", "a,b,c,d", "100,0,101,1"):
        with pytest.raises(DataError, match="--bbox"):
            cl.parse_bbox(bad)


def test_singletons_by_radius():
    en = np.array([[0, 0], [0, 0], [3, 0], [50, 0], [100, 0], [104, 0]], float)
    assert cl.singleton_mask(en, 0).tolist() == [False, False, True, True, True, True]
    assert cl.singleton_mask(en, 5).tolist() == [False, False, False, True, False, False]
    assert cl.singleton_mask(en, 60).sum() == 0


def test_drift_dates_flag_impossible_speed_per_device():
    en = np.array([[0, 0], [10, 0], [20, 0], [500, 0], [0, 0], [300, 0], [0, 0], [200, 0]], float)
    times = ["2024-09-23T10:00:00", "2024-09-23T10:00:20", "2024-09-23T10:00:40",
             "2024-09-24T10:00:00", "2024-09-24T10:00:05",  # 500 m in 5 s: drift
             "2024-09-25T10:00:00", "2024-09-25T10:00:00",  # two people at once, far apart: fine
             None]
    devices = ["A", "A", "A", "A", "A", "A", "B", "A"]
    rep = cl.drift_dates(times, devices, en, [f"p{i}" for i in range(8)])
    assert rep.flagged == ["2024-09-24"]
    assert rep.no_time == 1
    jump = rep.per_date["2024-09-24"]["jumps"][0]
    assert jump["from"] == "p3" and jump["to"] == "p4" and jump["speed_mps"] == 100.0
    assert rep.per_date["2024-09-23"]["max_speed_mps"] == 0.5
    assert cl.parse_dates("2024-09-23, 2024-09-24") == ["2024-09-23", "2024-09-24"]
    with pytest.raises(DataError, match="not a date"):
        cl.parse_dates("23/09/2024")


def test_near_duplicates_keep_the_first():
    a = 0
    b = 0b111  # 3 bits from a
    c = 0b111111  # 3 from b, 6 from a
    d = (1 << 64) - 1  # far from everything
    pairs = cl.near_duplicates([a, b, c, d, a], max_hamming=4)
    # b is a duplicate of a; c is compared only with kept photos (a, 6 bits) so it stays; the last a goes.
    assert [(i, j) for i, j, _ in pairs] == [(1, 0), (4, 0)]
    assert cl.nearest_hamming([a, b, d]).tolist() == [3, 3, 61]


# --------------------------------------------------------------------------- cleaning end to end

def _cleaning_folder(tmp_path) -> Path:
    src = tmp_path / "src"
    spot = [(0, 0), (1, 1), (20, 0), (21, 1), (40, 0), (41, 0)]  # three 2-photo points
    for i, (e, n) in enumerate(spot):
        photo(src / f"p{i}.jpg", *at(e, n), seed=10 + i, time=f"2024:09:23 10:{i:02d}:00", model="cam")
    photo(src / "q_lonely.jpg", *at(120, 0), seed=20, time="2024:09:23 10:30:00", model="other")
    photo(src / "q_glitch.jpg", *at(9000, 4000), seed=21, time="2024:09:22 09:00:00", model="cam")
    photo(src / "r_drift1.jpg", *at(40, 2), seed=22, time="2024:09:21 12:00:00", model="cam")
    photo(src / "r_drift2.jpg", *at(41, 80), seed=23, time="2024:09:21 12:00:03", model="cam")  # 78 m in 3 s
    photo(src / "s_dup.jpg", *at(20.5, 0), seed=10 + 2, time="2024:09:23 11:00:00", model="cam")  # same as p2
    return src


def test_cleaning_reported_when_off_and_applied_when_on(tmp_path):
    src = _cleaning_folder(tmp_path)
    out = tmp_path / "off"
    assert run(src, out) == 0
    r = report(out)
    assert r["counts"]["kept"] == 11  # everything off: nothing dropped ...
    c = r["cleaning"]
    assert not any(s["enabled"] for s in c.values())
    assert c["bbox"]["images"] == ["q_glitch.jpg"]  # ... but each step says what it would drop
    assert c["drift_dates"]["flagged_dates"] == ["2024-09-21"]
    assert sorted(c["drift_dates"]["images"]) == ["r_drift1.jpg", "r_drift2.jpg"]
    assert "q_lonely.jpg" in c["singletons"]["images"]
    assert [p["image"] for p in c["near_duplicates"]["pairs"]] == ["s_dup.jpg"]
    assert c["near_duplicates"]["pairs"][0]["same_as"] == "p2.jpg"
    md = (out / "report.md").read_text()
    assert "would drop" in md and "spacing" in md

    on = tmp_path / "on"
    assert run(src, on, "--bbox", "auto", "--drop-drift-dates", "--drop-singletons", 5, "--dedup") == 0
    kept = set(labels(on).index)
    assert kept == {f"p{i}.jpg" for i in range(6)}
    r = report(on)
    assert r["counts"]["dropped"] == {"bbox": 1, "drift_dates": 2, "singletons": 1, "near_duplicates": 1}
    assert not (on / "images" / "s_dup.jpg").exists()
    assert len(list((on / "images").iterdir())) == 6

    named = tmp_path / "named"
    assert run(src, named, "--drop-dates", "2024-09-22,2024-09-21") == 0
    assert report(named)["counts"]["dropped"]["drift_dates"] == 3
    assert run(src, tmp_path / "bad", "--drop-dates", "yesterday") == 2
    given = tmp_path / "given"
    box = "{},{},{},{}".format(*at(-10, -10), *at(25, 10))
    assert run(src, given, "--bbox", box) == 0
    assert set(labels(given).index) == {"p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "s_dup.jpg"}


def test_cleaning_that_drops_everything_is_an_error(tmp_path, capsys):
    src = tmp_path / "src"
    photo(src / "a.jpg", *at(0, 0), seed=1)
    photo(src / "b.jpg", *at(500, 0), seed=2)
    assert run(src, tmp_path / "out", "--drop-singletons", 10) == 2
    assert "dropped all 2 photos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_signed_gps_parts_follow_the_ref():
    # EXIF rationals are unsigned, but some writers store signed parts; the N/S/E/W ref decides the sign.
    assert exif_dms((-33.0, 30.0, 0.0), "S", "N", "S", 90) == -33.5
    assert exif_dms((33.0, 30.0, 0.0), "S", "N", "S", 90) == -33.5
    assert exif_dms((-75.5,), "W", "E", "W", 180) == -75.5
    with pytest.raises(ValueError, match="reference"):
        exif_dms((10.0, 0.0, 0.0), "", "N", "S", 90)


# --------------------------------------------------------------------------- real photos (skipped when absent)

@pytest.mark.skipif(not (SHARED / "penn-originals" / "labels.csv").is_file(), reason="shared data absent")
def test_penn_originals_done_when(tmp_path):
    src = SHARED / "penn-originals"
    out = tmp_path / "out"
    assert run(src, out) == 0
    truth = pd.read_csv(src / "labels.csv").set_index("image")
    lab = labels(out)
    assert len(lab) == 6
    for name, row in truth.iterrows():
        assert abs(lab.loc[name, "Latitude"] - row.Latitude) < 1e-6
        assert abs(lab.loc[name, "Longitude"] - row.Longitude) < 1e-6
        with Image.open(out / "images" / name) as im:
            assert im.height > im.width and max(im.size) == 1200  # upright portrait
    assert "SM-A315F" in lab.loc["img_00000.jpg", "device"] and "\x00" not in lab.loc["img_00000.jpg", "device"]


@pytest.mark.skipif(not (SHARED / "penn91" / "labels.csv").is_file(), reason="shared data absent")
def test_exif_reader_agrees_with_penn91_labels():
    d = SHARED / "penn91"
    truth = pd.read_csv(d / "labels.csv")
    worst = 0.0
    for name, la, lo in truth[["image", "Latitude", "Longitude"]].itertuples(index=False):
        m = read_meta(d / "images" / name)
        worst = max(worst, abs(m.latitude - la), abs(m.longitude - lo))
    assert worst < 1e-6
