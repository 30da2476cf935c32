"""`img2gps data check` (issue 22): evidence -> verdicts on hand-made evidence, file-name times, the corrected
dataset, and the command end to end on a small synthetic gallery with one label moved."""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from img2gps.capture_time import time_from_name
from img2gps.labelcheck.evidence import OVERLAP, SAME_SPOT, TIME, Evidence, Link, time_links
from img2gps.labelcheck.judge import DOUBTFUL, OK, WRONG, JudgeConfig, judge, session_shifts


def _evidence(n, edges, times=None, devices=None, herr=None):
    links = [[] for _ in range(n)]
    for a, b, kind in edges:
        par = 0.5 if kind == SAME_SPOT else 5.0
        links[a].append(Link(b, kind, 40, par))
        links[b].append(Link(a, kind, 40, par))
    return Evidence(links, [[] for _ in range(n)], times or [None] * n, ["none"] * n, devices or ["d"] * n,
                    np.full(n, np.nan) if herr is None else np.asarray(herr, float))


def test_a_moved_photo_among_agreeing_siblings_is_wrong_and_gets_their_position():
    en = np.array([[0, 0], [2, 1], [-1, 2], [1, -2], [90.0, 40.0]])  # photo 4 belongs at the origin
    edges = [(a, b, SAME_SPOT) for a in range(5) for b in range(a + 1, 5)]
    v, shifts, tol = judge(en, _evidence(5, edges))
    assert [x.verdict for x in v] == [OK] * 4 + [WRONG]
    assert np.linalg.norm(v[4].proposed_en - en[:4].mean(0)) < 1.0
    assert v[4].score < 0.3 and all(x.score > 0.8 for x in v[:4])
    assert "place it" in v[4].reason and not shifts


def test_two_photos_that_only_contradict_each_other_are_doubtful_not_wrong():
    en = np.array([[0, 0], [80.0, 0]])
    v, _, _ = judge(en, _evidence(2, [(0, 1, SAME_SPOT)]))
    assert [x.verdict for x in v] == [DOUBTFUL, DOUBTFUL]


def test_no_evidence_is_unchecked_and_a_poor_phone_accuracy_is_doubtful():
    en = np.array([[0, 0], [500.0, 0]])
    v, _, _ = judge(en, _evidence(2, [], herr=[np.nan, 60.0]))
    assert v[0].verdict == OK and v[0].score is None and "not checked" in v[0].reason
    assert v[1].verdict == DOUBTFUL and "60 m" in v[1].reason


def test_an_overlapping_view_tolerates_a_distant_camera_that_a_same_spot_view_does_not():
    en = np.array([[0, 0], [1, 0], [0, 1], [50.0, 0]])
    base = [(0, 1, SAME_SPOT), (0, 2, SAME_SPOT), (1, 2, SAME_SPOT)]
    v_over, _, _ = judge(en, _evidence(4, base + [(3, a, OVERLAP) for a in range(3)]))
    v_same, _, _ = judge(en, _evidence(4, base + [(3, a, SAME_SPOT) for a in range(3)]))
    assert v_over[3].verdict == OK and v_same[3].verdict == WRONG


def test_capture_time_neighbours_bound_the_distance_by_walking_speed():
    t0 = datetime(2025, 1, 1, 10, 0, 0)
    times = [t0, t0.replace(second=5), t0.replace(second=9), t0.replace(second=12)]
    ev = _evidence(4, [], times=times)
    ev.links = time_links(times, ["d"] * 4, 300)
    assert sorted(l.j for l in ev.links[1]) == [0, 2] and all(l.kind == TIME for l in ev.links[1])
    en = np.array([[0, 0], [3, 0], [120.0, 0], [6, 0]])  # photo 2 jumped 120 m in 4 s and back
    v, _, _ = judge(en, ev)
    assert v[2].verdict == WRONG and [x.verdict for x in (v[0], v[1], v[3])] == [OK] * 3


def test_a_shifted_capture_session_is_found_and_undone():
    rng = np.random.default_rng(0)
    k = 9  # session_min_links: 8
    true = rng.uniform(0, 100, (k, 2))
    # photos i and i+k stand at one spot; session "a" (0..k-1 and the last two) is the larger, so it is the reference
    en = np.r_[true, true + rng.normal(0, 2, true.shape), [[50.0, 50.0], [60.0, 50.0]]]
    n = len(en)
    devices = ["a"] * k + ["b"] * k + ["a"] * 2
    times = [datetime(2025, 1, 1, 10, i) for i in range(n)]
    edges = [(i, i + k, SAME_SPOT) for i in range(k)]
    cfg = JudgeConfig()
    assert session_shifts(en, _evidence(n, edges, times, devices), cfg) == []
    shifted = en.copy()
    shifted[k:2 * k] += [30.0, -28.0]
    found = session_shifts(shifted, _evidence(n, edges, times, devices), cfg)
    assert len(found) == 1 and found[0].photos == list(range(k, 2 * k))
    v, _, _ = judge(shifted, _evidence(n, edges, times, devices), cfg)
    assert [x.verdict for x in v[k:2 * k]] == [WRONG] * k and [x.verdict for x in v[:k]] == [OK] * k
    assert np.linalg.norm(v[k].proposed_en - en[k]) < 8
    # too few cross-session links (a 25-photo session with 6 views on bgu-west): no session shift claimed
    few = [(i, i + k, SAME_SPOT) for i in range(6)]
    assert session_shifts(shifted, _evidence(n, few, times, devices), cfg) == []


def test_time_from_phone_file_names():
    assert time_from_name("20251222_094711.jpg") == datetime(2025, 12, 22, 9, 47, 11)
    assert time_from_name("IMG20251224101500.jpg") == datetime(2025, 12, 24, 10, 15, 0)
    assert time_from_name("PXL_20240101_120000123.jpg") is None or time_from_name("PXL_20240101_120000123.jpg")
    assert time_from_name("IMG_20240923_153000.jpg") == datetime(2024, 9, 23, 15, 30, 0)
    assert time_from_name("whuang06__img2gps__img_00093.jpg") is None
    assert time_from_name("20251399_250000.jpg") is None  # not a date


def _gallery_with_one_moved_label(root):
    from synth import make_gallery

    make_gallery(root, n_places=3, views=4, size=256)
    t = pd.read_csv(root / "labels.csv")
    moved = "place01_view2.jpg"
    k = t.index[t["image"] == moved][0]
    t.loc[k, "Latitude"] += 100 / 111_195.0  # 100 m north
    t.to_csv(root / "labels.csv", index=False)
    return moved


@pytest.mark.slow
def test_data_check_and_apply_end_to_end(tmp_path):
    from img2gps.cli import main

    ds_dir = tmp_path / "ds"
    moved = _gallery_with_one_moved_label(ds_dir)
    before = (ds_dir / "labels.csv").read_bytes()
    out = tmp_path / "report"
    assert main(["data", "check", str(ds_dir), "--out", str(out), "--no-tiles"]) == 0
    rep = json.loads((out / "label_check.json").read_text())
    verdict = {r["image"]: r for r in rep["photos_checked"]}
    assert verdict[moved]["verdict"] == "wrong"
    assert sum(r["verdict"] == "wrong" for r in rep["photos_checked"]) == 1
    assert moved in (out / "report.md").read_text() and moved in (out / "map.html").read_text()
    assert "showLabelChecks" in (out / "map.html").read_text()
    # a second run refuses to replace the report without --overwrite
    assert main(["data", "check", str(ds_dir), "--out", str(out), "--no-tiles"]) != 0

    fixed = tmp_path / "fixed"
    assert main(["data", "check", str(ds_dir), "--apply", "--out", str(fixed), "--no-tiles"]) == 0
    assert (ds_dir / "labels.csv").read_bytes() == before  # the input is never modified
    t = pd.read_csv(fixed / "labels.csv")
    row = t[t["image"] == moved].iloc[0]
    assert row["label_check"] == "corrected" and isinstance(row["label_reason"], str)
    orig = pd.read_csv(ds_dir / "labels.csv").set_index("image")
    assert abs(row["original_latitude"] - orig.loc[moved, "Latitude"]) < 1e-9
    assert (row["Latitude"] - orig.loc[moved, "Latitude"]) * 111_195 < -80  # moved back south
    assert (t["label_check"] != "corrected").sum() == len(t) - 1
    assert len(list((fixed / "images").iterdir())) == len(t)
    assert (fixed / "label_check" / "report.md").is_file()
    # the applied copy is a dataset the other commands read
    from img2gps.data.sources import from_folder

    assert len(from_folder(fixed)) == len(t)


def test_data_check_refuses_a_missing_dataset(tmp_path, capsys):
    from img2gps.cli import main

    assert main(["data", "check", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_gps_accuracy_is_read_from_exif(tmp_path):
    from fractions import Fraction

    from synth import scene, write_jpeg

    from img2gps.photos import read_meta

    p = write_jpeg(tmp_path / "a.jpg", scene(1), raw_gps={1: "N", 2: (Fraction(40), Fraction(0), Fraction(0)),
                                                           3: "W", 4: (Fraction(75), Fraction(0), Fraction(0)),
                                                           31: Fraction(283, 20)})
    assert read_meta(p).h_error_m == pytest.approx(14.15)
    assert read_meta(write_jpeg(tmp_path / "b.jpg", scene(1), 40.0, -75.0)).h_error_m is None


@pytest.mark.slow
def test_data_build_check_labels_writes_the_check_into_the_dataset(tmp_path):
    from synth import make_gallery

    from img2gps.cli import main

    src = make_gallery(tmp_path / "photos", n_places=2, views=3, size=256, exif=True)
    (src / "labels.csv").unlink()  # positions from EXIF, as from a phone
    out = tmp_path / "ds"
    assert main(["data", "build", str(src), str(out), "--check-labels"]) == 0
    rep = json.loads((out / "label_check" / "label_check.json").read_text())
    assert rep["photos"] == 6 and rep["wrong"] == 0
    assert (out / "label_check" / "map.html").is_file() and (out / "labels.csv").is_file()


def test_a_pose_fix_turns_overlapping_views_into_a_position():
    """Three overlapping views say only "within 40 m + tolerance" each; the camera they triangulate (a pose fix)
    places the photo to a few metres, so a 45 m move is found and the proposal is the fix (issue 32)."""
    from img2gps.labelcheck.evidence import PoseFixEvidence

    en = np.array([[0, 0], [30, 5], [-25, 10], [5, 30], [45.0, 10.0]])  # photo 4 belongs near (2, 8)
    base = [(a, b, SAME_SPOT) for a in range(4) for b in range(a + 1, 4)]
    edges = base + [(4, a, OVERLAP) for a in (1, 2, 3)]
    ev = _evidence(5, edges)
    v0, _, _ = judge(en, ev)
    assert v0[4].verdict == OK  # the overlap tolerance covers 45 m
    ev.fixes = [None] * 4 + [PoseFixEvidence(np.array([2.0, 8.0]), 2.0, [1, 2, 3])]
    v1, _, _ = judge(en, ev)
    assert v1[4].verdict == WRONG and np.linalg.norm(v1[4].proposed_en - [2, 8]) < 1e-6
    assert [x.verdict for x in v1[:4]] == [OK] * 4 and "pose fix" in v1[4].reason
    ev.fixes[4] = PoseFixEvidence(np.array([44.0, 12.0]), 2.0, [1, 2, 3])  # a fix that agrees with the label
    assert judge(en, ev)[0][4].verdict == OK


def test_an_overlapping_view_with_a_ray_must_have_the_label_near_the_ray():
    """An overlapping view of a photo of known heading gives a direction (relative pose): a label 45 m off to the
    side disagrees, though it is within the plain overlap tolerance; one along the ray agrees."""
    from img2gps.labelcheck.judge import agrees

    en = np.array([[0.0, 0.0], [0.0, 45.0], [40.0, 3.0]])
    cfg = JudgeConfig()
    herr = np.full(3, np.nan)
    east = (1.0, 0.0)
    assert agrees(1, Link(0, OVERLAP, 40, 5.0), en, 12.0, herr, cfg)  # no ray: within 12 + 40 m
    assert not agrees(1, Link(0, OVERLAP, 40, 5.0, ray_en=east), en, 12.0, herr, cfg)
    assert agrees(2, Link(0, OVERLAP, 40, 5.0, ray_en=east), en, 12.0, herr, cfg)
    assert not agrees(2, Link(0, OVERLAP, 40, 5.0, ray_en=(-1.0, 0.0)), en, 12.0, herr, cfg)  # behind camera 0


def test_a_capture_time_neighbour_far_out_of_walking_reach_weighs_fully():
    """Photo 1 sits 150 m from the photos taken 27 s before and 45 s after it (walking reach 12 + 2 x dt m): no
    near miss. Out-of-reach neighbours then weigh up to 1 each, so the label is wrong and the proposal lies between
    its neighbours; a photo 60 m from a neighbour 45 s away (within reach) is left alone."""
    t0 = datetime(2024, 9, 23, 10, 0, 0)
    times = [t0, t0.replace(second=27), t0.replace(minute=1, second=12), t0.replace(minute=1, second=20),
             t0.replace(minute=1, second=25)]
    en = np.array([[0.0, 0.0], [150.0, 0.0], [10.0, 5.0], [12.0, 4.0], [14.0, 9.0]])
    ev = _evidence(5, [(2, 3, SAME_SPOT), (3, 4, SAME_SPOT), (2, 4, SAME_SPOT)], times=times)
    tl = time_links(times, ["d"] * 5, 300)
    for i in range(5):
        ev.links[i] += tl[i]
    v, _, _ = judge(en, ev)
    assert v[1].verdict == WRONG and np.linalg.norm(v[1].proposed_en - [5.0, 2.5]) < 6
    assert [x.verdict for x in (v[0], v[2], v[3], v[4])] == [OK] * 4
    en2 = en.copy()
    en2[1] = [60.0, 0.0]
    assert judge(en2, ev)[0][1].verdict == OK
