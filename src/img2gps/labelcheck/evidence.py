"""Evidence about each gallery photo's label from the other photos (no judgement here; see judge.py).

Per photo, at bounded cost (at most `topn + near_n` verifications, each pair counted once and cached):
* **verified views**: its `topn` retrieval neighbours (global embedding, faiss) and the `near_n` photos labelled
  nearest to it are verified (verification.local's matcher and GALLERY_FEATURES / GALLERY_VERIFY settings, as
  rerank, so the pair, pose and keypoint caches a fitted model filled are reused). A verified pair whose inlier
  rays fit a pure rotation (median angular residual below `rotation_deg`, localization/pose.relative_pose) was
  taken from one spot: a **same-spot** link. Any other verified pair sees an overlapping scene from two places:
  an **overlap**.
* **pose**: where the other photo's compass heading is known, the pair's relative pose gives the direction from
  that camera towards this one (a ray on an overlapping view), and verified views of several such photos
  triangulate this photo's camera (localization CameraLocator.locate, rerank's pose stage): a **pose fix**.
* **capture time**: the photo before and the photo after it from the same device on the same day, within
  `time_s` seconds (EXIF DateTimeOriginal, a labels.csv `time` column, else a phone-style file name such as
  `20251222_094711.jpg` or `IMG20251224101500.jpg`): a **time** link; a walker covers at most `walk_mps` m/s.
* **the phone's own accuracy**: EXIF GPSHPositioningError, metres, where the photo carries it.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..capture_time import consecutive, parse_time, time_from_name
from ..errors import PhotoError
from ..features.cache import FeatureCache
from ..localization.camera import CameraLocator, GalleryCameras, LocatorConfig, PoseCache
from ..localization.pose import intrinsics, view_constraint
from ..retrieval.database import CosineIndex, neighbours_within
from ..features.rootsift import FeatureConfig, KeypointCache, extract
from ..verification.local import (GALLERY_FEATURES, GALLERY_VERIFY, PairCache, VerifyConfig, fundamental_inliers,
                                  matched_points)

SAME_SPOT, OVERLAP, TIME = "same-spot", "overlap", "time"

@dataclass
class EvidenceConfig:
    embed: str = "lite0"  # global encoder of the retrieval shortlist (rerank's default: shared cache)
    # the verification stage's settings (rerank's defaults), so a fitted model's caches are reused
    fcfg: FeatureConfig = GALLERY_FEATURES
    vcfg: VerifyConfig = GALLERY_VERIFY
    topn: int = 8  # retrieval neighbours verified per photo
    near_n: int = 4  # photos labelled nearest to it, also verified
    near_m: float = 60.0  # ... when labelled within this many metres
    rotation_deg: float = 1.5  # median angular residual of a pure-rotation fit below this: same spot
    time_s: float = 300.0  # capture-time neighbours at most this far apart (seconds)
    pose_views: int = 6  # relative poses per photo for its pose fix (verified photos with a known heading)
    workers: int = 2  # verification threads (OpenCV and numpy release the GIL)


@dataclass
class Link:
    """One piece of evidence about photo i's label from photo j."""
    j: int
    kind: str  # SAME_SPOT | OVERLAP | TIME
    inliers: int = 0  # verified views
    parallax_deg: float = float("nan")  # verified views: the pure-rotation residual (NaN: no pose)
    dt_s: float = float("nan")  # time links: seconds between the two captures
    # overlapping views where either photo's heading is known: unit east/north direction from camera j towards
    # this photo's camera (localization.pose.view_constraint); None when unknown or the pair has no parallax
    ray_en: tuple | None = None


@dataclass
class PoseFixEvidence:
    """A photo's camera position from its verified views: en (2,) east/north metres, spread_m (RMS residual of
    the constraints, metres), views (photo indices whose relative pose agreed with the fix)."""
    en: np.ndarray
    spread_m: float
    views: list[int]


@dataclass
class Evidence:
    links: list[list[Link]]  # per photo
    retrieval: list[list[int]]  # per photo: its retrieval neighbours (best first)
    times: list[datetime | None]
    time_source: list[str]  # "exif" | "labels" | "file name" | "none"
    devices: list[str]
    h_error_m: np.ndarray  # (N,) EXIF GPSHPositioningError, NaN where absent
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): no visual evidence
    stats: dict = field(default_factory=dict)
    # per photo: where its verified views place its camera (localization CameraLocator: relative poses to verified
    # photos of known heading, triangulated), None where they do not fix a position
    fixes: list[PoseFixEvidence | None] = field(default_factory=list)


def name_family(name: str) -> str:
    """A device stand-in for photos without EXIF: the file-name pattern (each phone maker names files its way)."""
    stem = name.rsplit("/", 1)[-1]
    return "file names " + re.sub(r"\d", "9", stem.rsplit(".", 1)[0])


@dataclass
class CaptureMeta:
    times: list  # datetime | None per photo
    sources: list[str]  # where each time came from: "labels" | "exif" | "file name" | "none"
    devices: list[str]  # labels.csv device, else the EXIF model, else the file-name pattern
    h_error_m: np.ndarray  # (N,) EXIF GPSHPositioningError, NaN where absent
    focal35: np.ndarray  # (N,) 35 mm-equivalent focal length (labels.csv column, else EXIF), NaN where unknown
    heading: np.ndarray  # (N,) compass heading, degrees from true north (labels.csv, else EXIF), NaN where unknown


def capture_meta(ds) -> CaptureMeta:
    """Per photo, from labels.csv columns first, then the photo's EXIF header, then its file name."""
    from ..photos import read_meta

    t = ds.table
    n = len(ds)
    cam = ds.with_camera_meta().table  # heading and focal35 as rerank's fit reads them
    out = CaptureMeta([], [], [], np.full(n, np.nan), cam["focal35"].to_numpy(float), cam["heading"].to_numpy(float))
    for i, name in enumerate(ds.ids):
        meta = None
        try:
            meta = read_meta(ds.read(i))
        except (PhotoError, OSError):
            pass
        tm = parse_time(t.at[i, "time"]) if "time" in t.columns else None
        how = "labels" if tm is not None else "none"
        if tm is None and meta is not None and meta.time:
            tm, how = parse_time(meta.time), "exif"
        if tm is None:
            tm = time_from_name(name)
            how = "file name" if tm is not None else "none"
        dev = str(t.at[i, "device"]).strip() if "device" in t.columns and isinstance(t.at[i, "device"], str) else ""
        dev = dev or (meta.device if meta is not None and meta.device else "") or name_family(name)
        out.times.append(tm)
        out.sources.append(how)
        out.devices.append(dev)
        if meta is not None and meta.h_error_m is not None:
            out.h_error_m[i] = meta.h_error_m
    return out


def time_links(times, devices, max_s: float) -> list[list[Link]]:
    """Each photo's previous and next capture from the same device on the same day, within max_s seconds
    (ordered by capture_time's rule: zoned and zone-less times meet only when the device's zone is known)."""
    out: list[list[Link]] = [[] for _ in times]
    steps, _ = consecutive(times, devices)
    for a, b, dt in steps:
        if dt <= max_s:
            out[a].append(Link(b, TIME, dt_s=dt))
            out[b].append(Link(a, TIME, dt_s=dt))
    return out


def candidate_pairs(vectors: np.ndarray, en: np.ndarray, cfg: EvidenceConfig) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """(retrieval neighbours per photo, unordered pairs to verify): topn retrieval + near_n label neighbours each."""
    n = len(en)
    if n < 2:
        return [[] for _ in range(n)], []
    _, idx = CosineIndex(vectors).search_excluding(min(cfg.topn, n - 1))
    retrieval = [[int(j) for j in row if j >= 0] for row in idx]
    near = neighbours_within(en, cfg.near_m, cfg.near_n)
    pairs = set()
    for i in range(n):
        for j in retrieval[i] + near[i]:
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return retrieval, sorted(pairs)


def gather(ds, en: np.ndarray, cfg: EvidenceConfig | None = None, keys: list[str] | None = None,
           progress=None) -> Evidence:
    """Evidence for every photo of GeoDataset `ds` whose labels are `en` (N, 2) east/north metres.

    Features come from the per-photo caches (computed here for photos a fit has not seen); unreadable photos
    get no visual evidence and are listed in Evidence.unreadable. Cost: N x (topn + near_n) verifications at
    most, minus every pair the pair cache already holds, plus up to pose_views relative poses per photo with a
    verified view of a photo of known heading (pose cache shared with rerank).
    """
    from threadpoolctl import threadpool_limits

    from ..features.indexing import ExtractSpec, IndexingConfig, ensure_features

    cfg = cfg or EvidenceConfig()
    keys = keys or [ds.content_key(i) for i in range(len(ds))]
    unreadable: list[tuple[str, str]] = []
    ensure_features(ds, ExtractSpec(embed=cfg.embed, features=cfg.fcfg), IndexingConfig(), keys=keys,
                    label="label check", on_error=lambda name, why: unreadable.append((name, why)))
    bad = {n for n, _ in unreadable}
    ecache, kcache = FeatureCache(f"embed-{cfg.embed}"), KeypointCache(cfg.fcfg)
    ok = [i for i, n in enumerate(ds.ids) if n not in bad]
    vecs = np.stack([ecache.get(keys[i]) for i in ok]) if ok else np.zeros((0, 1), np.float32)
    ret_ok, pairs_ok = candidate_pairs(vecs, en[ok], cfg)
    retrieval: list[list[int]] = [[] for _ in range(len(ds))]
    for r, i in enumerate(ok):
        retrieval[i] = [ok[j] for j in ret_ok[r]]
    pairs = [(ok[a], ok[b]) for a, b in pairs_ok]

    cap = capture_meta(ds)
    pcache = PairCache(cfg.fcfg, cfg.vcfg)

    def kp(i: int):
        k = kcache.get(keys[i])
        return k if k is not None else extract(ds.open(i), cfg.fcfg)

    cams = GalleryCameras(np.asarray(en, float), cap.heading, cap.focal35, lambda j: kp(j).size)
    locator = CameraLocator(cams, LocatorConfig(max_views=cfg.pose_views))
    poses = PoseCache(locator.setting_key(cfg.fcfg.key))  # all keypoints: rerank's with gallery_keypoints=0
    counts = {"pairs": len(pairs), "matched": 0}

    def match(i: int):
        ki = kp(i)
        return lambda j: matched_points(ki, kp(j), cfg.vcfg)

    def focal(i: int) -> float | None:
        return float(cap.focal35[i]) if np.isfinite(cap.focal35[i]) else None

    def one(pair: tuple[int, int]) -> tuple[int, int, int, float]:
        a, b = pair
        n = pcache.get(keys[a], keys[b])
        if n is None:
            n = pcache.get(keys[b], keys[a])
        if n is None:
            n = fundamental_inliers(*match(a)(b), cfg.vcfg)
            pcache.put(keys[a], keys[b], n)
            counts["matched"] += 1
        if n < cfg.vcfg.min_inliers:
            return a, b, int(n), float("nan")
        rel = locator.relative(match(a), b, intrinsics(*kp(a).size, focal(a)), focal(a), poses, keys[a], keys)
        return a, b, int(n), float(rel.parallax_deg) if rel is not None else float("nan")

    def ray(q: int, g: int, rel=None) -> tuple | None:
        """Direction from camera g towards camera q, from their relative pose and g's compass heading."""
        if not np.isfinite(cap.heading[g]):
            return None
        rel = rel or locator.relative(match(q), g, intrinsics(*kp(q).size, focal(q)), focal(q), poses, keys[q], keys)
        if rel is None:
            return None
        v = view_constraint(rel, cams.en[g], float(cap.heading[g]), locator.cfg.pose)
        return None if v.ray_en is None else (float(v.ray_en[0]), float(v.ray_en[1]))

    links = time_links(cap.times, cap.devices, cfg.time_s)
    with threadpool_limits(1):
        results = _map(one, pairs, cfg.workers)
        for a, b, n, par in results:
            if n < cfg.vcfg.min_inliers:
                continue
            kind = SAME_SPOT if np.isfinite(par) and par < cfg.rotation_deg else OVERLAP
            ra, rb = (ray(a, b), ray(b, a)) if kind == OVERLAP else (None, None)
            # one known heading is enough: the ray from b towards a is the reverse of the one from a towards b
            ra, rb = ra or _reverse(rb), rb or _reverse(ra)
            links[a].append(Link(b, kind, n, par, ray_en=ra))
            links[b].append(Link(a, kind, n, par, ray_en=rb))

        def fix(i: int) -> PoseFixEvidence | None:
            verified = {l.j: l.inliers for l in links[i] if l.kind != TIME}
            if not any(np.isfinite(cap.heading[j]) for j in verified):
                return None
            est = locator.locate(match(i), kp(i).size, focal(i), verified, poses, keys[i], keys)
            if est.fix is None:
                return None
            return PoseFixEvidence(np.asarray(est.fix.en, float), float(est.fix.spread_m), list(est.views))

        fixes = _map(fix, range(len(ds)), cfg.workers)
    pcache.save()
    poses.save()
    counts["verified"] = sum(1 for r in results if r[2] >= cfg.vcfg.min_inliers)
    counts["same_spot"] = sum(1 for r in results if r[2] >= cfg.vcfg.min_inliers and np.isfinite(r[3])
                              and r[3] < cfg.rotation_deg)
    counts["pose_fixes"] = sum(f is not None for f in fixes)
    counts["rays"] = sum(1 for ls in links for l in ls if l.ray_en is not None)
    return Evidence(links, retrieval, cap.times, cap.sources, cap.devices, cap.h_error_m, unreadable, counts, fixes)


def _reverse(ray: tuple | None) -> tuple | None:
    return None if ray is None else (-ray[0], -ray[1])


def _map(fn, items, workers: int) -> list:
    items = list(items)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(fn, items, chunksize=16))
    return [fn(x) for x in items]
