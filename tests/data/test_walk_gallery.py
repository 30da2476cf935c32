"""Walk galleries (issue 33): tracks, clock offsets, video frames by distance and view change, photos placed by
time, and their bad inputs. Tiny synthetic videos and tracks made here; the bgu-west end-to-end run is slow."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from img2gps.cli import main
from img2gps.data.build import BuildConfig, build_dataset
from img2gps.data.clock import estimate_offset, iso_utc, utc_seconds
from img2gps.data.track import make_track, read_track
from img2gps.data.video import SamplingConfig
from img2gps.data.walk_gallery import TrackConfig
from img2gps.errors import DataError
from img2gps.geo import haversine_m
from synth import gps_exif, offset, scene
from walk_synth import write_gpx, write_video

T0 = datetime(2025, 12, 22, 7, 47, 0, tzinfo=timezone.utc).timestamp()


def east_walk(seconds=20.0, speed=1.5, every=1.0):
    """A straight walk east from synth.ORIGIN at `speed` m/s, a fix every `every` s: (t, lat, lon)."""
    t = T0 + np.arange(0, seconds + 1e-9, every)
    lat, lon = offset(speed * (t - T0), 0 * t)
    return t, np.asarray(lat), np.asarray(lon)


def curvy_walk(seconds=240.0):
    t = T0 + np.arange(0, seconds, 1.0)
    s = t - T0
    lat, lon = offset(40 * np.sin(s / 30), 25 * np.cos(s / 17) + 0.3 * s)
    return t, np.asarray(lat), np.asarray(lon)


# --------------------------------------------------------------------------- tracks

def test_every_track_format_reads_the_same_points(tmp_path):
    t, lat, lon = east_walk(4.0)
    write_gpx(tmp_path / "w.gpx", t, lat, lon)
    rows = "\n".join(f"{iso_utc(a)},{b:.8f},{c:.8f}" for a, b, c in zip(t, lat, lon))
    (tmp_path / "w.csv").write_text("timestamp,lat,lng\n" + rows + "\n")
    (tmp_path / "records.json").write_text(json.dumps({"locations": [
        {"latitudeE7": round(b * 1e7), "longitudeE7": round(c * 1e7), "timestampMs": str(int(a * 1000))}
        for a, b, c in zip(t, lat, lon)]}))
    (tmp_path / "timeline.json").write_text(json.dumps({"semanticSegments": [{"timelinePath": [
        {"point": f"{b:.7f}°, {c:.7f}°", "time": iso_utc(a)} for a, b, c in zip(t, lat, lon)]}]}))
    kml = "".join(f"<when>{iso_utc(a)}</when>" for a in t) + "".join(f"<gx:coord>{c} {b} 0</gx:coord>"
                                                                       for b, c in zip(lat, lon))
    (tmp_path / "w.kml").write_text('<kml xmlns="http://www.opengis.net/kml/2.2" xmlns:gx="http://www.google.com/'
                                    f'kml/ext/2.2"><Document><Placemark><gx:Track>{kml}</gx:Track></Placemark>'
                                    "</Document></kml>")
    for f in ("w.gpx", "w.csv", "records.json", "timeline.json", "w.kml"):
        tr = read_track(tmp_path / f)
        assert np.allclose(tr.t, t, atol=1e-3), f
        assert haversine_m(tr.lat, tr.lon, lat, lon).max() < 0.05, f


def test_track_interpolates_walks_and_knows_its_holes():
    t, lat, lon = east_walk(10.0)
    t = np.concatenate([t, t[-1] + [400.0, 401.0]])  # a 400 s hole, then two more fixes
    lat, lon = np.concatenate([lat, lat[-1:], lat[-1:]]), np.concatenate([lon, lon[-1:], lon[-1:]])
    tr = make_track(t[::-1], lat[::-1], lon[::-1], "x")  # order does not matter
    la, lo = tr.position(T0 + 2.5)
    want = offset(3.75, 0)
    assert haversine_m(la, lo, *want) < 0.01
    assert abs(tr.walked_m(T0 + 4.0) - 6.0) < 0.01
    assert abs(tr.travel_deg(T0 + 5.0) - 90.0) < 0.5  # east
    assert list(tr.covers([T0 - 1, T0 + 5, T0 + 200, T0 + 410.5])) == [False, True, False, True]


@pytest.mark.parametrize("content, problem", [
    ('<gpx version="1.1"><trk><trkseg><trkpt lat="31" lon="34"/><trkpt lat="31.1" lon="34"/></trkseg></trk></gpx>',
     "carry no times"),
    ("not xml at all <", "not a readable GPX"),
    ('<gpx version="1.1"><trk><trkseg><trkpt lat="31" lon="34"><time>2025-12-22T07:00:00Z</time></trkpt>'
     "</trkseg></trk></gpx>", "at least two points"),
])
def test_bad_tracks_are_one_line_errors_naming_the_file(tmp_path, content, problem):
    (tmp_path / "t.gpx").write_text(content)
    with pytest.raises(DataError) as e:
        read_track(tmp_path / "t.gpx")
    assert str(tmp_path / "t.gpx") in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="unknown track format"):
        (tmp_path / "t.fit").write_bytes(b"\0")
        read_track(tmp_path / "t.fit")


# --------------------------------------------------------------------------- clock

def test_times_become_utc_and_say_whether_they_carried_a_zone():
    assert utc_seconds("2025-12-22T09:47:00+02:00") == (T0, True)
    assert utc_seconds("2025:12:22 07:47:00") == (T0, False)  # zone-less: read as if UTC
    assert utc_seconds("1766389620") == (T0, True)
    assert utc_seconds("yesterday") == (None, False)


@pytest.mark.parametrize("true_offset", [-7237.4, 12.6])
def test_clock_offset_is_recovered_from_noisy_photo_positions(true_offset):
    t, lat, lon = curvy_walk()
    tr = make_track(t, lat, lon, "x")
    rng = np.random.default_rng(1)
    shot = np.sort(rng.uniform(t[5], t[-5], 40))
    la, lo = tr.position(shot)
    la = la + rng.normal(0, 3, 40) / 111_195
    est = estimate_offset(tr, shot - true_offset, la, lo)
    assert abs(est.offset_s - true_offset) < 1.0 and est.photos == 40
    assert estimate_offset(tr, shot[:2], la[:2], lo[:2]) is None  # too few photos to tell


# --------------------------------------------------------------------------- videos

def _walk_video(tmp_path, seconds=12.0, speed=1.5, scene_every=3.0, blur=(), fps=10) -> tuple[Path, Path]:
    """A video (one scene per scene_every seconds; scenes listed in `blur` blurred) of an east walk, and its GPX."""
    starts = np.arange(0, seconds, scene_every)
    ims = [scene(50 + i, 96) for i in range(len(starts))]
    ims = [im.filter(ImageFilter.GaussianBlur(6)) if i in blur else im for i, im in enumerate(ims)]
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    video = write_video(tmp_path / "src" / "walk.mp4", ims, starts, T0, fps=fps, end_s=seconds)
    t, lat, lon = east_walk(seconds + 2, speed)
    return video, write_gpx(tmp_path / "walk.gpx", t, lat, lon)


def _build(src, out, track=None, **kw):
    cfg = BuildConfig(track=TrackConfig(path=track, **kw))
    return build_dataset(src, out, cfg, log=lambda m: None)


def test_video_frames_come_by_distance_and_view_with_their_track_position(tmp_path):
    video, gpx = _walk_video(tmp_path)
    r = _build(tmp_path / "src", tmp_path / "out", gpx)
    lab = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert {"video", "video_time_s", "travel_deg", "time"} <= set(lab.columns)
    assert (lab["video"] == "walk.mp4").all() and lab["heading"].isna().all()
    vs = lab["video_time_s"].to_numpy()
    # 12 s at 1.5 m/s = 18 m: a frame every 2 m (about 9), plus none extra (each scene change falls on a step)
    assert 8 <= len(lab) <= 13 and np.all(np.diff(vs) > 0)
    assert np.diff(vs).max() <= 2.0 / 1.5 + 0.4 + 0.11  # at most one step (+ the sharpness window) apart
    want = offset(1.5 * vs, 0 * vs)
    assert haversine_m(lab["Latitude"], lab["Longitude"], *want).max() < 0.05
    assert np.allclose(lab["travel_deg"], 90.0, atol=1.0)
    times = [utc_seconds(x)[0] - T0 for x in lab["time"]]
    assert np.allclose(times, vs, atol=1e-3)
    assert r["track"]["videos"]["walk.mp4"]["frames"] == len(lab)
    assert r["counts"]["videos"] == 1 and ".mp4" not in r["counts"]["ignored_files"]
    for name in lab["image"]:
        assert Image.open(tmp_path / "out" / "images" / name).size == (96, 96)


def test_a_standing_camera_gives_one_frame_per_view_and_skips_blur(tmp_path):
    video, _ = _walk_video(tmp_path, seconds=12.0, scene_every=3.0, blur={2})
    t = np.array([T0 - 5, T0 + 30])
    lat, lon = offset(np.zeros(2), np.zeros(2))
    gpx = write_gpx(tmp_path / "still.gpx", t, np.asarray(lat), np.asarray(lon))  # standing still
    r = _build(video, tmp_path / "out", gpx)
    lab = pd.read_csv(tmp_path / "out" / "labels.csv")
    vs = lab["video_time_s"].to_numpy()
    # scenes at 0, 3, 6 (blurred), 9 s: one frame for each sharp scene, none from the blurred one
    assert len(vs) == 3 and not ((vs >= 6) & (vs < 9)).any(), vs
    st = r["track"]["videos"]["walk.mp4"]
    assert st["blurred"] >= 1 and st["duplicates"] >= 10
    assert lab["travel_deg"].isna().all()  # not moving: no direction of travel


@pytest.mark.parametrize("case", ["no_track", "no_overlap", "corrupt"])
def test_bad_videos_are_one_line_errors_naming_the_file(tmp_path, capsys, case):
    video, gpx = _walk_video(tmp_path, seconds=3.0)
    args = ["data", "build", str(video), str(tmp_path / "out")]
    if case == "no_overlap":
        t, lat, lon = east_walk(5.0)
        gpx = write_gpx(tmp_path / "late.gpx", t + 3600, lat, lon)
    if case == "corrupt":
        video.write_bytes(video.read_bytes()[:600])
    if case != "no_track":
        args += ["--track", str(gpx)]
    assert main(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and str(video) in err[0], err
    assert {"no_track": "needs a track", "no_overlap": "does not overlap the track",
            "corrupt": "video"}[case] in err[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- photos placed by time

def _photo(path: Path, seed: int, t_utc: float, clock_s: float, pos=None, zone=timezone(timedelta(hours=2)),
           write_zone=False):
    """A JPEG whose EXIF time is the local time of t_utc + clock_s (a camera clock that runs clock_s fast)."""
    ex = gps_exif(*(pos if pos else (None, None)),
                  when=datetime.fromtimestamp(t_utc + clock_s, zone).strftime("%Y:%m:%d %H:%M:%S"))
    if write_zone:
        ex.get_ifd(0x8769)[0x9010] = "+02:00"
    path.parent.mkdir(parents=True, exist_ok=True)
    scene(seed, 64).save(path, "JPEG", exif=ex.tobytes())


@pytest.mark.parametrize("zoned", [False, True])
def test_photos_without_gps_are_placed_by_time_with_the_estimated_offset(tmp_path, zoned):
    t, lat, lon = curvy_walk()
    gpx = write_gpx(tmp_path / "walk.gpx", t, lat, lon)
    tr = read_track(gpx)
    clock = 21.3  # the camera runs 21.3 s fast
    rng = np.random.default_rng(0)
    shots = np.sort(rng.uniform(t[3], t[-3], 24))
    for i, s in enumerate(shots):
        pos = tuple(float(x) for x in tr.position(s)) if i % 2 == 0 else None  # every other photo has GPS
        _photo(tmp_path / "src" / f"p{i:02d}.jpg", i, s, clock, pos, write_zone=zoned)
    _photo(tmp_path / "src" / "late.jpg", 99, t[-1] + 900, clock)  # outside the track
    r = _build(tmp_path / "src", tmp_path / "out", gpx)
    want = -clock - (0 if zoned else 7200)  # zone-less local times read as UTC: the zone joins the offset
    used = r["track"]["offset_used_s"]["zoned" if zoned else "zone_less"]
    assert abs(used - want) < 1.0
    lab = pd.read_csv(tmp_path / "out" / "labels.csv").set_index("image")
    placed = [f"p{i:02d}.jpg" for i in range(1, 24, 2)]
    assert r["track"]["placed_by_time"] == 12 and r["track"]["refused_outside_track"] == 1
    la, lo = tr.position(shots[1::2])
    assert haversine_m(lab.loc[placed, "Latitude"], lab.loc[placed, "Longitude"], la, lo).max() < 2.0
    assert "late.jpg" not in lab.index and any(s["file"] == "late.jpg" for s in r["skipped"])
    r2 = _build(tmp_path / "src", tmp_path / "out2", gpx, allow_outside=True, time_offset_s=want)
    assert r2["track"]["placed_by_time"] == 13 and r2["track"]["time_offset_given_s"] == want


# --------------------------------------------------------------------------- end to end on the shared data

@pytest.mark.slow
@pytest.mark.parametrize("clock", [0.0, 37.0])
def test_data_build_turns_a_bgu_west_walk_video_into_placed_frames(tmp_path, capsys, clock):
    """One bgu-west walk encoded at its real timing (camera clock `clock` s fast) with a noisy GPX from its labels:
    `img2gps data build VIDEO OUT --track GPX [--time-offset]` places the frames within 2 m (median) of the
    position interpolated from the labels at each frame's true time."""
    from conftest import SHARED_DATA
    from walk_synth import bgu_walks, noisy_track

    data = (SHARED_DATA / "bgu-west").resolve()
    if not (data / "labels.csv").exists():
        pytest.skip("../shared/data/bgu-west not present")
    walk = bgu_walks(data)[2]
    start = float(walk["t"].iloc[0]) - 1.0
    video = write_video(tmp_path / "walk.mp4", [data / "images" / n for n in walk["image"]],
                        walk["t"].to_numpy() - start, start + clock, end_s=float(walk["t"].iloc[-1]) - start + 2)
    gpx = write_gpx(tmp_path / "walk.gpx", *noisy_track(walk["t"], walk["Latitude"], walk["Longitude"]))
    args = ["data", "build", str(video), str(tmp_path / "out"), "--track", str(gpx)]
    assert main(args + (["--time-offset", str(-clock)] if clock else [])) == 0
    assert "frames from 1 video:" in capsys.readouterr().out
    lab = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert len(lab) >= 0.5 * len(walk)  # about one frame per photo shown (view changes) and per 2 m
    from img2gps.geo import LocalFrame

    fr = LocalFrame.around(walk["Latitude"], walk["Longitude"])
    en = fr.to_en(walk["Latitude"].to_numpy(), walk["Longitude"].to_numpy())
    tt = start + lab["video_time_s"].to_numpy()
    truth = fr.to_latlon(np.stack([np.interp(tt, walk["t"], en[:, 0]), np.interp(tt, walk["t"], en[:, 1])], 1))
    err = haversine_m(lab["Latitude"], lab["Longitude"], *truth)
    assert np.median(err) < 2.0, np.median(err)


@pytest.mark.slow
def test_data_build_places_penn91_photos_by_time_and_samples_their_video(tmp_path, penn91):
    """penn91's iPhone 13 walk: every other photo's EXIF (zoned time + GPS) makes the GPX; the others lose their
    GPS and are placed by time; the same photos as a video at their real timing give frames on the track."""
    from img2gps.photos import read_meta

    rows = []
    for p in sorted((penn91 / "images").glob("*.jpg")):
        m = read_meta(p.read_bytes())
        t, zoned = utc_seconds(m.time)
        if (m.device or "").split(" (")[0] == "Apple iPhone 13" and zoned and m.has_gps:  # "(software ...)" follows
            rows.append((t, p, m.latitude, m.longitude))
    rows.sort(key=lambda r: r[0])
    rows = [r for r in rows if r[0] - rows[0][0] < 3 * 3600]
    assert len(rows) >= 40
    track_rows, bare = rows[::2], rows[1::2]
    gpx = write_gpx(tmp_path / "walk.gpx", *(np.array([r[i] for r in track_rows]) for i in (0, 2, 3)))
    src = tmp_path / "src"
    src.mkdir()
    for t, p, *_ in bare:
        with Image.open(p) as im:
            ex = im.getexif()
            del ex[0x8825]  # no GPS: the photo must be placed by its time
            im.save(src / p.name, "JPEG", quality=90, exif=ex.tobytes())
    start = rows[0][0] - 1
    write_video(src / "walk.mp4", [r[1] for r in rows], np.array([r[0] for r in rows]) - start, start,
                size=(640, 480), fps=2, end_s=rows[-1][0] - start + 1)
    assert main(["data", "build", str(src), str(tmp_path / "out"), "--track", str(gpx)]) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())["track"]
    inside = [r for r in bare if track_rows[0][0] <= r[0] <= track_rows[-1][0]]
    assert rep["placed_by_time"] == len(inside) and rep["refused_outside_track"] == len(bare) - len(inside)
    assert rep["offset_estimate"]["zoned"] is None  # no photo brought both GPS and a time: nothing to estimate
    assert rep["videos"]["walk.mp4"]["frames"] >= 10
    lab = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert (lab["video"].fillna("") == "walk.mp4").sum() == rep["videos"]["walk.mp4"]["frames"]


def test_a_portrait_phone_video_comes_out_upright(tmp_path):
    """Phones store portrait video landscape with a display rotation of -90 degrees (ffmpeg turns it a quarter
    clockwise to show it): the frames must be written upright, the stripe on the stored left edge on top."""
    import av

    path = tmp_path / "portrait.mp4"
    out = av.open(str(path), "w")
    out.metadata["creation_time"] = "2025-12-22T07:47:00Z"
    s = out.add_stream("libx264", rate=5)
    s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
    s.set_display_rotation(-90)
    stored = np.full((64, 96, 3), 128, np.uint8)
    stored[:, :16] = (255, 0, 0)
    for _ in range(10):
        for p in s.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    t = np.array([T0 - 5, T0 + 10])
    lat, lon = offset(np.zeros(2), np.zeros(2))
    _build(path, tmp_path / "out", write_gpx(tmp_path / "t.gpx", t, np.asarray(lat), np.asarray(lon)))
    name = pd.read_csv(tmp_path / "out" / "labels.csv")["image"].iloc[0]
    im = np.asarray(Image.open(tmp_path / "out" / "images" / name))
    assert im.shape[:2] == (96, 64)
    assert im[:10, :, 0].mean() > 200 and im[:10, :, 1].mean() < 60 and im[-10:, :, 0].mean() < 160
