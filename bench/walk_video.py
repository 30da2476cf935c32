"""Issue 33: a gallery from walk videos and a GPS track, measured on bgu-west (whose file names are capture times).

    python bench/walk_video.py [--data ../shared/data/bgu-west] [--parts placement,gallery,speed] [--out-prefix
        bench/results/i33-walk] [--work DIR]

placement: bgu-west's walks (photos <= 120 s apart, >= 20 photos) are cut into held-out photos (every 5th) and
video photos. Each walk's video photos are encoded in time order into an MP4 at their real timing (10 fps, x264
crf 16); its recording time is the true start plus a known camera clock error (+37 s, as a phone's clock off by
37 s would write it). One GPX holds every walk, written from the video photos' labels with 30% of the points
removed and 1 m of Gaussian noise per axis. A third of the video photos are also written as JPEGs with a zoned
EXIF time (the same clock error) and every other one of those with its label as EXIF GPS. `data build` of the
videos + photos with --track then estimates the clock offset from the photos with GPS (target: within 2 s of
-37 s), places the others by time, and samples the videos; each frame's position is compared with the position
interpolated from the original labels at the frame's true time (target: median <= 2 m).
gallery: rerank fitted on the frames only vs on the same walks' original video photos, each locating the same
held-out photos (target: frames' mean error <= 1.1 x photos').
speed: a 5-minute 1080p 30 fps H.264 video (a walk's photos upscaled, panned and given sensor noise so every frame
differs) sampled by `data build` (target: <= 2 x its duration, i.e. 600 s), beside a bare decode of the same file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
from img2gps.provenance import code_revision  # noqa: E402
from walk_synth import bgu_walks, noisy_track, write_gpx, write_video  # noqa: E402

CLOCK_S = 37.0  # the camera clock runs this much fast: the build should estimate an offset of -37 s
ZONE = timezone(timedelta(hours=2))


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_walks(data: Path, work: Path, seed: int = 0) -> dict:
    """Videos, photos and the GPX under work/src and work/walk.gpx; returns what the measurements need."""
    from PIL import Image

    from synth import gps_exif

    src = work / "src"
    (src / "photos").mkdir(parents=True)
    walks = bgu_walks(data)
    tt, tla, tlo, held, video_photos, starts, exif_rows = [], [], [], [], [], {}, []
    for w, df in enumerate(walks):
        out = (np.arange(len(df)) % 5) == 2
        held += df.loc[out, "image"].tolist()
        vid = df[~out].reset_index(drop=True)
        video_photos.append(vid)
        start = float(vid["t"].iloc[0]) - 1.0
        name = f"walk{w:02d}.mp4"
        starts[name] = (start, w)
        write_video(src / name, [data / "images" / n for n in vid["image"]], vid["t"].to_numpy() - start,
                    start + CLOCK_S, fps=10, end_s=float(vid["t"].iloc[-1]) - start + 2.0)
        t, la, lo = noisy_track(vid["t"], vid["Latitude"], vid["Longitude"], keep=0.7, noise_m=1.0, seed=seed + w)
        tt.append(t), tla.append(la), tlo.append(lo)
        for j, r in enumerate(vid.iloc[1::3].itertuples(index=False)):
            ex = gps_exif(*((r.Latitude, r.Longitude) if j % 2 == 0 else (None, None)),
                          when=datetime.fromtimestamp(r.t + CLOCK_S, ZONE).strftime("%Y:%m:%d %H:%M:%S"))
            ex.get_ifd(0x8769)[0x9010] = "+02:00"  # OffsetTime: a zoned capture time
            Image.open(data / "images" / r.image).save(src / "photos" / f"w{w:02d}_{r.image}", "JPEG", quality=95,
                                                       exif=ex.tobytes())
            exif_rows.append({"image": f"w{w:02d}_{r.image}", "label": r.image, "gps": j % 2 == 0,
                              "Latitude": r.Latitude, "Longitude": r.Longitude})
    write_gpx(work / "walk.gpx", np.concatenate(tt), np.concatenate(tla), np.concatenate(tlo))
    return {"walks": video_photos, "held": held, "starts": starts, "exif": pd.DataFrame(exif_rows)}


def placement(data: Path, work: Path) -> tuple[dict, dict]:
    from img2gps.data.build import BuildConfig, build_dataset
    from img2gps.data.walk_gallery import TrackConfig
    from img2gps.geo import LocalFrame, haversine_m

    t0 = time.perf_counter()
    made = make_walks(data, work)
    make_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = build_dataset(work / "src", work / "built", BuildConfig(track=TrackConfig(path=work / "walk.gpx")),
                        log=lambda m: print(m, file=sys.stderr))
    build_s = time.perf_counter() - t0
    lab = pd.read_csv(work / "built" / "labels.csv")
    frames = lab[lab["video"].fillna("") != ""]
    errs = []
    for name, g in frames.groupby("video"):
        start, w = made["starts"][name]
        vid = made["walks"][w]
        fr = LocalFrame.around(vid["Latitude"], vid["Longitude"])
        en = fr.to_en(vid["Latitude"].to_numpy(), vid["Longitude"].to_numpy())
        t_true = start + g["video_time_s"].to_numpy()
        truth = fr.to_latlon(np.stack([np.interp(t_true, vid["t"], en[:, 0]), np.interp(t_true, vid["t"], en[:, 1])], 1))
        errs.append(haversine_m(g["Latitude"].to_numpy(), g["Longitude"].to_numpy(), *truth))
    errs = np.concatenate(errs)
    ex = made["exif"]
    placed = lab.set_index("image").reindex(ex.loc[~ex["gps"], "image"])
    p_err = haversine_m(placed["Latitude"].to_numpy(), placed["Longitude"].to_numpy(),
                        ex.loc[~ex["gps"], "Latitude"].to_numpy(), ex.loc[~ex["gps"], "Longitude"].to_numpy())
    tr = rep["track"]
    est = tr["offset_estimate"]["zoned"]
    res = {
        "walks": len(made["walks"]), "video_photos": int(sum(len(v) for v in made["walks"])),
        "held_out_photos": len(made["held"]),
        "video_seconds": round(float(sum(v["t"].iloc[-1] - v["t"].iloc[0] + 3 for v in made["walks"])), 1),
        "frames": int(len(frames)), "frame_error_m": {"median": round(float(np.median(errs)), 2),
                                                      "p90": round(float(np.percentile(errs, 90)), 2),
                                                      "mean": round(float(errs.mean()), 2)},
        "true_offset_s": -CLOCK_S, "estimated_offset_s": est["offset_s"] if est else None,
        "offset_error_s": round(abs(est["offset_s"] + CLOCK_S), 2) if est else None,
        "offset_photos": est["photos"] if est else 0,
        "photos_placed_by_time": int(tr["placed_by_time"]),
        "placed_photo_error_m": {"median": round(float(np.nanmedian(p_err)), 2),
                                 "p90": round(float(np.nanpercentile(p_err, 90)), 2)},
        "videos": tr["videos"], "make_s": round(make_s, 1), "build_s": round(build_s, 1),
        "target": {"frame_median_m_max": 2.0, "offset_error_s_max": 2.0},
    }
    res["met"] = bool(res["frame_error_m"]["median"] <= 2.0 and est and res["offset_error_s"] <= 2.0)
    return res, made


def gallery(data: Path, work: Path, made: dict, spec: str = "rerank") -> dict:
    from img2gps.data.sources import from_folder
    from img2gps.evaluate import metrics, score_queries
    from img2gps.predictors.registry import make_predictor

    bgu = from_folder(data)
    built = from_folder(work / "built")
    frames = built.subset(np.flatnonzero(built.table["video"].fillna("").astype(str) != ""))
    photos = bgu.select_ids([n for v in made["walks"] for n in v["image"]])
    queries = bgu.select_ids(made["held"])
    out = {"spec": spec, "queries": len(queries), "gallery_frames": len(frames), "gallery_photos": len(photos)}
    for key, gal in (("photos", photos), ("frames", frames)):
        p = make_predictor(spec)
        t0 = time.perf_counter()
        p.fit(gal)
        fit_s = time.perf_counter() - t0
        rows = pd.DataFrame(score_queries(p, queries, range(len(queries))))
        m = metrics(rows, fit_s)
        out[key] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()
                    if k in ("mean_m", "median_m", "p90_m", "acc_10m", "acc_25m", "radius_coverage", "fit_s",
                             "recall_at_1", "recall_at_5")}
        rows.to_csv(work / f"gallery_{key}.predictions.csv", index=False)
    out["ratio_mean"] = round(out["frames"]["mean_m"] / out["photos"]["mean_m"], 3)
    out["ratio_median"] = round(out["frames"]["median_m"] / out["photos"]["median_m"], 3)
    out["target"] = {"ratio_mean_max": 1.1}
    out["met"] = bool(out["ratio_mean"] <= 1.1)
    return out


def speed(data: Path, work: Path, seconds: float = 300.0, fps: int = 30) -> dict:
    """A 1080p walk video of `seconds` and the wall time of `data build` on it."""
    import av
    from PIL import Image

    from img2gps.data.build import BuildConfig, build_dataset
    from img2gps.data.walk_gallery import TrackConfig

    walk = max(bgu_walks(data), key=lambda d: d["t"].iloc[-1] - d["t"].iloc[0])
    walk = walk[walk["t"] <= walk["t"].iloc[0] + seconds].reset_index(drop=True)
    start = float(walk["t"].iloc[0])
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 8, (1080, 1920, 3), dtype=np.uint8) for _ in range(7)]  # sensor noise, 0..7 levels
    big = {n: np.asarray(Image.open(data / "images" / n).convert("RGB").resize((1920 + 64, 1080), Image.Resampling.BICUBIC))
           for n in walk["image"]}
    buf = np.empty((1080, 1920, 3), np.uint8)
    path = work / "speed" / "walk1080.mp4"
    path.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    out = av.open(str(path), "w")
    out.metadata["creation_time"] = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
    s.bit_rate = 12_000_000  # a phone's 1080p30 H.264 runs at 12-17 Mbit/s; superfast keeps CABAC, as phones use
    s.options = {"preset": "superfast"}
    tt = walk["t"].to_numpy() - start
    for k in range(int(seconds * fps)):
        i = max(0, int(np.searchsorted(tt, k / fps, side="right")) - 1)
        x = (k * 2) % 64  # a slow pan: every frame differs, as in a real walk
        np.add(big[walk["image"].iloc[i]][:, x:x + 1920], noise[k % 7], out=buf)  # uint8: wraps only at >= 249
        for p in s.encode(av.VideoFrame.from_ndarray(buf, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    make_s = time.perf_counter() - t0
    t, la, lo = noisy_track(walk["t"], walk["Latitude"], walk["Longitude"], keep=0.7, noise_m=1.0, seed=7)
    write_gpx(work / "speed" / "walk.gpx", t, la, lo)
    load_before = _load()
    t0 = time.perf_counter()
    c = av.open(str(path))
    c.streams.video[0].thread_type = "AUTO"
    n = sum(1 for _ in c.decode(video=0))
    c.close()
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    rep = build_dataset(path, work / "speed" / "built", BuildConfig(track=TrackConfig(path=work / "speed" / "walk.gpx")),
                        log=lambda m: print(m, file=sys.stderr))
    build_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    v = rep["track"]["videos"]["walk1080.mp4"]
    res = {"video": {"seconds": seconds, "fps": fps, "size": "1920x1080", "codec": "h264 (libx264 superfast, 12 Mbit/s)",
                     "mbytes": round(path.stat().st_size / 1e6, 1), "frames": n},
           "make_s": round(make_s, 1), "decode_only_s": round(decode_s, 1), "build_s": round(build_s, 1),
           "build_cpu_s": round(cpu_s, 1), "frames_kept": v["frames"], "sampling": v,
           "ratio_to_duration": round(build_s / seconds, 3), "load_before": load_before, "load_after": _load(),
           "target": {"ratio_to_duration_max": 2.0}}
    res["met"] = bool(res["ratio_to_duration"] <= 2.0)
    return res


def present(part: str, r: dict) -> dict:
    """A title and a one-table summary for bench/make_results.py (derived from the measured fields only)."""
    if part == "placement":
        rows = [{"measure": "frame position vs labels interpolated at its true time, median m",
                 "value": r["frame_error_m"]["median"], "target": "<= 2"},
                {"measure": "clock offset error, s", "value": r["offset_error_s"], "target": "<= 2"},
                {"measure": "photos placed by time, median m", "value": r["placed_photo_error_m"]["median"], "target": ""}]
        return {"title": "Walk videos on a GPS track: frame placement and clock offset (issue 33)", "table": rows}
    if part == "gallery":
        rows = [{"gallery": k, "photos": r[f"gallery_{k}"], **{m: r[k][m] for m in ("mean_m", "median_m", "acc_25m")}}
                for k in ("photos", "frames")]
        return {"title": "A gallery from walk videos vs the same photos, rerank on held-out photos (issue 33)",
                "table": rows}
    return {"title": "Sampling a 5-minute 1080p walk video (issue 33)",
            "table": [{"video_s": r["video"]["seconds"], "decode_only_s": r["decode_only_s"], "build_s": r["build_s"],
                       "ratio": r["ratio_to_duration"], "load_before": r["load_before"]}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "bgu-west"))
    ap.add_argument("--parts", default="placement,gallery,speed")
    ap.add_argument("--out-prefix", default=str(ROOT / "bench" / "results" / "i33-walk"))
    ap.add_argument("--speed-seconds", type=float, default=300.0, help="length of the 1080p video")
    ap.add_argument("--work", default=None, help="keep the generated videos, tracks and datasets here")
    a = ap.parse_args()
    parts = a.parts.split(",")
    data = Path(a.data).resolve()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="i33-walk-"))
    os.environ.setdefault("IMG2GPS_CACHE", str(work / "cache"))
    head = {"data": str(a.data), "code": code_revision(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python bench/walk_video.py " + " ".join(sys.argv[1:]), "cpus": os.cpu_count()}
    if "placement" in parts or "gallery" in parts:
        res, made = placement(data, work / "placement")
        print(json.dumps(res, indent=1))
        Path(a.out_prefix + "-placement.json").write_text(json.dumps({**present("placement", res), **head, **res}, indent=1) + "\n")
        if "gallery" in parts:
            g = gallery(data, work / "placement", made)
            print(json.dumps(g, indent=1))
            Path(a.out_prefix + "-gallery.json").write_text(json.dumps({**present("gallery", g), **head, **g}, indent=1) + "\n")
    if "speed" in parts:
        s = speed(data, work, a.speed_seconds)
        print(json.dumps(s, indent=1))
        Path(a.out_prefix + "-speed.json").write_text(json.dumps({**present("speed", s), **head, **s}, indent=1) + "\n")


if __name__ == "__main__":
    main()
