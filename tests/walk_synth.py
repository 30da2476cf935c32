"""Walk videos and GPS tracks made in code (tests and bench/walk_video.py): photos encoded in time order at their
real timing, tracks written from positions with points removed and noise added. Nothing here is committed data."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

BGU_ZONE = timezone(timedelta(hours=2))  # bgu-west (Beer Sheva, December): file names are local times, UTC+2
_NAME_TIME = re.compile(r"^(?:IMG)?(\d{8})_?(\d{6})")


def bgu_walks(data_dir: Path, min_photos: int = 20, max_gap_s: float = 120.0) -> list[pd.DataFrame]:
    """bgu-west's photos grouped into walks (consecutive capture times <= max_gap_s apart, from the file names),
    each sorted by time with a column t (seconds since 1970 UTC); walks with fewer than min_photos are left out."""
    df = pd.read_csv(Path(data_dir) / "labels.csv")
    ts = []
    for n in df["image"]:
        m = _NAME_TIME.match(n)
        ts.append(datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=BGU_ZONE).timestamp()
                  if m else np.nan)
    df = df.assign(t=ts).dropna(subset=["t"]).sort_values(["t", "image"]).reset_index(drop=True)
    walk = np.concatenate([[0], np.cumsum(np.diff(df["t"].to_numpy()) > max_gap_s)])
    return [g.reset_index(drop=True) for _, g in df.groupby(walk) if len(g) >= min_photos]


def write_video(path: Path, images: list, times_s: np.ndarray, start_utc: float, fps: float = 10.0,
                size: tuple[int, int] | None = None, codec: str = "libx264", crf: int = 16,
                end_s: float | None = None, threads: int = 0) -> Path:
    """An MP4 showing images[i] from times_s[i] (seconds from the start) until the next one, at `fps`, with its
    recording time (creation_time) = start_utc. `images`: PIL images or paths; `size`: (W, H) to resize to."""
    import av

    times_s = np.asarray(times_s, float)
    end = times_s[-1] + 2.0 if end_s is None else end_s
    out = av.open(str(path), "w")
    out.metadata["creation_time"] = datetime.fromtimestamp(start_utc, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    first = _load(images[0], size)
    s = out.add_stream(codec, rate=int(fps))
    s.width, s.height, s.pix_fmt = first.width - first.width % 2, first.height - first.height % 2, "yuv420p"
    s.options = {"crf": str(crf), "preset": "veryfast"} if codec == "libx264" else {}
    if threads:
        s.codec_context.thread_count = threads
    cur, arr = None, None
    for k in range(int(np.ceil(end * fps))):
        i = max(0, int(np.searchsorted(times_s, k / fps, side="right")) - 1)
        if i != cur:
            cur = i
            im = _load(images[i], size)
            arr = np.asarray(im.convert("RGB"))[: s.height, : s.width]
        for p in s.encode(_frame(arr)):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def _frame(arr):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")


def _load(im, size) -> Image.Image:
    if not isinstance(im, Image.Image):
        with Image.open(im) as f:
            im = f.convert("RGB")
    return im.resize(size, Image.Resampling.BILINEAR) if size and im.size != size else im


def noisy_track(t, lat, lon, keep: float = 0.7, noise_m: float = 1.0, seed: int = 0, extend_s: float = 5.0):
    """Track points from labelled positions: a share `keep` of them (the ends always), each moved by Gaussian
    noise of noise_m metres per axis; the ends extended by extend_s so the first and last moments are covered."""
    rng = np.random.default_rng(seed)
    t, lat, lon = (np.asarray(x, float) for x in (t, lat, lon))
    sel = rng.random(len(t)) < keep
    sel[[0, -1]] = True
    m_lat = 111_195.0
    m_lon = m_lat * np.cos(np.radians(lat.mean()))
    la = lat[sel] + rng.normal(0, noise_m, sel.sum()) / m_lat
    lo = lon[sel] + rng.normal(0, noise_m, sel.sum()) / m_lon
    tt = t[sel]
    return (np.concatenate([[tt[0] - extend_s], tt, [tt[-1] + extend_s]]), np.concatenate([[la[0]], la, [la[-1]]]),
            np.concatenate([[lo[0]], lo, [lo[-1]]]))


def write_gpx(path: Path, t, lat, lon) -> Path:
    """A GPX 1.1 track with one segment (times in UTC)."""
    import gpxpy.gpx

    g = gpxpy.gpx.GPX()
    tr = gpxpy.gpx.GPXTrack()
    seg = gpxpy.gpx.GPXTrackSegment()
    for a, b, c in zip(t, lat, lon):
        seg.points.append(gpxpy.gpx.GPXTrackPoint(float(b), float(c), time=datetime.fromtimestamp(float(a), timezone.utc)))
    tr.segments.append(seg)
    g.tracks.append(tr)
    Path(path).write_text(g.to_xml())
    return path


def exif_time(t_utc: float, zone: timezone | None = BGU_ZONE) -> dict:
    """gps_exif keyword arguments for a capture time: DateTime in `zone`'s local time (no zone tag is written
    by synth.gps_exif, so the time reads as zone-less)."""
    dt = datetime.fromtimestamp(t_utc, zone or timezone.utc)
    return {"when": dt.strftime("%Y:%m:%d %H:%M:%S")}
