"""Issue 21, section 1: real-world inputs that failed on 1bf23d7, one test per kind (each failed there first).

Every input is made in code: tiny synthetic photos, CSVs and HTTP requests.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from img2gps.cli import main
from img2gps.errors import PhotoError
from img2gps.geo import LocalFrame
from img2gps.photos import open_image, read_meta
from synth import gps_exif

BASE = (39.9515, -75.1915)


def at(east_m: float, north_m: float) -> tuple[float, float]:
    la, lo = LocalFrame(*BASE).to_latlon(np.array([east_m, north_m]))
    return float(la), float(lo)


def pattern(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.NEAREST)


def jpeg(seed: int = 0, size=(64, 48), exif: Image.Exif | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    pattern(seed, size).save(buf, "JPEG", quality=92, **({"exif": exif.tobytes()} if exif else {}), **kw)
    return buf.getvalue()


def build(*args) -> int:
    return main(["data", "build", *map(str, args)])


# ----------------------------------------------------------------------------------------------- time zones

def test_mixed_time_zones_in_labels_csv(tmp_path, capsys):
    """Photos without EXIF time (as messaging apps deliver them); the CSV mixes local times with UTC and offset
    times (Google Takeout, GPS loggers). The build must not crash comparing them, and must say what it could not
    compare or read."""
    src = tmp_path / "src"
    src.mkdir()
    times = ["2024-09-23T10:00:00", "2024-09-23T14:05:00Z", "2024-09-23T16:10:00+02:00", "2024-09-23 10:20:00",
             "2024:09:23 10:30:00", "yesterday at noon"]
    rows = ["image,Latitude,Longitude,time,device"]
    for i, t in enumerate(times):
        (src / f"p{i}.jpg").write_bytes(jpeg(i))
        la, lo = at(10 * i, 0)
        rows.append(f"p{i}.jpg,{la:.7f},{lo:.7f},{t},Pixel 7")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    rc = build(src, tmp_path / "out", "--labels", tmp_path / "labels.csv")
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "TypeError" not in err and "offset-naive" not in err
    drift = json.loads((tmp_path / "out" / "report.json").read_text())["cleaning"]["drift_dates"]
    assert drift["photos_with_unreadable_time"] == ["p5.jpg"] and "p5.jpg" in err  # named, not silently dropped
    assert drift["photos_not_ordered"] == 3  # the zone-less times of that device and day
    assert drift["per_date"]["2024-09-23"]["photos"] == 5


def test_mixed_time_zones_ordered_within_their_kind():
    """Zoned times are ordered in absolute time (a photo at 14:05Z and one at 16:10+02:00 are 5 minutes apart), so
    a real GPS jump between them is still flagged, and a zone-less time never meets a zoned one."""
    from img2gps.data.cleaning import drift_dates

    en = np.array([[0.0, 0.0], [500.0, 0.0], [0.0, 0.0]])
    rep = drift_dates(["2024-09-23T14:05:00Z", "2024-09-23T16:06:00+02:00", "2024-09-23T14:06:30"],
                      ["d", "d", "d"], en, ["a", "b", "c"])
    assert rep.flagged == ["2024-09-23"]
    assert [(j["from"], j["to"]) for j in rep.per_date["2024-09-23"]["jumps"]] == [("a", "b")]
    assert rep.unordered == 1


def test_exif_offset_time_is_kept_as_a_zone():
    ex = gps_exif(*at(0, 0))
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = "2024:09:23 10:00:00"
    sub[0x9011] = "+02:00"  # OffsetTimeOriginal (EXIF 2.31)
    assert read_meta(jpeg(exif=ex)).time == "2024-09-23T10:00:00+02:00"
    sub[0x9011] = "garbage"
    assert read_meta(jpeg(exif=ex)).time == "2024-09-23T10:00:00"


# ------------------------------------------------------------------------------------- JPEG end marker

@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_missing_only_its_end_marker(tmp_path, progressive):
    """A JPEG complete but for its 2-byte end marker decodes pixel-identical to the intact file; one cut in the
    middle of its image data is still refused."""
    from synth import scene

    buf = io.BytesIO()
    scene(3, 200).save(buf, "JPEG", quality=90, progressive=progressive)
    data = buf.getvalue()
    assert data.endswith(b"\xff\xd9")
    intact = np.asarray(open_image(data))
    assert np.array_equal(np.asarray(open_image(data[:-2])), intact)
    assert np.array_equal(np.asarray(open_image(data[:-1])), intact)  # only the 0xD9 byte lost
    for cut in (len(data) // 3, len(data) // 2, len(data) - 400):
        with pytest.raises(PhotoError, match="corrupt or truncated"):
            open_image(data[:cut])
    # data build keeps it
    src = tmp_path / "src"
    src.mkdir()
    ex = gps_exif(*at(0, 0)).tobytes()
    buf = io.BytesIO()
    scene(4, 120).save(buf, "JPEG", quality=90, exif=ex, progressive=progressive)
    (src / "no-eoi.jpg").write_bytes(buf.getvalue()[:-2])
    (src / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert build(src, tmp_path / "out") == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [p["source"] for p in rep["photos"]] == ["no-eoi.jpg"]
    assert [s["file"] for s in rep["skipped"]] == ["cut.jpg"]


# ---------------------------------------------------------------------------------------------- uploads

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from _use_helpers import model_env
    from img2gps.api import Img2GPS
    from img2gps.server import UploadLimits, create_app

    gen = model_env(tmp_path_factory)
    model_dir = next(gen)
    yield create_app(model=Img2GPS.load(model_dir), limits=UploadLimits(max_bytes=3 * 2**20), warmup=False)
    gen.close()


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def _multipart(field_headers: str, payload: bytes, boundary: str = "b0undary") -> tuple[bytes, dict]:
    body = (f"--{boundary}\r\n{field_headers}\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_upload_part_without_filename(client):
    """Flutter's MultipartFile.fromBytes and Retrofit send the photo as a part without filename=: accepted as the
    photo, also when it is larger than Starlette's 1 MiB limit for plain form fields (phone photos are)."""
    from _use_helpers import place_image

    small = jpeg_arr = io.BytesIO()
    Image.fromarray(place_image(1, seed=7)).save(jpeg_arr, "JPEG", quality=92)
    small = jpeg_arr.getvalue()
    body, headers = _multipart('Content-Disposition: form-data; name="file"', small)
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["neighbours"][0]["image_id"].startswith("place1_")
    # a 2 MiB photo (noise does not compress), still under the 3 MiB limit of this server
    rng = np.random.default_rng(0)
    big = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1100, 1100, 3), dtype=np.uint8)).save(big, "JPEG", quality=95)
    assert 2**20 < len(big.getvalue()) < 3 * 2**20
    body, headers = _multipart('Content-Disposition: form-data; name="file"\r\nContent-Type: image/jpeg',
                               big.getvalue())
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    # over the limit: 413 that names the limit
    body, headers = _multipart('Content-Disposition: form-data; name="file"', small + b"\0" * (3 * 2**20))
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 413 and "3 MiB" in r.json()["detail"], r.text


def test_chunked_upload_stops_at_the_limit(app):
    """A body without Content-Length (chunked) is refused once it passes the limit, not after reading it all, and
    the answer states the limit rather than a size made up from where reading stopped. Driven at the ASGI level,
    since the test client reads a whole body before the app sees it."""
    import asyncio

    sent = 0
    chunk = b"\0" * 65536

    def stream():
        nonlocal sent
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        for _ in range(32 * 16):  # up to 32 MiB
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b0undary--\r\n"

    body = stream()
    out: list[dict] = []

    async def receive():
        try:
            return {"type": "http.request", "body": next(body), "more_body": True}
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        out.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b0undary"),
                         (b"transfer-encoding", b"chunked")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    starts = [m for m in out if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [413], out
    assert sent <= 4 * 2**20, f"read {sent / 2**20:.0f} MiB of a body over a 3 MiB limit"
    detail = json.loads(b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body"))["detail"]
    assert "3 MiB limit" in detail and "32" not in detail, detail


# ---------------------------------------------------------------------------------- Unicode file names

def test_label_names_match_after_unicode_normalisation(tmp_path, capsys):
    """The CSV names 'Café_Müller.jpg' composed (NFC); the file on disk is decomposed (NFD, as macOS and zip tools
    write it). Both photos are kept, and a row that matches no file is named."""
    src = tmp_path / "src"
    src.mkdir()
    nfc = unicodedata.normalize("NFC", "Café_Müller.jpg")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    (src / nfd).write_bytes(jpeg(1))
    (src / "plain.jpg").write_bytes(jpeg(2))
    la, lo = at(0, 0)
    (tmp_path / "labels.csv").write_text(f"image,Latitude,Longitude\n{nfc},{la},{lo}\nplain.jpg,{la},{lo + 1e-4}\n"
                                         f"missing.jpg,{la},{lo}\n", encoding="utf-8")
    assert build(src, tmp_path / "out", "--labels", tmp_path / "labels.csv") == 0
    err = capsys.readouterr().err
    kept = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert len(kept) == 2, err
    assert "missing.jpg" in err and "no photo under" in err


# ------------------------------------------------------------------------------------------- .MPO files

def test_mpo_files_in_folder_scans(tmp_path, capsys):
    """Multi-picture JPEGs (.MPO from Fujifilm/Nintendo 3D cameras) are photos in a folder scan too."""
    from img2gps.cli.use import expand_photos

    src = tmp_path / "src"
    src.mkdir()
    im = pattern(5, (64, 48))
    im.save(src / "DSCF0001.MPO", "MPO", save_all=True, append_images=[pattern(6, (64, 48))],
            exif=gps_exif(*at(0, 0)).tobytes())
    assert Image.open(src / "DSCF0001.MPO").format == "MPO"
    found, problems = expand_photos([str(src)])
    assert found == [str(src / "DSCF0001.MPO")] and problems == []
    assert build(src, tmp_path / "out") == 0
    assert len(pd.read_csv(tmp_path / "out" / "labels.csv")) == 1


# ---------------------------------------------------------------------------------------- Ctrl-C

_POOL_SCRIPT = textwrap.dedent("""
    import signal, sys
    # A process started from a shell's background job inherits SIGINT *ignored*, and Python then installs no
    # KeyboardInterrupt handler: Ctrl-C was lost and fit exited 0 whenever pytest itself ran in the background.
    # A terminal's foreground command has the default handler; give the child exactly that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    from synth import make_gallery
    from img2gps.cli import main
    make_gallery(__import__("pathlib").Path({gallery!r}), n_places=9, views=4, size=64)  # > min_pool photos
    print("ready", flush=True)
    sys.exit(main(["fit", "--data", {gallery!r}, "--method", "knn:k=1", "--out", {model!r},
                   "--workers", "2", "--engine", "pool"]))
""")


@pytest.mark.slow
def test_ctrl_c_during_worker_pool_start(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the pool's workers start: one
    line on stderr and exit code 130, no worker traceback ("Exception in initializer")."""
    script = _POOL_SCRIPT.format(tests=str(Path(__file__).parents[1]), gallery=str(tmp_path / "g"),
                                 model=str(tmp_path / "m"))
    env = dict(os.environ, IMG2GPS_CACHE=str(tmp_path / "cache"))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, start_new_session=True, text=True)
    assert p.stdout.readline().strip() == "ready"
    # Wait on the condition itself, not on a clock: both pool workers have been spawned (exec'd into
    # multiprocessing's spawn_main; the resource tracker, also a child, does not count). Parent and workers are
    # then past the point where SIGINT is blocked for the spawn, and the workers are still importing torch (they
    # take seconds), so the interrupt lands while the pool starts. The long limits only stop a hung run.
    assert _wait_for(lambda: len(_pool_workers(p.pid)) >= 2 or p.poll() is not None, 600), "no worker pool"
    assert p.poll() is None, "fit ended before its worker pool started"
    os.killpg(p.pid, signal.SIGINT)
    try:
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 130, err
    assert lines == ["interrupted"], err
    assert not (tmp_path / "m").exists()
    assert _wait_for(lambda: not _group_alive(p.pid), 120)  # and no worker is left running


def _wait_for(condition, limit_s: float) -> bool:
    """Poll `condition` until it holds (True) or `limit_s` passes (False): a safety limit, not a timing."""
    end = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _pool_workers(pid: int) -> list[int]:
    """Children of `pid` that are multiprocessing spawn workers (their command line runs spawn_main)."""
    out = []
    for c in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                out.append(c)
        except OSError:
            pass
    return out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


# ------------------------------------------------------------------------ galleries that cannot calibrate

def _dataset(root: Path, positions: list[tuple[float, float]]) -> Path:
    (root / "images").mkdir(parents=True)
    rows = ["image,Latitude,Longitude"]
    for i, (la, lo) in enumerate(positions):
        (root / "images" / f"p{i}.jpg").write_bytes(jpeg(i))
        rows.append(f"p{i}.jpg,{la:.8f},{lo:.8f}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_gallery_too_small_to_calibrate(tmp_path, capsys):
    """A 2-photo gallery used to fit silently (n_calibration 0) and promise a 25 m radius: refused, with the
    minimum needed."""
    data = _dataset(tmp_path / "d", [at(0, 0), at(40, 0)])
    assert main(["fit", "--data", str(data), "--method", "knn", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "at least 5" in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_gallery_at_one_gps_point(tmp_path, capsys):
    """Every photo shares one GPS point: fit is refused (a 10 m radius would be promised for photos anywhere),
    and `data split` gives advice whose command then works, with no library warning on screen."""
    data = _dataset(tmp_path / "d", [at(0, 0)] * 8)
    assert main(["fit", "--data", str(data), "--method", "knn:k=1", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "within 0 m" in err and "covers no area" in err, err
    for radius in ("10", "0"):
        assert main(["data", "split", str(data), "--out", str(tmp_path / f"s{radius}"), "--radius", radius]) == 2
        err = capsys.readouterr().err
        assert "Warning" not in err and err.count("\n") == 1, err
        assert "--kind random" in err, err
    assert main(["data", "split", str(data), "--out", str(tmp_path / "s"), "--kind", "random"]) == 0
    assert "Warning" not in capsys.readouterr().err


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_split_advice_radius_works(tmp_path, capsys):
    """Two places 30 m apart and a 50 m buffer: the advice names a radius, and that radius then works."""
    import re
    import shlex

    data = _dataset(tmp_path / "d", [at(0, 0)] * 5 + [at(30, 0)] * 5)
    assert main(["data", "split", str(data), "--out", str(tmp_path / "s"), "--radius", "50"]) == 2
    err = capsys.readouterr().err
    m = re.search(r"use --radius (\d+) or less", err)
    assert m, err
    assert main(["data", "split", str(data), "--out", str(tmp_path / "s2"), "--radius", m.group(1)]) == 0
    assert "Warning" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ kinds found in the hunt
# Each from public reports against photo managers, EXIF tools, upload servers and dataset loaders (named per test).

def test_appledouble_files_skipped_in_predict_folder_scans(tmp_path):
    """macOS copies to FAT/exFAT/SMB leave '._IMG_0001.jpg' AppleDouble forks beside each photo (reported to
    PhotoPrism, Immich, digiKam): `predict FOLDER` must not list them as broken photos; `data build` skips them."""
    from img2gps.cli.use import expand_photos

    (tmp_path / "IMG_0001.jpg").write_bytes(jpeg(1))
    (tmp_path / "._IMG_0001.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\0" * 200)
    (tmp_path / ".thumbnails").mkdir()
    (tmp_path / ".thumbnails" / "IMG_0001.jpg").write_bytes(jpeg(1, (16, 12)))
    found, problems = expand_photos([str(tmp_path)])
    assert found == [str(tmp_path / "IMG_0001.jpg")] and problems == []


def test_labels_csv_in_utf16(tmp_path, capsys):
    """Excel's "Unicode Text" export is UTF-16 with a byte-order mark and tabs (pandas #15086-style reports):
    read like any other labels file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "été.jpg").write_bytes(jpeg(1))
    la, lo = at(0, 0)
    (tmp_path / "labels.txt").write_text(f"image\tLatitude\tLongitude\nété.jpg\t{la}\t{lo}\n", encoding="utf-16")
    assert build(src, tmp_path / "out", "--labels", tmp_path / "labels.txt") == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "out" / "labels.csv")) == 1


def test_coordinates_written_as_degrees_minutes_seconds(tmp_path, capsys):
    """Positions pasted from map apps or exiftool's default output (39°57'05.4"N, 75°11'29.4"W) are degrees, not
    'not a number'."""
    from img2gps.data.sources import parse_number

    assert parse_number("39°57'05.4\"N") == pytest.approx(39.9515, abs=1e-6)
    assert parse_number("75°11'29.4\"W") == pytest.approx(-75.1915, abs=1e-6)
    assert parse_number("39.9515° S") == pytest.approx(-39.9515)
    assert np.isnan(parse_number("12 34")) and np.isnan(parse_number("north"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "labels.csv").write_text('image,Latitude,Longitude\na.jpg,"39°57\'05.4""N","75°11\'29.4""W"\n')
    assert build(src, tmp_path / "out", "--labels", tmp_path / "labels.csv") == 0, capsys.readouterr().err
    row = pd.read_csv(tmp_path / "out" / "labels.csv").iloc[0]
    assert row.Latitude == pytest.approx(39.9515) and row.Longitude == pytest.approx(-75.1915)


def test_google_takeout_e7_coordinates(tmp_path, capsys):
    """Google Takeout location exports give latitudeE7/longitudeE7 (degrees x 10^7) and timestampMs: read as
    degrees and as a UTC time, not refused for a missing Latitude column."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "takeout.csv").write_text("image,latitudeE7,longitudeE7,timestampMs\na.jpg,399515000,-751915000,"
                                          "1727085900000\n")
    assert build(src, tmp_path / "out", "--labels", tmp_path / "takeout.csv") == 0, capsys.readouterr().err
    row = pd.read_csv(tmp_path / "out" / "labels.csv").iloc[0]
    assert row.Latitude == pytest.approx(39.9515) and row.Longitude == pytest.approx(-75.1915)


def test_unix_epoch_times(tmp_path):
    """GPS loggers and app exports write Unix time (seconds or milliseconds): read as UTC instants."""
    from img2gps.data.cleaning import parse_time

    a, b = parse_time("1727085900"), parse_time("1727085900000")
    assert a == b and a.isoformat() == "2024-09-23T10:05:00+00:00"


def test_labels_paths_relative_to_the_dataset_root(tmp_path, capsys):
    """A labels.csv that names 'images/x.jpg' (relative to the dataset folder, as many course datasets and
    Hugging Face exports write it) names the photos in images/, not missing files."""
    from img2gps.data import load_dataset

    (tmp_path / "images").mkdir()
    rows = ["image,Latitude,Longitude"]
    for i in range(3):
        (tmp_path / "images" / f"x{i}.jpg").write_bytes(jpeg(i))
        la, lo = at(20 * i, 0)
        rows.append(f"images/x{i}.jpg,{la},{lo}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path)
    assert len(ds) == 3 and not ds.skipped
    assert ds.read(0)[:2] == b"\xff\xd8"


def test_upload_with_s3_style_binary_content_type(client):
    """S3-style clients and several SDKs label any upload binary/octet-stream (not application/octet-stream):
    a photo sent that way is still a photo."""
    from _use_helpers import place_image

    buf = io.BytesIO()
    Image.fromarray(place_image(2, seed=3)).save(buf, "JPEG")
    r = client.post("/predict", files={"file": ("p.jpg", buf.getvalue(), "binary/octet-stream")})
    assert r.status_code == 200, r.text


def test_dataset_names_differing_in_case_or_normalisation(tmp_path):
    """A labels.csv written on Windows or macOS names IMG_0001.JPG and 'Café.jpg' (composed) for files stored as
    img_0001.jpg and 'Café.jpg' (decomposed) on a case-sensitive file system: the same photos, not missing
    files (the case-insensitive file system class of bugs reported to Lightroom/Immich importers)."""
    from img2gps.data import load_dataset

    (tmp_path / "images").mkdir()
    nfd = unicodedata.normalize("NFD", "Café.jpg")
    (tmp_path / "images" / "img_0001.jpg").write_bytes(jpeg(1))
    (tmp_path / "images" / nfd).write_bytes(jpeg(2))
    (tmp_path / "images" / "x.jpg").write_bytes(jpeg(3))
    la, lo = at(0, 0)
    (tmp_path / "labels.csv").write_text(f"image,Latitude,Longitude\nIMG_0001.JPG,{la},{lo}\n"
                                         f"{unicodedata.normalize('NFC', 'Café.jpg')},{la},{lo + 1e-4}\n"
                                         f"x.jpg,{la},{lo + 2e-4}\n", encoding="utf-8")
    ds = load_dataset(tmp_path)
    assert len(ds) == 3 and not ds.skipped, ds.skipped
    assert [ds.read(i)[:2] for i in range(3)] == [b"\xff\xd8"] * 3
