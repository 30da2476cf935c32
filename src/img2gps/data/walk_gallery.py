"""`data build --track`: photos without GPS placed by their capture time, and walk videos turned into frames,
both on a GPS track (data/track.py) with one clock offset rule (data/clock.py).

build.py calls these two functions; they set the positions of its items (duck-typed: latitude, longitude,
label_source, time, travel_deg, ...) and never import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np

from ..errors import DataError, PhotoError
from ..outputs import counted
from ..photos import open_image
from .clock import OffsetEstimate, Offsets, estimate_offset, iso_utc, utc_seconds
from .track import Track, read_track
from .video import SamplingConfig, SamplingStats, probe, sample

POSITIONED = ("exif", "csv")  # label sources of photos that bring their own position


@dataclass
class TrackConfig:
    path: Path | None = None  # --track FILE
    time_offset_s: float | None = None  # --time-offset: t_track = t_camera + S; None = estimate from the photos
    allow_outside: bool = False  # place photos outside the track's span at its nearest end instead of refusing
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def open_track(self) -> Track | None:
        """The checked options' track (None without --track). Raises DataError for a bad option or track file."""
        if not (self.sampling.step_m > 0) or not np.isfinite(self.time_offset_s or 0.0):
            raise DataError("--frame-step must be > 0 metres and --time-offset a finite number of seconds")
        return read_track(self.path) if self.path else None


@dataclass
class FrameRow:
    """One chosen video frame, written as a JPEG: the values its labels.csv row needs."""
    source: str
    image: str
    latitude: float
    longitude: float
    time: str
    device: str | None
    video: str
    video_time_s: float
    travel_deg: float | None
    width: int
    height: int
    phash: int


def _nan_none(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 1)


def estimate(items: list, track: Track) -> dict[bool, OffsetEstimate | None]:
    """The offset of zoned and of zone-less capture times, each from the photos of that kind with a position."""
    out: dict[bool, OffsetEstimate | None] = {}
    rows = [(it, *utc_seconds(it.time)) for it in items if it.label_source in POSITIONED and it.time]
    for zoned in (True, False):
        sel = [(t, it.latitude, it.longitude) for it, t, z in rows if t is not None and z == zoned]
        out[zoned] = estimate_offset(track, *map(np.array, zip(*sel))) if sel else None
    return out


def place_photos(items: list, track: Track, cfg: TrackConfig, log: Callable[[str], None]) -> tuple[Offsets, dict, list]:
    """Estimate the clock offsets, then place each item whose label_source is 'track' at its corrected capture
    time. Returns (offsets used, report section, [(item, reason)] refused: outside the track or in a gap)."""
    est = estimate(items, track)
    given = cfg.time_offset_s
    offsets = Offsets(zoned_s=given if given is not None else (est[True].offset_s if est[True] else 0.0),
                      naive_s=given if given is not None else (est[False].offset_s if est[False] else 0.0))
    for zoned, e in est.items():
        if e is not None:
            log(f"clock offset estimated from {counted(e.photos, 'photo')} with GPS and a {'zoned' if zoned else 'zone-less'} "
                f"time: {e.offset_s:+.1f} s (median misfit {e.median_m:.1f} m)"
                + (f"; using --time-offset {given:+g} s instead" if given is not None else ""))
    refused, placed, naive_unestimated = [], 0, 0
    for it in items:
        if it.label_source != "track":
            continue
        t, zoned = utc_seconds(it.time)
        if t is None:
            refused.append((it, f"capture time '{it.time}' cannot be read"))
            continue
        naive_unestimated += not zoned and given is None and est[False] is None
        tt = t + offsets.of(zoned)
        if not track.covers(tt) and not cfg.allow_outside:
            where = "in a gap of the track" if track.span[0] <= tt <= track.span[1] else "outside the track"
            refused.append((it, f"taken at {iso_utc(tt)} (track clock), {where} ({track.describe_span()}); "
                                "pass --allow-outside-track to place it at the nearest track point"))
            continue
        lat, lon = track.position(tt)
        it.latitude, it.longitude, it.travel_deg = float(lat), float(lon), _nan_none(track.travel_deg(tt))
        placed += 1
    if naive_unestimated:
        log(f"warning: placed {counted(naive_unestimated, 'photo')} by a time without a zone, read as UTC (no photo "
            "with GPS and such a time to estimate the zone from); pass --time-offset S if the camera ran on local time")
    report = {"file": str(track.name), "points": len(track.t), "span_utc": [iso_utc(track.t[0]), iso_utc(track.t[-1])],
              "walked_m": round(float(track.walked[-1]), 1), "time_offset_given_s": given,
              "offset_estimate": {"zoned": est[True].to_dict() if est[True] else None,
                                  "zone_less": est[False].to_dict() if est[False] else None},
              "offset_used_s": {"zoned": offsets.zoned_s, "zone_less": offsets.naive_s},
              "placed_by_time": placed, "refused_outside_track": len(refused), "videos": {}}
    return offsets, report, refused


def video_frames(path: Path, rel: str, stem: str, track: Track | None, offset_s: float, cfg: TrackConfig,
                 images_dir: Path, used: set[str], max_side: int | None, quality: int) -> tuple[list[FrameRow], dict]:
    """Sample one video onto the track and write its chosen frames as JPEGs named STEM_tMILLISECONDS.jpg.
    Returns (frames, stats); PhotoError (one line) when the video cannot be used at all."""
    if track is None:
        raise PhotoError(rel, "a video needs a track (--track FILE: GPX, CSV, Takeout JSON or KML); img2gps does "
                              "not read location streams embedded in videos")
    info = probe(path, rel)
    start = info.start_s + offset_s
    a, b = start, start + info.duration_s
    if not track.covers(np.linspace(a, b, 200)).any():
        raise PhotoError(rel, f"recorded {iso_utc(a)} .. {iso_utc(b)} (track clock), which does not overlap the "
                              f"track {track.name} ({track.describe_span()})")
    stats = SamplingStats()
    rows: list[FrameRow] = []
    for fr in sample(path, rel, lambda vs: float(track.walked_m(start + vs)),
                     lambda vs: bool(track.covers(start + vs)), cfg.sampling, stats):
        t = start + fr.video_s
        name = f"{stem}_t{int(round(fr.video_s * 1000)):08d}.jpg"
        k = 2
        while name.lower() in used:
            name, k = f"{stem}_t{int(round(fr.video_s * 1000)):08d}_{k}.jpg", k + 1
        used.add(name.lower())
        im = open_image(fr.image, max_side=max_side or None)
        im.save(images_dir / name, "JPEG", quality=quality)
        lat, lon = track.position(t)
        rows.append(FrameRow(source=f"{rel}#t={fr.video_s:.3f}", image=name, latitude=float(lat),
                             longitude=float(lon), time=iso_utc(t), device=info.device, video=rel,
                             video_time_s=round(fr.video_s, 3), travel_deg=_nan_none(track.travel_deg(t)),
                             width=im.width, height=im.height, phash=int(str(imagehash.phash(im)), 16)))
    if not rows:
        raise PhotoError(rel, f"no usable frame ({stats.decoded} decoded, {stats.off_track} off the track, "
                              f"{stats.blurred} blurred, {stats.duplicates} near-duplicates)")
    return rows, {"recorded_utc": [iso_utc(a), iso_utc(b)], "duration_s": round(info.duration_s, 2),
                  **vars(stats)}


def add_walk(items: list, skipped: list[dict], track: Track | None, videos: list[tuple[Path, str, str]], cfg,
             images_dir: Path, log: Callable[[str], None], make_item: Callable) -> dict | None:
    """data build's track step, in place: place `items` marked 'track' (refused ones leave `items` for `skipped`,
    their JPEG deleted), then append the frames of each (path, rel, output name) video as `make_item(**row)`.
    `cfg` is the BuildConfig. Returns the report section (None without a track)."""
    report, offsets = None, Offsets()
    if track is not None:
        offsets, report, refused = place_photos(items, track, cfg.track, log)
        for it, why in refused:
            items.remove(it)
            (images_dir / it.image).unlink(missing_ok=True)
            skipped.append({"file": it.source, "reason": why})
            log(f"skipped {it.source}: {why}")
    used = {it.image.lower() for it in items}
    for path, rel, name in videos:
        try:
            rows, stats = video_frames(path, rel, Path(name).stem, track, offsets.zoned_s, cfg.track, images_dir, used,
                                       cfg.max_side, cfg.quality)
        except PhotoError as e:
            skipped.append({"file": rel, "reason": e.problem})
            log(f"skipped {rel}: {e.problem}")
            continue
        log(f"{rel}: {len(rows)} frames from {stats['decoded']} ({stats['off_track']} off the track, "
            f"{stats['blurred']} blurred, {stats['duplicates']} near-duplicates)")
        report["videos"][rel] = {**stats, "frames": len(rows)}
        items.extend(make_item(label_source="track", **vars(r)) for r in rows)
    return report
