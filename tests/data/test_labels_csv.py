"""`data build --labels`: rows that contradict the photos' own EXIF GPS (swapped latitude/longitude above all)
are named one by one; a CSV whose rows are mostly swapped is refused; implausible positions are flagged."""
from __future__ import annotations

import json

import pandas as pd

from img2gps.cli import main
from img2gps.data.labels_csv import LabelRow, check_labels
from synth import offset, scene, write_jpeg


def _photos(src, n, exif=True):
    pos = [offset(15.0 * i, 7.0 * i) for i in range(n)]
    for i, (la, lo) in enumerate(pos):
        write_jpeg(src / f"p{i}.jpg", scene(300 + i, 64), *((la, lo) if exif else (None, None)))
    return pos


def _csv(path, rows):
    path.write_text("image,Latitude,Longitude\n" + "".join(f"{n},{a:.7f},{b:.7f}\n" for n, a, b in rows))
    return path


def test_all_rows_swapped_is_refused_naming_rows(tmp_path, capsys):
    pos = _photos(tmp_path / "src", 5)
    csv = _csv(tmp_path / "l.csv", [(f"p{i}.jpg", lo, la) for i, (la, lo) in enumerate(pos)])
    assert main(["data", "build", str(tmp_path / "src"), str(tmp_path / "out"), "--labels", str(csv)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and "5 of 5 rows" in last and "swapped" in last and "p0.jpg" in last
    for i in range(5):
        assert f"warning: p{i}.jpg: --labels position" in err
    assert not (tmp_path / "out").exists()


def test_one_swapped_row_is_named_and_the_rest_kept(tmp_path, capsys):
    pos = _photos(tmp_path / "src", 5)
    rows = [(f"p{i}.jpg", la, lo) for i, (la, lo) in enumerate(pos)]
    rows[2] = ("p2.jpg", pos[2][1], pos[2][0])
    csv = _csv(tmp_path / "l.csv", rows)
    out = tmp_path / "out"
    assert main(["data", "build", str(tmp_path / "src"), str(out), "--labels", str(csv)]) == 0
    err = capsys.readouterr().err
    flagged = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(flagged) == 1 and "p2.jpg" in flagged[0] and "swapped" in flagged[0]
    checks = json.loads((out / "report.json").read_text())["labels"]["checks"]
    assert [r["image"] for r in checks["swapped"]] == ["p2.jpg"] and checks["checked"] == 5
    assert len(pd.read_csv(out / "labels.csv")) == 5


def test_rows_without_exif_are_checked_against_the_set():
    la, lo = offset(0, 0)
    rows = [LabelRow(f"p{i}.jpg", la + 1e-4 * i, lo, (la + 1e-4 * i, lo)) for i in range(4)]
    rows.append(LabelRow("noexif_swapped.jpg", lo, la, None))
    rows.append(LabelRow("noexif_far.jpg", -33.86, 151.21, None))  # another continent
    rows.append(LabelRow("noexif_ok.jpg", la + 2e-4, lo - 1e-4, None))
    rows.append(LabelRow("exif_far.jpg", la + 0.05, lo, (la, lo)))  # 5.6 km from its own EXIF
    f = check_labels(rows)
    assert [r["image"] for r in f.swapped] == ["noexif_swapped.jpg"]
    assert [r["image"] for r in f.far_from_set] == ["noexif_far.jpg"]
    assert [r["image"] for r in f.contradicts_exif] == ["exif_far.jpg"]
    assert abs(f.contradicts_exif[0]["distance_m"] - 5560) < 30
    assert len(f.warnings()) == 3


def test_a_row_far_from_every_other_is_named_with_its_distance():
    la, lo = offset(0, 0)
    near = [LabelRow(f"p{i}.jpg", la + 1e-4 * i, lo, None) for i in range(5)]
    typo = LabelRow("typo.jpg", la + 0.1, lo, None)  # 11 km off: a mistyped digit, far below the swap scale
    city = LabelRow("city.jpg", la, lo + 0.3, (la, lo + 0.3))  # its own GPS agrees: a photo from another town
    f = check_labels(near + [typo, city])
    assert [r["image"] for r in f.far_from_set] == ["typo.jpg", "city.jpg"]
    assert abs(f.far_from_set[0]["distance_m"] - 0.1 * 111_195 + 4e-4 * 111_195) < 50  # to the nearest, p4
    line = f.warnings()[0]
    assert line.startswith("typo.jpg: --labels position") and "11.08 km from the nearest other photo" in line
    # a second place with several photos is an area of the gallery, not a mistake; photos no row labels count too
    campus = [LabelRow(f"b{i}.jpg", -33.86 + 1e-4 * i, 151.21, None) for i in range(3)]
    assert check_labels(near + campus).far_from_set == []
    lone = [LabelRow("lone.jpg", la + 0.1, lo, None)]
    assert check_labels(lone, others=[(la, lo), (la + 1e-4, lo)]).far_from_set[0]["image"] == "lone.jpg"
    assert check_labels(lone, others=[(la, lo)]).far_from_set == []  # every photo alone: nothing to be far from


def test_build_warns_about_a_far_row_and_keeps_it(tmp_path, capsys):
    pos = _photos(tmp_path / "src", 5, exif=False)
    rows = [(f"p{i}.jpg", la, lo) for i, (la, lo) in enumerate(pos)]
    rows[3] = ("p3.jpg", pos[3][0] + 0.1, pos[3][1])  # a typo'd latitude digit
    csv = _csv(tmp_path / "l.csv", rows)
    out = tmp_path / "out"
    assert main(["data", "build", str(tmp_path / "src"), str(out), "--labels", str(csv)]) == 0
    flagged = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(flagged) == 1 and "p3.jpg" in flagged[0] and " km from the nearest other photo" in flagged[0]
    assert len(pd.read_csv(out / "labels.csv")) == 5  # kept, not dropped silently
    assert [r["image"] for r in json.loads((out / "report.json").read_text())["labels"]["checks"]["far_from_set"]] \
        == ["p3.jpg"]
