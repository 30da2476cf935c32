"""rerank's query procedure, a function of (state, config, query): shortlist by global + VLAD similarity, verify
the shortlist geometrically, answer by the verified photos' consensus (or the camera pose), else a fallback.

The same `locate` runs for calibration's held-out gallery photos (calibrate.py) and for a real query (`answer`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Container, Sequence

import numpy as np

from ...geo import weighted_median_en
from ...answer_kinds import CONSENSUS, FALLBACK, KNN, OWN, POSE, RECOGNISED, SCENE
from ...localization.answers import at_gallery_spot, candidate
from ...localization.camera import CameraEstimate, PoseCache
from ...localization.consensus import consensus
from ...localization.difficulty import shortlist_spread
from ...localization.recognition import RecognitionRule
from ...localization.pose import copy_focal35, unknown_focal_margin_deg
from ...types import Neighbour, Prediction, Query
from ...features.rootsift import Keypoints, extract
from ...verification.local import fundamental_inliers, matched_points
from ...verification.queryprep import CROPS, centre_crops, find_photo, retry_views
from ...verification.second import SecondFeatures
from .config import RerankConfig
from .state import RerankState

PARALLAX_VIEWS = 1  # verified photos whose parallax is measured (the strongest decides the answer kind)


def verify_candidates(order: Sequence[int], verify: Callable[[int], int], near: Sequence[Sequence[int]],
                      cfg: RerankConfig, skip: int | Container[int] | None = None) -> dict[int, int]:
    """Verify shortlist candidates in order; each verified photo queues its untested spatial neighbours first.

    `skip`: gallery indices that must never be tested (during calibration: the held-out photo and its
    same-spot siblings); a single int is one index.
    """
    checked: dict[int, int] = {}
    if skip is None:
        skip = ()
    elif isinstance(skip, (int, np.integer)):
        skip = (int(skip),)
    shortlist = [int(j) for j in order if j not in skip][: cfg.topn]
    priority: list[int] = []
    stop = False
    while len(checked) < cfg.max_verify:
        if priority:
            j = priority.pop(0)
        elif shortlist and not stop:
            j = shortlist.pop(0)
        else:
            break
        if j in checked or j in skip:
            continue
        n = verify(j)
        checked[j] = n
        if n >= cfg.min_inliers:
            priority += [int(g) for g in near[j] if g not in checked and g not in skip and g not in priority]
            stop |= n >= cfg.stop_inliers
    return checked


def shortlist_median(score: np.ndarray, gallery_en: np.ndarray, k: int, temperature: float):
    """Fallback when nothing verifies: weighted geometric median of the top-k shortlist (softmax weights).

    A median lands where several look-alike candidates agree instead of between two far places, and the
    softmax keeps the best-ranked ones in charge; on penn91 leave-one-out this cut the error of unrecognised
    photos from ~70 m (3-NN mean) to ~59 m.
    """
    idx = np.argsort(-score)[:k]
    idx = idx[np.isfinite(score[idx])]
    w = np.exp((score[idx] - score[idx].max()) / temperature)
    pos = weighted_median_en(gallery_en[idx], w)
    spread = float(np.sqrt((w * ((gallery_en[idx] - pos) ** 2).sum(1)).sum() / w.sum()))
    return pos, spread, idx


def resolve(checked: dict[int, int], gallery_en: np.ndarray,
            cfg: RerankConfig) -> tuple[np.ndarray, float, list[int]] | None:
    """Verified candidates -> (position, spread, supporting gallery indices), or None when none verified."""
    ver = [(j, n) for j, n in checked.items() if n >= cfg.min_inliers]
    if not ver:
        return None
    idx = np.array([j for j, _ in ver])
    w = np.array([n for _, n in ver], float)
    c = consensus(gallery_en[idx], w, cfg.cluster_m)
    support = idx[c.support][np.argsort(-w[c.support])]
    return c.en, c.spread_m, [int(j) for j in support]


@dataclass
class Located:
    """One query's answer in the gallery's metric frame (what calibration and prediction both consume)."""
    kind: str  # one of answer_kinds.FOUND_KINDS: RECOGNISED (at a gallery camera's spot), SCENE, FALLBACK
    pos: np.ndarray  # (2,) east/north metres: the kind's own answer (consensus, or the fallback's)
    spread: float  # metres, input to the radius model
    idx: np.ndarray  # supporting gallery indices (verified, best first) or the fallback's neighbours
    sims: np.ndarray  # their scores (inliers when verified)
    checked: dict[int, int]  # every verified candidate -> inliers
    camera: CameraEstimate | None = None  # the query camera from the verified photos (verified answers only)
    knn: tuple | None = None  # knn's answer (pos, spread, idx, sims): the alternative for scene / fallback
    parallax: list[float] | None = None  # parallax (deg) with the strongest verified photos
    area: int = 0  # the gallery area (knn.plane) the answer lies in
    copy: bool = False  # the query is a copy of gallery photo idx[0] (localization/recognition.py)
    top: tuple[int, float] | None = None  # (gallery index, global similarity) of the top retrieved photo
    signals: dict = field(default_factory=dict)  # evidence the query shows (localization/difficulty.py)

    def with_signals(self, score: np.ndarray, en: np.ndarray, min_inliers: int,
                     sim_drop: float = float("nan")) -> "Located":
        """This answer with its difficulty signals set (top_sim, spread10, inliers, parallax, sim_drop: given, from
        KNNState.sim_drop)."""
        ver = [n for n in self.checked.values() if n >= min_inliers]
        self.signals = {"top_sim": self.top[1] if self.top else float("nan"), "sim_drop": float(sim_drop),
                        "spread10": shortlist_spread(score, en), "inliers": float(max(ver, default=0)),
                        "parallax": float(self.parallax[0]) if self.verified and self.parallax else float("nan")}
        return self

    @property
    def verified(self) -> bool:
        return self.kind != FALLBACK


def scores(state: RerankState, g_sims: np.ndarray, v_sims: np.ndarray | None) -> np.ndarray:
    """(N,) shortlist score: the z-scored global similarity plus the z-scored VLAD similarity (when used)."""
    z = state.zstats
    s = (g_sims - z[0][0]) / z[0][1]
    if v_sims is not None:
        s = s + (v_sims - z[1][0]) / z[1][1]
    return s


def verify_pair(state: RerankState, cfg: RerankConfig, kq: Keypoints, dq: np.ndarray, j: int,
                keep: dict | None = None, gallery: Callable[[int], Keypoints] | None = None) -> int:
    """Inliers between a query (keypoints, unit descriptors) and gallery photo j, read from the store (or from
    `gallery(j)`: the second matcher's features); with `keep`, a verified pair's matched points (query xy,
    gallery xy) are stored there for the pose stage."""
    v = cfg.verify_config
    pq, pj = matcher(state, cfg, kq, dq, {}, gallery)(j)
    n = fundamental_inliers(pq, pj, v)
    if keep is not None and n >= v.min_inliers:
        keep[j] = (pq, pj)
    return n


def matcher(state: RerankState, cfg: RerankConfig, kq: Keypoints, dq: np.ndarray, matched: dict,
            gallery: Callable[[int], Keypoints] | None = None) -> Callable[[int], tuple]:
    """match(j) -> (query xy, gallery xy) of the mutual matches with gallery photo j (kept in `matched`); the
    gallery keypoints come from the store, or from `gallery(j)` when given."""
    v = cfg.verify_config

    def match(j: int):
        if j not in matched:
            kj = state.store.get(j) if gallery is None else gallery(j)
            dj = state.store.unit_desc(j) if gallery is None else kj.unit_desc()
            matched[j] = matched_points(kq, kj, v, da=dq, db=dj)
        return matched[j]
    return match


def camera(state: RerankState, cfg: RerankConfig, kq: Keypoints, dq: np.ndarray, focal35, checked: dict[int, int],
           matched: dict, cache: PoseCache | None = None, key: str | None = None,
           poses: dict | None = None, gallery: Callable[[int], Keypoints] | None = None) -> CameraEstimate | None:
    """The query camera from the verified photos (None when no gallery photo has a known heading). poses: this
    query's relative poses by gallery index, shared with `parallax` so each pair's pose is computed once."""
    if state.cameras.n_with_heading == 0:
        return None
    ver = {j: k for j, k in checked.items() if k >= cfg.min_inliers}
    f = float(focal35) if focal35 is not None and np.isfinite(focal35) else None
    return state.locator.locate(matcher(state, cfg, kq, dq, matched, gallery), kq.size, f, ver, cache, key, state.keys,
                                poses)


def parallax(state: RerankState, cfg: RerankConfig, kq: Keypoints, dq: np.ndarray, focal35,
             verified: dict[int, int], matched: dict, cache: PoseCache | None = None,
             key: str | None = None, poses: dict | None = None,
             gallery: Callable[[int], Keypoints] | None = None) -> list[float]:
    """Parallax (deg) of the query with its strongest verified photo(s) (localization/camera.py)."""
    f = float(focal35) if focal35 is not None and np.isfinite(focal35) else None
    return state.locator.parallax(matcher(state, cfg, kq, dq, matched, gallery), kq.size, f, verified, PARALLAX_VIEWS,
                                  cache, key, state.keys, poses)


def locate(state: RerankState, cfg: RerankConfig, score: np.ndarray, g_sims: np.ndarray, q: np.ndarray,
           verify: Callable[[int], int], knn_answer: Callable[[int], tuple],
           skip: int | Container[int] | None = None,
           camera_of: Callable[[dict[int, int]], CameraEstimate | None] | None = None,
           parallax_of: Callable[[dict[int, int]], list[float]] | None = None,
           rules: Sequence[RecognitionRule] | None = None) -> Located:
    """The query procedure shared by calibration (held-out gallery photo) and prediction.

    score: (N,) shortlist score over the gallery; g_sims: (N,) global similarities (fallback neighbour
    scores); q: (D,) the query's global vector (the area of an unverified answer); verify(j) -> inliers with
    gallery photo j; knn_answer(area) -> (pos, spread, idx, sims) from that area's photos; camera_of(checked) -> the query camera from the verified photos; parallax_of(verified) ->
    parallax (deg) with the strongest verified photos, which decides recognised against scene
    (localization/answers.py); rules: the recognition rules of each area (localization/recognition.py; default:
    cfg's spot rule, no copies). A verified copy of a gallery photo is recognised at that photo's position.
    The answer lies in one area of the gallery (answer_area): only that area's verified photos, shortlist, top
    photo and knn neighbours are used.
    """
    left_out = ~np.isfinite(score)  # calibration: the photos the hold-out removed (sim_drop ignores them)
    left_out = left_out if left_out.any() else None  # a query: sim_drop reads the stored references
    checked = verify_candidates(np.argsort(-score), verify, state.near, cfg, skip=skip)
    area, checked = answer_area(state, cfg, checked, score, g_sims, q)
    rule = rules[area] if rules else RecognitionRule(cfg.rec_parallax, cfg.rec_inliers, copy_sim=2.0)
    if state.knn.plane.n_areas > 1:
        score = np.where(state.knn.plane.label == area, score, -np.inf)  # this area's shortlist only
    allowed = np.where(np.isfinite(score), g_sims, -np.inf)
    top = (int(np.argmax(allowed)), float(np.max(allowed))) if len(allowed) else None
    knn = knn_answer(area)
    drop = state.knn.sim_drop(knn[3], knn[2], cfg.k, left_out)
    if top is not None and rule.is_copy(top[1]):
        n = checked[top[0]] if top[0] in checked else verify(top[0])
        if n >= cfg.min_inliers:
            checked = {**checked, top[0]: n}
            return Located(RECOGNISED, state.en[top[0]].copy(), 0.0, np.array([top[0]]), np.array([float(n)]),
                           checked, camera_of(checked) if camera_of is not None else None, knn, [0.0], area=area,
                           copy=True, top=top).with_signals(score, state.en, cfg.min_inliers, drop)
    res = resolve(checked, state.en, cfg)
    if res is not None:
        pos, spread, support = res
        ver = {j: n for j, n in checked.items() if n >= cfg.min_inliers}
        par = parallax_of(ver) if parallax_of is not None else []
        strongest = sorted(ver.values(), reverse=True)
        kind = RECOGNISED if at_gallery_spot(par, strongest, rule.max_parallax_deg, rule.min_inliers) else SCENE
        return Located(kind, pos, spread, np.array(support, int), np.array([checked[j] for j in support], float),
                       checked, camera_of(checked) if camera_of is not None else None, knn, par, area=area,
                       top=top).with_signals(score, state.en, cfg.min_inliers, drop)
    if cfg.fallback == KNN:
        pos, spread, idx, sims = knn
    else:
        pos, spread, idx = shortlist_median(score, state.en, cfg.fallback_k, cfg.fallback_t)
        sims = g_sims[idx]
    return Located(FALLBACK, pos, spread, idx, sims, checked, None, knn, [], area=area, top=top).with_signals(
        score, state.en, cfg.min_inliers, drop)


def answer_area(state: RerankState, cfg: RerankConfig, checked: dict[int, int], score: np.ndarray,
                g_sims: np.ndarray, q: np.ndarray) -> tuple[int, dict[int, int]]:
    """The area of a query's best evidence: its most-inlier verified photo's, else (nothing verified) the area
    knn chooses from its global vector q (D,) and similarities (KNNState.choose_area; score -inf = left out); and
    the verified candidates within that area (evidence from another area is dropped, never averaged in).
    Unverified, the shortlist score picks the wrong campus more often than the global similarity: on penn91 +
    bgu-west (first views of 78 held-out photos) 8 of 24 unverified photos against 1."""
    label = state.knn.plane.label
    if state.knn.plane.n_areas == 1:
        return 0, checked
    ver = [j for j, n in checked.items() if n >= cfg.min_inliers]
    if ver:
        area = int(label[max(ver, key=lambda j: checked[j])])
    else:
        area = state.knn.choose_area(q, np.where(np.isfinite(score), g_sims, -np.inf))
    return area, {j: n for j, n in checked.items() if label[j] == area}


def second_features(state: RerankState, cfg: RerankConfig) -> SecondFeatures:
    """cfg.matcher2's features (verification/second.py), made on first use and kept in the state."""
    if state.second is None:
        state.second = SecondFeatures.xfeat(state.photos, lambda j: max(state.store.get(j).size), cfg.max_side,
                                            cfg.cache_mb * 2**20)
    return state.second


def gallery_side(state: RerankState, sample: int = 16) -> int:
    """The gallery's typical long side (px) at feature scale, the median over a few evenly spread photos: small
    queries are enlarged to it before their local features are extracted."""
    n = len(state.store)
    idx = np.linspace(0, n - 1, min(n, sample)).astype(int) if n else []
    return int(np.median([max(state.store.get(int(j)).size) for j in idx])) if len(idx) else 0


def view(state: RerankState, cfg: RerankConfig, image, focal35: float | None, top_k: int,
         second: bool = False, found: bool = False) -> tuple[Located, np.ndarray]:
    """One view of a query (an RGB PIL image) through the whole procedure: (its answer, its (N,) shortlist score).
    second: when RootSIFT verifies nothing, the same shortlist is verified again with cfg.matcher2's features.
    found: the image is the photo found inside a screenshot (queryprep.find_photo), often a scaled crop of the
    photo it shows; without a focal length it then takes its strongest verified photo's field of view when it is
    a scaled copy of that photo (pose.copy_focal35)."""
    q = np.asarray(state.encoder.embed([image]), np.float32)  # shrunk exactly as the gallery photos were
    kq = extract(image, cfg.feature_config)
    dq = kq.unit_desc(True)
    g_sims = state.knn.index.similarities(q)
    v_sims = state.vlad @ state.codebook.encode(dq) if state.vlad is not None else None
    score = scores(state, g_sims, v_sims)

    def knn_answer(area: int):  # from the same similarities as the shortlist: one pass over the gallery
        return state.knn.locate(q[0], cfg.k, "mean", top_k, area, sims=g_sims)

    def run(kq: Keypoints, dq: np.ndarray, gallery=None) -> Located:
        matched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        poses: dict[int, object] = {}  # this view's relative poses: the strongest pair's is computed once
        focal: list = []

        def f35(checked: dict[int, int]):  # a copy of its strongest verified photo has that one's field of view
            if focal35 is None and found and not focal:
                ver = {j: n for j, n in checked.items() if n >= cfg.min_inliers}
                j = max(ver, key=ver.get) if ver else None
                focal.append(None if j is None else copy_focal35(*matched[j], kq.size, state.store.get(j).size,
                                                                   state.cameras.focal35[j]))
            return focal[0] if focal35 is None and found else focal35
        return locate(state, cfg, score, g_sims, q[0], lambda j: verify_pair(state, cfg, kq, dq, j, matched, gallery),
                      knn_answer, rules=[cal.rule for cal in state.calibrations] or None,
                      camera_of=lambda ch: camera(state, cfg, kq, dq, f35(ch), ch, matched, poses=poses, gallery=gallery),
                      parallax_of=lambda ver: parallax(state, cfg, kq, dq, f35(ver), ver, matched, poses=poses,
                                                       gallery=gallery))
    loc = run(kq, dq)
    if second and not loc.verified and cfg.matcher2 != "none":
        f2 = second_features(state, cfg)
        k2 = f2.query(image, gallery_side(state))  # at the gallery's scale
        loc = run(k2, k2.unit_desc(), f2.get)
    return loc, score


def best_crop(state: RerankState, cfg: RerankConfig, image, focal35: float | None,
              top_k: int) -> tuple[Located, str] | None:
    """The best verified centre crop of a query (queryprep.centre_crops): (its answer, its view name), or
    None when no crop verifies. Best: recognised before scene, then the most inliers with one gallery photo. A
    crop keeping f of each side has an f times narrower field of view, so its 35 mm focal length is focal35 / f."""
    best, rank = None, None
    for name, f, reg in centre_crops(image):
        loc, _ = view(state, cfg, image.crop(reg.as_tuple()), focal35 / f if focal35 else None, top_k)
        if not loc.verified:
            continue
        r = (loc.kind == RECOGNISED, max(loc.checked.values()))
        if rank is None or r > rank:
            best, rank = (loc, name), r
    return best


def answer(state: RerankState, cfg: RerankConfig, query: Query, top_k: int, n: int, gallery,
           method: str) -> tuple[Prediction, np.ndarray]:
    """One query -> (Prediction, the retrieval stage's top-n gallery rows, before verification).

    gallery: the model's gallery table (image, Latitude, Longitude); method: the spec the Prediction names.
    The answer's kind (localization/answers.py) sets `source`, `recognised` and which calibrated radius applies.
    With cfg.prep (docs/shared-photos.md): the photo found inside a screenshot or padded image is located instead
    of the whole image (Prediction.query_region), and when nothing verifies, other views are tried in turn; the
    first that verifies answers (Prediction.query_view); then, with "crops", the best verified centre crop."""
    image = query.image()
    steps = cfg.prep_steps
    region = find_photo(image) if "border" in steps else None
    if region is not None:  # a screenshot of a post or a padded image: locate the photo inside it
        image = image.crop(region.as_tuple())
    loc, score = view(state, cfg, image, query.focal35, top_k, second=True, found=region is not None)
    ranked = np.argsort(-score)[:n]  # the retrieval stage's order (image as given), before verification
    shown = None
    if not loc.verified and steps:  # the cascade: other views only for a query that did not verify
        # no focal length = no camera metadata: a shared photo, whose orientation tag may be lost too
        for name, alt in retry_views(image, gallery_side(state), query.focal35 is None, steps):
            alt_loc, _ = view(state, cfg, alt, query.focal35, top_k)
            if alt_loc.verified:  # a view's answer is kept only when it verifies
                loc, shown = alt_loc, name
                break
    if not loc.verified and CROPS in steps:  # query_view names the crop (of the photo found, with border)
        crop = best_crop(state, cfg, image, query.focal35, top_k)
        if crop is not None:
            loc, shown = crop
    extra = {"query_region": region.as_tuple() if region is not None else None, "query_view": shown}
    cal = state.calibrations[loc.area]
    heading_radius = cal.heading_radius  # calibrated on gallery photos, whose focal lengths are known
    known = query.focal35 is not None and np.isfinite(query.focal35) and query.focal35 > 0
    if heading_radius is not None and not known:  # an assumed focal length (pose.py): widened honestly
        heading_radius += unknown_focal_margin_deg(*image.size)

    def neighbour(j: int, s: float) -> Neighbour:
        return Neighbour(str(gallery.at[int(j), "image"]), float(gallery.at[int(j), "Latitude"]),
                         float(gallery.at[int(j), "Longitude"]), float(s))

    def verified_neighbours(support: list[int]) -> list[Neighbour]:
        # every verified photo, best (most inliers) first; ties: the answer's own support (pose views, consensus) first
        checked = loc.checked
        others = [j for j in checked if checked[j] >= cfg.min_inliers and j not in support]
        return [neighbour(j, checked[j]) for j in sorted(support + others, key=lambda j: -checked[j])][:top_k]

    def prediction(pos, spread: float, kind: str, recognised: bool, neigh: list[Neighbour],
                   heading: float | None) -> Prediction:
        lat, lon = state.knn.plane.to_latlon(pos)
        group = cal.bins.group(kind, loc.signals)  # the answer kind's difficulty bin (localization/difficulty.py)
        r = cal.radii.radius(group, spread)
        return Prediction(float(lat), float(lon), r, cal.radii.confidence(group, r), recognised, method, neigh,
                          chance_25m=cal.radii.chance(group, r), difficulty=group,
                          heading_deg=heading, heading_radius_deg=heading_radius if heading is not None else None,
                          source=kind, **extra)

    est = loc.camera  # the heading is reported for every verified answer, even with pose=off
    heading = est.heading_deg if est is not None else None
    if loc.kind == RECOGNISED:
        pos, spread, kind, recognised = loc.pos, loc.spread, CONSENSUS, True
        support = [int(j) for j in loc.idx]
        if est is not None and est.fix is not None and cal.use_pose and not loc.copy:
            pos, spread, kind, recognised = est.fix.en, est.fix.spread_m, POSE, cal.pose_recognised
            support = list(dict.fromkeys(est.views + support))
        return prediction(pos, spread, kind, recognised, verified_neighbours(support), heading), ranked
    choice = cal.answer_choice.get(loc.kind, OWN)
    pos, spread = candidate(choice, (loc.pos, loc.spread), loc.knn[:2])
    if loc.kind == SCENE:
        return prediction(pos, spread, SCENE, False, verified_neighbours([int(j) for j in loc.idx]), heading), ranked
    idx, sims = (loc.knn[2], loc.knn[3]) if choice == KNN else (loc.idx, loc.sims)
    neigh = [neighbour(j, s) for j, s in list(zip(idx, sims))[:top_k]]
    return prediction(pos, spread, FALLBACK, False, neigh, None), ranked
