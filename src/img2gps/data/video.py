"""Frames of a walk video, chosen by distance walked and by view change; blurred and near-duplicate frames skipped.

Decoding is PyAV's (FFmpeg): unlike OpenCV's VideoCapture it reads the container's recording time
(`creation_time`, UTC in MP4/MOV), which places the video on a track, and each frame's display rotation. A decoded
frame costs a grey thumbnail and a sharpness score at most; only chosen frames are converted at full size.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import PhotoError
from .clock import utc_seconds

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".3gp"}
TIME_TAGS = ("com.apple.quicktime.creationdate", "creation_time", "date")  # first readable one wins
THUMB_W = 64


@dataclass
class SamplingConfig:
    step_m: float = 2.0  # a frame each time the walker has moved this far along the track
    view_check_s: float = 0.5  # between distance steps, look for a view change this often
    view_change: float = 0.08  # mean abs difference of grey thumbnails (0..1) that counts as a new view
    duplicate: float = 0.02  # thumbnail difference below which a frame repeats the last kept one
    window_s: float = 0.4  # a due frame is the sharpest within this window
    blur_ratio: float = 0.3  # sharper than this share of the recent median, or skipped as blurred


@dataclass
class VideoInfo:
    start_s: float  # recording start, seconds since 1970 UTC
    duration_s: float
    device: str | None


@dataclass
class Frame:
    video_s: float  # seconds from the start of the video
    image: Image.Image  # upright RGB


@dataclass
class SamplingStats:
    decoded: int = 0
    off_track: int = 0
    blurred: int = 0
    duplicates: int = 0
    kept: int = 0


def find_videos(src: Path, ignored: Counter) -> list[Path]:
    """Video files under the folder `src` (sorted; hidden ones left out), or [src] when `src` is a video file.
    Their suffixes are taken off `ignored`, where data build's photo search counts every file it does not use."""
    if not src.is_dir():
        return [src] if src.suffix.lower() in VIDEO_SUFFIXES else []
    out = [p for p in sorted(src.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
           and not any(part.startswith(".") for part in p.relative_to(src).parts)]
    for p in out:
        ignored[p.suffix.lower()] -= 1
    for k in [k for k, v in ignored.items() if v <= 0]:
        del ignored[k]
    return out


def _open(path: Path, rel: str):
    import av

    try:
        c = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise PhotoError(rel, f"not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not c.streams.video:
        c.close()
        raise PhotoError(rel, "holds no video stream")
    return c


def probe(path: Path, rel: str) -> VideoInfo:
    """Recording time, duration and device; PhotoError when the file is not a readable video or says
    nothing about when it was recorded."""
    c = _open(path, rel)
    try:
        s = c.streams.video[0]
        tags = {**{k.lower(): v for k, v in s.metadata.items()}, **{k.lower(): v for k, v in c.metadata.items()}}
        start = next((t for t in (utc_seconds(tags.get(k))[0] for k in TIME_TAGS) if t is not None and t > 0), None)
        if start is None:
            raise PhotoError(rel, "the video carries no recording time (creation_time), so it cannot be placed "
                                  "on a track")
        dur = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
        device = tags.get("com.apple.quicktime.model") or tags.get("model") or None
        return VideoInfo(start_s=start, duration_s=dur, device=device)
    finally:
        c.close()


def _thumb(frame) -> np.ndarray:
    h = max(2, round(THUMB_W * frame.height / max(frame.width, 1)))
    a = frame.reformat(width=THUMB_W, height=h, format="gray").to_ndarray().astype(np.float32)
    return (a - a.mean()) / 255.0


def _sharpness(frame) -> float:
    """Variance of the Laplacian on a 320-pixel-wide grey copy (higher = sharper)."""
    import cv2

    h = max(2, round(320 * frame.height / max(frame.width, 1)))
    g = frame.reformat(width=320, height=h, format="gray").to_ndarray()
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


def _upright(frame) -> Image.Image:
    im = frame.to_image()
    rot = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return im.rotate(rot, expand=True) if rot else im


def sample(path: Path, rel: str, walked_at, on_track, cfg: SamplingConfig,
           stats: SamplingStats) -> Iterator[Frame]:
    """Chosen frames of one video, in time order. `walked_at(video_s)` -> metres walked on the track at that
    moment of the video; `on_track(video_s)` -> whether the track places it. PhotoError when decoding fails."""
    import av

    c = _open(path, rel)
    s = c.streams.video[0]
    s.thread_type = "AUTO"
    t0 = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
    last_thumb, last_walked, last_check = None, -np.inf, -np.inf
    recent = deque(maxlen=60)  # sharpness of recent candidates: the reference for "blurred"
    window: list[tuple[float, float, object]] = []  # (sharpness, video_s, frame) of the frame now due
    due_until = None

    def decide() -> Frame | None:
        nonlocal last_thumb, last_walked
        sharp, vs, fr = max(window, key=lambda x: x[0])
        end = window[-1][1]  # the step is judged at the window's end: a window that crosses it keeps a frame
        window.clear()
        med = float(np.median(recent)) if len(recent) >= 5 else 0.0
        if sharp < cfg.blur_ratio * med:
            stats.blurred += 1
            return None
        th = _thumb(fr)
        diff = float(np.mean(np.abs(th - last_thumb))) if last_thumb is not None else np.inf
        if walked_at(end) - last_walked < cfg.step_m and diff < cfg.view_change:
            if diff < cfg.duplicate:
                stats.duplicates += 1
            return None
        last_thumb, last_walked = th, walked_at(vs)
        stats.kept += 1
        return Frame(video_s=vs, image=_upright(fr))

    try:
        for fr in c.decode(s):
            stats.decoded += 1
            vs = (float(fr.pts * s.time_base) if fr.pts is not None else fr.time or 0.0) - t0
            if not on_track(vs):
                stats.off_track += 1
                continue
            if due_until is None and (walked_at(vs) - last_walked >= cfg.step_m or vs - last_check >= cfg.view_check_s):
                due_until, last_check = vs + cfg.window_s, vs
            if due_until is not None:
                sharp = _sharpness(fr)
                recent.append(sharp)
                window.append((sharp, vs, fr))
                if vs >= due_until:
                    due_until = None
                    out = decide()
                    if out is not None:
                        yield out
        if window:
            out = decide()
            if out is not None:
                yield out
    except av.error.FFmpegError as e:
        raise PhotoError(rel, f"video decoding failed after {stats.decoded} frames ({str(e).splitlines()[0][:120]})") from None
    finally:
        c.close()
