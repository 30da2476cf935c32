"""`img2gps index add` names the user's own files in every message (never its staging folder or "000/"), says
in one line that a file which is not a photo is not one, and keeps gallery names like the user's own (issue 30)."""
from __future__ import annotations

import pytest

from img2gps.cli import main
from img2gps.cli.index import read_inputs
from synth import make_gallery, offset, scene, write_jpeg


def _read(tmp_path, *paths, labels=None):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    ds, skipped = read_inputs(list(paths), labels, work)
    return ds, skipped, str(work)


def test_a_file_that_is_not_a_photo_is_named_as_such(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not a jpeg either")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    ds, skipped, _ = _read(tmp_path, notes, fake, empty)
    assert len(ds) == 0
    why = dict(skipped)
    assert why[str(notes)] == "not a photo (unknown or unsupported image format)"
    assert str(fake) in why and "no photos found" not in " ".join(why.values())
    assert why[str(empty)].startswith("folder has no photos")


def test_messages_and_names_are_the_users_own(tmp_path):
    a, b = tmp_path / "trip_a", tmp_path / "trip_b"
    write_jpeg(a / "IMG_1.jpg", scene(1, 64), *offset(0, 0))
    write_jpeg(a / "sub" / "nogps.jpg", scene(2, 64))
    write_jpeg(b / "IMG_1.jpg", scene(3, 64), *offset(30, 0))  # same name as trip_a's
    single = write_jpeg(tmp_path / "loose" / "one.jpg", scene(4, 64), *offset(60, 0))
    ds, skipped, work = _read(tmp_path, a, b, single)
    assert sorted(ds.ids) == ["one.jpg", "trip_a__IMG_1.jpg", "trip_b__IMG_1.jpg"]
    assert [w for w, _ in skipped] == [str(a / "sub" / "nogps.jpg")]
    text = " ".join(w + " " + why for w, why in skipped)
    assert work not in text and "000" not in text


def test_nothing_usable_names_each_file(tmp_path):
    a = tmp_path / "album"
    write_jpeg(a / "x.jpg", scene(1, 64))
    write_jpeg(a / "y.jpg", scene(2, 64))
    ds, skipped, work = _read(tmp_path, a)
    assert len(ds) == 0 and sorted(w for w, _ in skipped) == [str(a / "x.jpg"), str(a / "y.jpg")]
    assert all("GPS" in why and work not in why for _, why in skipped)


@pytest.mark.slow
def test_index_add_one_line_for_a_non_photo_and_a_labels_hint(tmp_path, capsys):
    g = make_gallery(tmp_path / "g", n_places=3, views=2)
    assert main(["fit", "--data", str(g), "--method", "knn", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    capsys.readouterr()
    assert main(["index", "add", "--model", str(tmp_path / "m"), str(notes), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {notes}: not a photo (unknown or unsupported image format)"]
    album = tmp_path / "album"
    write_jpeg(album / "x.jpg", scene(1, 64))
    write_jpeg(album / "y.jpg", scene(2, 64))
    assert main(["index", "add", "--model", str(tmp_path / "m"), str(album), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"skipped {album / 'x.jpg'}:" in err and "--labels CSV" in err and "/tmp" not in err.replace(str(tmp_path), "")
