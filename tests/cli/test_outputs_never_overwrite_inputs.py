"""Inputs that broke img2gps on 559cef9, one test per kind (each failed there).

Kinds: an output path that is one of the command's inputs; a disk that fills during `data build`; an album folder
that is a symbolic link. Everything is made in code (tiny synthetic photos); no test here fits a real encoder.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from img2gps.cli import main
from synth import make_gallery, offset, scene, write_jpeg


def _one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture
def mean_model(tmp_path_factory):
    """(dataset, model dir): a mean-coordinate model (no encoder, fits in milliseconds)."""
    root = tmp_path_factory.mktemp("m30")
    ds = make_gallery(root / "ds", n_places=6, views=3, size=64, exif=True)
    assert main(["fit", "--data", str(ds), "--method", "mean-coordinate", "--out", str(root / "model")]) == 0
    return ds, root / "model"


# ------------------------------------------------------------------ an output path that is one of the inputs

def test_outputs_never_overwrite_inputs(mean_model, tmp_path, capsys):
    """predict --map, eval --json, export --onnx, bench --json, analyze --json: an output that is an input (same
    path, or a hard link to it) is refused in one line, even with --overwrite; the input is unchanged."""
    ds, model = mean_model
    photo = ds / "images" / "place00_view0.jpg"
    labels = ds / "labels.csv"
    before = {p: p.read_bytes() for p in (photo, labels, model / "model.json")}
    capsys.readouterr()
    cases = [
        ["predict", str(photo), "--model", str(model), "--map", str(photo)],
        ["eval", "--model", str(model), "--data", str(ds), "--json", str(labels)],
        ["bench", "--data", str(ds), "--methods", "mean-coordinate", "--protocol", "kfold:2", "--json", str(labels)],
        ["export", "--model", str(model), "--onnx", str(model / "model.json")],
        ["analyze", "coverage", "--data", str(ds), "--out", str(tmp_path / "cov"), "--error", "none",
         "--json", str(labels)],
    ]
    os.link(photo, tmp_path / "hard.html")  # the same file under another name
    cases.append(["predict", str(photo), "--model", str(model), "--map", str(tmp_path / "hard.html")])
    for argv in cases:
        assert main(argv + ["--overwrite"]) == 2, argv
        _one_line_error(capsys, "input")
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "cov").exists()
    # a model folder may not replace (or hold) its own dataset
    assert main(["fit", "--data", str(ds / "images" / ".."), "--method", "mean-coordinate", "--out", str(ds),
                 "--overwrite"]) == 2
    _one_line_error(capsys, "input")
    assert labels.read_bytes() == before[labels]


def test_outputs_replace_only_their_own_kind(mean_model, tmp_path, capsys):
    """An existing file that is not the command's own kind of output is replaced only with --overwrite; its own
    earlier output is replaced as before. Checked before any work, and for the files written beside --json."""
    ds, model = mean_model
    photo = ds / "images" / "place01_view0.jpg"
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    assert main(["predict", str(photo), "--model", str(model), "--map", str(notes)]) == 2
    _one_line_error(capsys, "notes.html", "not an img2gps HTML map", "--overwrite")
    assert notes.read_text() == "<p>my notes</p>"
    assert main(["predict", str(photo), "--model", str(model), "--map", str(notes), "--overwrite"]) == 0
    assert main(["predict", str(photo), "--model", str(model), "--map", str(notes)]) == 0  # now its own kind
    assert '<meta name="generator" content="img2gps">' in notes.read_text()
    capsys.readouterr()

    copy = tmp_path / "copy.jpg"  # export --onnx PHOTO.jpg: a photo is no ONNX model
    copy.write_bytes(photo.read_bytes())
    assert main(["export", "--model", str(model), "--onnx", str(copy)]) == 2
    _one_line_error(capsys, "copy.jpg", "not an ONNX model")
    assert copy.read_bytes() == photo.read_bytes()

    out = tmp_path / "b.json"
    (tmp_path / "b.predictions.csv").write_text("a,b\n1,2\n")  # a user's CSV where bench puts its predictions
    argv = ["bench", "--data", str(ds), "--methods", "mean-coordinate", "--protocol", "kfold:2", "--json", str(out),
            "--no-plots"]
    assert main(argv) == 2
    _one_line_error(capsys, "b.predictions.csv", "--overwrite")
    assert not out.exists() and (tmp_path / "b.predictions.csv").read_text() == "a,b\n1,2\n"
    assert main(argv + ["--overwrite"]) == 0
    assert main(argv) == 0  # its own JSON and CSV are replaced without asking
    assert "results" in json.loads(out.read_text())
    capsys.readouterr()

    other = tmp_path / "other.json"
    other.write_text('{"name": "not a result"}')
    assert main(["eval", "--model", str(model), "--data", str(ds), "--json", str(other)]) == 2
    _one_line_error(capsys, "not an img2gps results JSON")
    assert json.loads(other.read_text()) == {"name": "not a result"}


# ------------------------------------------------------------------------------- a disk that fills up

def _photos(src: Path, n: int) -> Path:
    for i in range(n):
        write_jpeg(src / f"p{i:02d}.jpg", scene(i, 64), *offset(10 * i, 0))
    return src


def _no_temp_left(parent: Path, name: str) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("where", ["photo", "labels"])
def test_disk_full_during_data_build(tmp_path, capsys, monkeypatch, where):
    """ENOSPC while writing the 6th photo (or labels.csv): exit 2, one line naming OUT, nothing at OUT, no temp
    folder left; an earlier complete build at OUT survives a failed --overwrite."""
    src = _photos(tmp_path / "src", 12)
    out = tmp_path / "ds"
    real_save, real_csv = Image.Image.save, pd.DataFrame.to_csv
    calls = {"n": 0}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save(self, fp, *a, **k):
        calls["n"] += 1
        if calls["n"] > 5 and str(fp).endswith(".jpg") and "images" in str(fp):
            full()
        return real_save(self, fp, *a, **k)

    def to_csv(self, path=None, *a, **k):
        if path is not None and str(path).endswith("labels.csv"):
            full()
        return real_csv(self, path, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", save) if where == "photo" else m.setattr(pd.DataFrame, "to_csv", to_csv)
        assert main(["data", "build", str(src), str(out)]) == 2
    err = _one_line_error(capsys, str(out), "No space left on device")
    assert "skipped" not in err
    assert not out.exists() and _no_temp_left(tmp_path, "ds")

    assert main(["data", "build", str(src), str(out)]) == 0  # a complete build ...
    good = (out / "labels.csv").read_text()
    assert len(pd.read_csv(out / "labels.csv")) == 12
    calls["n"] = 0
    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", save) if where == "photo" else m.setattr(pd.DataFrame, "to_csv", to_csv)
        assert main(["data", "build", str(src), str(out), "--overwrite"]) == 2
    _one_line_error(capsys, str(out))
    assert (out / "labels.csv").read_text() == good and len(list((out / "images").iterdir())) == 12
    assert _no_temp_left(tmp_path, "ds")


# ------------------------------------------------------------------------ an album folder that is a link

def _linked_albums(tmp_path: Path) -> Path:
    """top/ holds a real photo, `album` -> a folder elsewhere (2 photos), `again` -> the same folder, and inside
    the album a link back up to it (a loop)."""
    real = _photos(tmp_path / "elsewhere" / "album", 2)
    top = tmp_path / "top"
    write_jpeg(top / "own.jpg", scene(50, 64), *offset(0, 30))
    (top / "album").symlink_to(real, target_is_directory=True)
    (top / "again").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(real, target_is_directory=True)
    return top


def test_linked_album_folders_are_followed(tmp_path, capsys):
    """data build, predict FOLDER and index add read the photos of a linked album folder once each, and say in
    one line which links they did not follow (a loop, a second link to the same folder)."""
    from img2gps.cli.index import read_inputs
    from img2gps.cli.use import expand_photos

    top = _linked_albums(tmp_path)
    assert main(["data", "build", str(top), str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "ds" / "labels.csv")) == 3, err
    assert "link loop" in err and "already read" in err

    found, problems = expand_photos([str(top)])
    assert sorted(Path(f).name for f in found) == ["own.jpg", "p00.jpg", "p01.jpg"]
    whys = " ".join(why for _, why in problems)
    assert "link loop" in whys and "already read" in whys

    work = tmp_path / "work"
    work.mkdir()
    ds, skipped = read_inputs([top], None, work)
    assert len(ds) == 3
    assert any("link loop" in why for _, why in skipped)


# ----------------------------------------------------------------- two phones of one model in one folder

def apple_makernote(uptime_s: float) -> bytes:
    """An iPhone's MakerNote with only its RunTime entry (tag 3: a binary plist, seconds since boot)."""
    import plistlib
    import struct

    run = plistlib.dumps({"flags": 1, "value": int(uptime_s * 1e9), "timescale": 1_000_000_000, "epoch": 0},
                         fmt=plistlib.FMT_BINARY)
    head = b"Apple iOS\0" + b"\x00\x01MM" + struct.pack(">H", 1)
    off = len(head) + 12 + 4
    return head + struct.pack(">HHII", 3, 7, len(run), off) + b"\0" * 4 + run


def _phone_walk(src: Path, tag: str, east_m: float, start_s: int, software: str, serial: str | None = None,
                boot_s: float | None = None):
    """Six photos, one a minute, from one phone standing around a spot `east_m` east of the origin; boot_s: the
    phone booted that many seconds before 2024:09:23 10:00:00 (its MakerNote RunTime), None: no MakerNote."""
    for k in range(6):
        s = start_s + 60 * k
        ex_kw = dict(make="Apple", model="iPhone 13", when=f"2024:09:23 10:{s // 60:02d}:{s % 60:02d}")
        path = src / f"{tag}{k}.jpg"
        write_jpeg(path, scene(ord(tag[0]) * 10 + k, 64), *offset(east_m + 2 * k, 0), **ex_kw)
        im = Image.open(path)
        ex = im.getexif()
        ex[0x0131] = software
        if serial:
            ex.get_ifd(0x8769)[0xA431] = serial
        if boot_s is not None:
            ex.get_ifd(0x8769)[0x927C] = apple_makernote(boot_s + s)
        im.save(path, "JPEG", exif=ex.tobytes())


@pytest.mark.parametrize("a_b", [("17.6.1", "17.5"), ("17.6.1#SER-A", "17.6.1#SER-B")])
def test_two_phones_of_one_model_are_two_devices(tmp_path, capsys, a_b):
    """Two iPhone 13s photographing at once 400 m apart (interleaved in time): told apart by their software
    version or serial number, so --drop-drift-dates drops nothing; one phone that jumps 400 m is still flagged."""
    src = tmp_path / "src"
    (sa, _, ser_a), (sb, _, ser_b) = (x.partition("#") for x in a_b)
    _phone_walk(src, "a", 0, 0, sa, ser_a or None)
    _phone_walk(src, "b", 400, 30, sb, ser_b or None)
    assert main(["data", "build", str(src), str(tmp_path / "ds"), "--drop-drift-dates"]) == 0
    lab = pd.read_csv(tmp_path / "ds" / "labels.csv")
    assert len(lab) == 12, capsys.readouterr().err
    devices = set(lab["device"])
    assert len(devices) == 2 and all(d.startswith("Apple iPhone 13 (") for d in devices), devices
    assert not any(ser_a and ser_a in d for d in devices)  # a serial is written only as a hash

    one = tmp_path / "one"  # the same photos from one phone: its GPS jumps 400 m every 30 s
    _phone_walk(one, "a", 0, 0, "17.6.1")
    _phone_walk(one, "b", 400, 30, "17.6.1")
    assert main(["data", "build", str(one), str(tmp_path / "ds1"), "--drop-drift-dates"]) == 2
    assert "dropped all" in capsys.readouterr().err


def test_two_phones_of_one_model_and_software_are_told_apart_by_their_clocks(tmp_path, capsys):
    """Two iPhone 13s on one iOS version, no serial in their EXIF, photographing at once 400 m apart: their
    MakerNote uptimes say one booted days before the other (capture time minus uptime differs), so they are two
    cameras and --drop-drift-dates drops nothing. The same photos with one phone's clock (one boot) still jump
    400 m every 30 s: flagged, as without uptimes."""
    from img2gps.exif import apple_uptime_s

    assert apple_uptime_s(apple_makernote(674181.5)) == pytest.approx(674181.5)
    assert apple_uptime_s(b"Nikon\0\x02") is None and apple_uptime_s(None) is None
    src = tmp_path / "src"
    _phone_walk(src, "a", 0, 0, "17.6.1", boot_s=3 * 86400.0)
    _phone_walk(src, "b", 400, 30, "17.6.1", boot_s=86400.0 + 3600)
    assert main(["data", "build", str(src), str(tmp_path / "ds"), "--drop-drift-dates"]) == 0
    assert len(pd.read_csv(tmp_path / "ds" / "labels.csv")) == 12, capsys.readouterr().err

    one = tmp_path / "one"
    _phone_walk(one, "a", 0, 0, "17.6.1", boot_s=3 * 86400.0)
    _phone_walk(one, "b", 400, 30, "17.6.1", boot_s=3 * 86400.0)
    assert main(["data", "build", str(one), str(tmp_path / "ds1"), "--drop-drift-dates"]) == 2
    assert "dropped all" in capsys.readouterr().err
