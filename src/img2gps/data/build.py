"""`data build`: a folder of phone photos (and walk videos, data/walk_gallery.py) -> a clean dataset (images/ +
labels.csv + report + points map). Reads every photo under SRC (recursively), takes its position from EXIF GPS
(or a --labels CSV, which wins), writes an upright, resized, metadata-free JPEG per photo, and runs the cleaning
steps: each is opt-in, but always evaluated and reported, so a user sees what it *would* drop before using it.
"""
from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import DataError, NoUsablePhotos, PhotoError
from ..photos import MAX_PIXELS, PHOTO_SUFFIXES, read_header, readable_name
from . import cleaning as cl
from ..outputs import counted, disk_problem
from ..walk import walk_files
from .outdir import atomic_dir, check_out
from .labels_csv import LabelsCsvConfig, LabelRow, check_labels, refuse_if_mostly_swapped
from .report import write_reports
from .sources import read_labels_csv, validate_coordinates
from .video import VIDEO_SUFFIXES, find_videos
from .walk_gallery import TrackConfig, add_walk

DEFAULT_HAMMING = 4  # phash distance (of 64 bits) that counts as "the same picture"
REPORT_SINGLETON_M = 5.0  # radius used to report singletons when --drop-singletons is not given
STEPS = ("bbox", "drift_dates", "singletons", "near_duplicates")  # applied in this order


@dataclass
class BuildConfig:
    max_side: int = 1200  # long side of the written JPEGs; 0 keeps the original size
    quality: int = 90
    max_pixels: int = MAX_PIXELS  # larger photos are refused (photos.MAX_PIXELS: the one default limit)
    labels: Path | None = None  # CSV whose positions override EXIF
    bbox: str | None = None  # None = off; "auto" or "LAT_MIN,LON_MIN,LAT_MAX,LON_MAX"
    drop_singletons_m: float | None = None  # None = off; else radius that makes photos one "point"
    drop_dates: tuple[str, ...] = ()
    drop_drift_dates: bool = False
    dedup: bool = False
    dedup_hamming: int = DEFAULT_HAMMING
    drift: cl.DriftConfig = field(default_factory=cl.DriftConfig)
    overwrite: bool = False
    labels_csv: LabelsCsvConfig = field(default_factory=LabelsCsvConfig)
    track: TrackConfig = field(default_factory=TrackConfig)  # --track: videos, and photos placed by time


@dataclass
class Item:
    source: str  # path relative to SRC
    image: str  # output file name
    latitude: float
    longitude: float
    label_source: str  # "exif" or "csv"
    time: str | None
    device: str | None
    width: int
    height: int
    phash: int
    dropped_by: str | None = None
    heading: float | None = None  # EXIF GPSImgDirection (true north), degrees
    focal35: float | None = None  # 35 mm-equivalent focal length, mm
    exif_position: tuple[float, float] | None = None  # the photo's own EXIF GPS (checks --labels rows)
    uptime_s: float | None = None  # an iPhone's seconds since boot: tells two phones of one model apart (drift)
    video: str | None = None  # a video frame: the video (relative to SRC) and its time in it, seconds
    video_time_s: float | None = None
    travel_deg: float | None = None  # placed on a track: direction of travel there (compass degrees)


def _stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def find_photos(src: Path, log: Callable[[str], None] = _stderr) -> tuple[list[Path], Counter]:
    """Photo files under src (sorted, so runs are reproducible; linked folders followed, walk.walk_files) and a
    count of ignored files by suffix. Linked folders not entered (loops, repeats) are logged, one line each."""
    photos, ignored = [], Counter()
    files, links = walk_files(src, PHOTO_SUFFIXES)
    for p, why in links:
        log(f"skipped {p.relative_to(src) if p.is_relative_to(src) else p}: {why}")
    for p in files:
        # A broken symlink or a folder named like a photo is kept here so that it is reported, not silently lost.
        if not p.is_file() and p.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        rel = p.relative_to(src)
        # Hidden files (macOS '._IMG.jpg' resource forks, .DS_Store) are never photos.
        if any(part.startswith(".") for part in rel.parts):
            ignored["hidden"] += 1
        elif p.suffix.lower() in PHOTO_SUFFIXES:
            photos.append(p)
        else:
            ignored[p.suffix.lower() or "(no suffix)"] += 1
    return photos, ignored


def output_names(rels: list[str]) -> list[str]:
    """<stem>.jpg, made unique (case-insensitively) by prefixing sub-folders, then the old suffix, then a number."""
    stems = Counter(Path(r).stem.lower() for r in rels)
    used: set[str] = set()
    out = []
    for r in rels:
        pr = Path(r)
        base = pr.stem if stems[pr.stem.lower()] == 1 else "__".join(pr.parent.parts + (pr.stem,))
        name, k = base, 2
        if name.lower() in used:
            name = f"{base}_{pr.suffix[1:].lower()}"
        while name.lower() in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name.lower())
        out.append(name + ".jpg")
    return out


class LabelOverride:
    """Positions from a --labels CSV, matched to photos by relative path, else by file name."""

    def __init__(self, path: Path):
        self.path = path
        raw = read_labels_csv(path)
        clean, skipped = validate_coordinates(raw, str(path))
        self.rows = len(raw)
        self.bad_rows = [{"row": w, "reason": r} for w, r in skipped]
        good = set(clean["image"])
        # A photo named by an invalid row is skipped (the user said its position, and it is unusable).
        self.bad: dict[str, str] = {}
        for name in raw["image"].dropna().astype(str):
            if name not in good:
                reason = next((r for w, r in skipped if w.endswith(f"({name})")), "invalid row")
                self.bad[self._key(name)] = f"--labels row invalid: {reason}"
        self.table = {self._key(n): row for n, row in zip(clean["image"], clean.to_dict("records"))}
        base = Counter(Path(k).name.lower() for k in self.table)
        self.by_name = {Path(k).name.lower(): k for k in self.table if base[Path(k).name.lower()] == 1}
        self.used: set[str] = set()

    @staticmethod
    def _key(name: str) -> str:
        # NFC: macOS file systems and zip tools store 'é' decomposed (NFD), spreadsheets type it composed (NFC)
        k = unicodedata.normalize("NFC", str(name).strip().replace("\\", "/"))
        return k[2:] if k.startswith("./") else k

    def lookup(self, rel: str) -> tuple[dict | None, str | None]:
        """(row, None) when found, (None, reason) when the CSV names it badly, (None, None) when absent."""
        rel = self._key(rel)
        for k in (rel, "images/" + rel):
            if k in self.table:
                self.used.add(k)
                return self.table[k], None
            if k in self.bad:
                return None, self.bad[k]
        k = self.by_name.get(Path(rel).name.lower())
        if k is not None:
            self.used.add(k)
            return self.table[k], None
        return None, None

    def summary(self) -> dict:
        unmatched = sorted(set(self.table) - self.used)
        return {"csv": str(self.path), "rows": self.rows, "used": len(self.used),
                "rows_without_photo": unmatched, "bad_rows": self.bad_rows}


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def read_one(path: Path, rel: str, name: str, labels: LabelOverride | None, cfg: BuildConfig,
             images_dir: Path) -> Item:
    """One photo -> Item, writing its JPEG; PhotoError with a one-line reason when it cannot be used."""
    row, bad = labels.lookup(rel) if labels else (None, None)  # first: a row whose photo is unreadable still matched
    head = read_header(path, cfg.max_pixels)  # the photo's one read, one header parse and one EXIF read
    meta = head.meta
    if bad:
        raise PhotoError(rel, bad)
    if row is not None:
        lat, lon, source = float(row["Latitude"]), float(row["Longitude"]), "csv"
    elif meta.has_gps:
        lat, lon, source = meta.latitude, meta.longitude, "exif"
    elif cfg.track.path is not None:  # placed by its time once the clock offset is known (walk_gallery.place_photos)
        if not meta.time:
            raise PhotoError(rel, f"{meta.gps_problem or 'no GPS position'} and no capture time to place it on the track")
        lat, lon, source = np.nan, np.nan, "track"
    else:
        extra = " and not in the --labels CSV" if labels else ""
        raise PhotoError(rel, f"{meta.gps_problem or 'no GPS position'}{extra}")
    im = head.decode(cfg.max_side or None)  # JPEGs decode at a reduced DCT scale: fast on 12 MP
    im.save(images_dir / name, "JPEG", quality=cfg.quality)
    return Item(source=rel, image=name, latitude=lat, longitude=lon, label_source=source, uptime_s=meta.uptime_s,
                time=meta.time or (_text(row.get("time")) if row else None),
                device=meta.device or (_text(row.get("device")) if row else None),
                heading=meta.heading if meta.heading is not None else _num(row.get("heading") if row else None),
                focal35=meta.focal35 if meta.focal35 is not None else _num(row.get("focal35") if row else None),
                width=im.width, height=im.height, phash=int(str(imagehash.phash(im)), 16),
                exif_position=(meta.latitude, meta.longitude) if meta.has_gps else None)


def clean(items: list[Item], cfg: BuildConfig, bbox, log: Callable[[str], None] = _stderr) -> dict:
    """Run the steps in order on the photos still kept; each reports what it would drop; enabled ones drop."""
    out: dict[str, dict] = {}
    names = [it.image for it in items]

    def alive() -> np.ndarray:
        return np.array([i for i, it in enumerate(items) if it.dropped_by is None], int)

    def coords(idx):
        return (np.array([items[i].latitude for i in idx]), np.array([items[i].longitude for i in idx]))

    def apply(step: str, idx, enabled: bool, extra: dict) -> None:
        would = [names[i] for i in idx]
        if enabled:
            for i in idx:
                items[i].dropped_by = step
        out[step] = {"enabled": enabled, "would_drop": len(would), "dropped": len(would) if enabled else 0,
                     "images": would, **extra}

    # 1. bounding box (the robust auto box is always computed, so it can be shown even when off)
    idx = alive()
    lat, lon = coords(idx)
    auto = cl.robust_bbox(lat, lon)
    box = auto if bbox in (None, "auto") else bbox
    bad = idx[cl.outside_bbox(lat, lon, box)]
    apply("bbox", bad, bbox is not None, {
        "mode": "off" if bbox is None else ("auto" if bbox == "auto" else "given"),
        "bbox": [round(v, 7) for v in box], "auto_rule": f"median +- max({cl.AUTO_BBOX_K:g} x 1.4826 MAD, "
                                                         f"{cl.AUTO_BBOX_FLOOR_M:g} m) per axis"})

    # 2. GPS-drift dates
    idx = alive()
    lat, lon = coords(idx)
    en = cl.en_of(lat, lon) if len(idx) else np.zeros((0, 2))
    rep = cl.drift_dates([items[i].time for i in idx], [items[i].device for i in idx], en,
                         [names[i] for i in idx], cfg.drift, [items[i].uptime_s for i in idx])
    dates = np.array([cl.date_of(items[i].time) for i in idx], dtype=object)
    on_flagged = np.isin(dates, rep.flagged) if len(idx) else np.zeros(0, bool)
    on_named = np.isin(dates, list(cfg.drop_dates)) if len(idx) else np.zeros(0, bool)
    enabled = bool(cfg.drop_dates) or cfg.drop_drift_dates
    # Off: report everything it could drop (named + flagged). On: exactly what the user asked for.
    sel = (on_named | (on_flagged if cfg.drop_drift_dates else False)) if enabled else (on_named | on_flagged)
    apply("drift_dates", idx[sel], enabled, {
              "rule": f"consecutive photos of one device on one date more than {cfg.drift.min_jump_m:g} m apart "
                      f"at more than {cfg.drift.max_speed_mps:g} m/s",
              "would_drop_flagged": int(on_flagged.sum()), "would_drop_named": int(on_named.sum()),
              "flagged_dates": rep.flagged, "named_dates": list(cfg.drop_dates),
              "named_dates_absent": sorted(set(cfg.drop_dates) - set(rep.per_date)),
              "photos_without_time": rep.no_time, "photos_with_unreadable_time": rep.unreadable,
              "photos_not_ordered": rep.unordered, "per_date": rep.per_date})
    if rep.unreadable:
        log(f"warning: a time that cannot be read in {counted(len(rep.unreadable), 'photo')}, e.g. {rep.unreadable[0]}; "
            "the drift check leaves them out (use ISO 8601, e.g. 2024-09-23T14:05:00 or 2024-09-23T18:05:00Z)")
    if rep.unordered:
        log(f"warning: a time without a zone in {counted(rep.unordered, 'photo')}, on a day when the same device also has "
            "times with one; the drift check compares each kind only with its own")

    # 3. singleton points
    idx = alive()
    lat, lon = coords(idx)
    en = cl.en_of(lat, lon) if len(idx) else np.zeros((0, 2))
    radius = cfg.drop_singletons_m if cfg.drop_singletons_m is not None else REPORT_SINGLETON_M
    single = cl.singleton_mask(en, radius)
    by_radius = {f"{r:g}": int(cl.singleton_mask(en, r).sum()) for r in (0, 1, 5, 10, 25)}
    apply("singletons", idx[single], cfg.drop_singletons_m is not None,
          {"radius_m": radius, "would_drop_by_radius_m": by_radius})

    # 4. near-duplicates (perceptual hash of the written image)
    idx = alive()
    pairs = cl.near_duplicates([items[i].phash for i in idx], cfg.dedup_hamming)
    apply("near_duplicates", idx[[p[0] for p in pairs]] if pairs else idx[:0], cfg.dedup, {
        "max_hamming": cfg.dedup_hamming,
        "nearest_hamming": cl.quantiles(cl.nearest_hamming([items[i].phash for i in idx])) if len(idx) > 1 else None,
        "pairs": [{"image": names[idx[a]], "same_as": names[idx[b]], "hamming": d} for a, b, d in pairs]})
    return out


def build_dataset(src: str | Path, out: str | Path, cfg: BuildConfig | None = None,
                  log: Callable[[str], None] = _stderr) -> dict:
    """Build OUT from the photos under SRC; returns the report (also written to OUT/report.json)."""
    src, out = Path(src), Path(out)
    cfg = replace(cfg) if cfg else BuildConfig()  # a copy: the caller's config is not modified
    if not src.exists():
        raise DataError(f"{src}: photo folder not found")
    if not src.is_dir() and src.suffix.lower() not in VIDEO_SUFFIXES:
        raise DataError(f"{src}: not a folder (nor a video: {', '.join(sorted(VIDEO_SUFFIXES))})")
    protected = [src] + [Path(p) for p in (cfg.labels, cfg.track.path) if p]
    check_out(out, protected, cfg.overwrite, marker="report.json")
    bbox = cl.parse_bbox(cfg.bbox) if cfg.bbox else None
    cfg.drop_dates = tuple(cl.parse_dates(",".join(cfg.drop_dates)))
    if cfg.dedup_hamming < 0 or cfg.dedup_hamming > 64:
        raise DataError(f"--dedup-hamming {cfg.dedup_hamming}: must be between 0 and 64")
    if cfg.drop_singletons_m is not None and cfg.drop_singletons_m < 0:
        raise DataError(f"--drop-singletons {cfg.drop_singletons_m}: radius must be >= 0 metres")
    labels = LabelOverride(Path(cfg.labels)) if cfg.labels else None
    track = cfg.track.open_track()

    photos, ignored = find_photos(src, log) if src.is_dir() else ([], Counter())
    videos = find_videos(src, ignored)
    if not photos and not videos:
        raise DataError(f"{src}: no photos found (looked recursively for {', '.join(sorted(PHOTO_SUFFIXES))})")
    files = photos + videos
    rels_all = [readable_name((p.relative_to(src) if src.is_dir() else Path(p.name)).as_posix()) for p in files]
    names_all = output_names(rels_all)
    rels, names = rels_all[:len(photos)], names_all[:len(photos)]

    with atomic_dir(out) as tmp:
        images_dir = tmp / "images"
        images_dir.mkdir()
        items: list[Item] = []
        skipped: list[dict] = []
        for p, rel, name in zip(tqdm(photos, desc="data build", unit="photo", file=sys.stderr, disable=None),
                                rels, names):
            try:
                items.append(read_one(p, rel, name, labels, cfg, images_dir))
            except PhotoError as e:
                skipped.append({"file": rel, "reason": e.problem})
                log(f"skipped {rel}: {e.problem}")
            except Exception as e:  # one odd file must not stop a batch; it is listed like any bad file
                if disk_problem(e):  # but a full disk stops it: every later photo would fail the same way
                    raise
                skipped.append({"file": rel, "reason": f"unexpected {type(e).__name__}: {e}"})
                log(f"skipped {rel}: unexpected {type(e).__name__}: {e}")
        n = len(photos)
        walk_report = add_walk(items, skipped, track, list(zip(videos, rels_all[n:], names_all[n:])), cfg, images_dir,
                               log, Item)
        if not items:
            why = Counter(s["reason"] for s in skipped).most_common(1)[0][0]
            hint = ""
            if "GPS" in why and not labels:
                hint = ("; give their positions in a CSV (columns image,Latitude,Longitude) with "
                        f"`img2gps data build {src} {out} --labels CSV`")
            eg = next(s["file"] for s in skipped if s["reason"] == why)
            raise NoUsablePhotos(f"{src}: none of {counted(len(files), 'photo/video file')} is usable (most common "
                                 f"problem: {why}; e.g. {eg})" + hint, skipped)

        no_gps = sum("GPS" in s["reason"] for s in skipped)
        if no_gps and not labels:
            log(f"note: skipped {counted(no_gps, 'photo')} for want of a GPS position; to keep them, list their positions "
                f"in a CSV (columns image,Latitude,Longitude): img2gps data build {src} OUT --labels CSV")
        label_findings = None
        if labels:
            unmatched = labels.summary()["rows_without_photo"]
            if unmatched:
                log(f"warning: no photo under {src} for {counted(len(unmatched), '--labels row')}: "
                    + ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else ""))
            rows = [LabelRow(i.source, i.latitude, i.longitude, i.exif_position) for i in items if i.label_source == "csv"]
            label_findings = check_labels(rows, cfg.labels_csv, [(i.latitude, i.longitude) for i in items
                                                                 if i.label_source != "csv"])
            for line in label_findings.warnings():
                log(f"warning: {line}")
            refuse_if_mostly_swapped(label_findings, str(cfg.labels), cfg.labels_csv)
        steps = clean(items, cfg, bbox, log)
        kept = [it for it in items if it.dropped_by is None]
        if not kept:
            raise DataError(f"{src}: the cleaning steps dropped all {counted(len(items), 'photo')}; loosen or disable them")
        for it in items:
            if it.dropped_by:
                (images_dir / it.image).unlink()
        table = pd.DataFrame([{"image": it.image, "Latitude": it.latitude, "Longitude": it.longitude,
                               "time": it.time or "", "device": it.device or "",
                               "heading": it.heading, "focal35": it.focal35, "video": it.video or "",
                               "video_time_s": it.video_time_s, "travel_deg": it.travel_deg} for it in kept])
        if track is None:  # the walk columns only where a track placed something
            table = table.drop(columns=["video", "video_time_s", "travel_deg"])
        table.to_csv(tmp / "labels.csv", index=False)
        cfg_d = asdict(cfg)
        cfg_d["labels"] = str(cfg.labels) if cfg.labels else None
        cfg_d["track"]["path"] = str(cfg.track.path) if cfg.track.path else None
        report = {
            "tool": "img2gps data build", "source": str(src), "config": cfg_d,
            "counts": {"files": len(files) + sum(ignored.values()), "photo_files": len(photos), "videos": len(videos),
                       "ignored_files": dict(ignored), "skipped": len(skipped), "geotagged": len(items),
                       "kept": len(kept), "dropped": {s: steps[s]["dropped"] for s in STEPS},
                       "label_source": dict(Counter(it.label_source for it in kept)),
                       "portrait": sum(it.height > it.width for it in kept),
                       "landscape": sum(it.width > it.height for it in kept)},
            "skipped": skipped,
            "labels": {**labels.summary(), "checks": label_findings.to_dict()} if labels else None,
            "track": walk_report,
            "cleaning": steps,
            "photos": [{"image": it.image, "source": it.source, "label_source": it.label_source,
                        "width": it.width, "height": it.height, "phash": f"{it.phash:016x}",
                        "dropped_by": it.dropped_by} for it in items],
        }
        write_reports(tmp, report, items)
    return report
