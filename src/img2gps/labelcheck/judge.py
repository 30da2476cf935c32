"""Evidence -> a label score, a verdict (ok / doubtful / wrong) with its reason, and a proposed position.

Pure functions on east/north metres (no I/O). Two steps:

1. **Capture sessions** (one device on one day). A session whose photos are verified as the same spot as
   photos of *other* sessions, with labels offset by one common vector (coordinate-wise median of the offsets of
   same-spot links, or of same-spot and overlap links, whichever has the smaller standard error; at least
   `session_min_links` links from `session_min_photos` photos, |median| >= `session_m` and >= 3
   robust standard errors; a photo whose pose fix rests only on other sessions' photos adds label - fix as one
   same-spot offset), was shifted as a whole (the paper's "GPS drift dates"): every photo of it is
   `wrong`, proposed = label - offset. Inside the session the photos agree with each other, so the per-photo
   step alone could not see it.
2. **Per photo**, on the session-corrected labels: each link j says where photo i should be. A link *agrees*
   when |x_i - x_j| <= its tolerance: `tol_m` (from the data: 3 x the median label distance of same-spot
   pairs, within [tol_min_m, tol_max_m]; wider where the phones reported a worse accuracy) for a same-spot
   link, + `view_m` for an overlapping view (when the other camera's heading gives a ray from the relative
   pose, the label must instead lie within `ray_deg` of that ray, `agrees`), + `walk_mps` x dt for a
   capture-time neighbour. A **pose fix** (the camera triangulated from verified views of known heading,
   evidence.PoseFixEvidence) speaks for the views it rests on, as one position with their weight. Agreeing
   evidence (plus the label's own prior weight 1) is weighed against the densest cluster of disagreeing
   evidence (localization.consensus); each link is weighted by its kind (link_weight) and by how well its photo is itself
   corroborated by others, so of two photos that contradict each other only the one the rest disagree with
   is blamed. score = own / (own + other), in [0, 1]. `wrong` when the other side weighs at least `wrong_ratio`
   times as much and at least `wrong_min`; `doubtful` when it weighs at least as much as the own side, or when the
   phone reported an accuracy worse than `doubt_h_error_m`. The proposed position is the pose fix when it is in
   the disagreeing cluster, else the weighted mean of that cluster's same-spot and time evidence (overlap only
   when nothing else), with its uncertainty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..capture_time import session_of
from ..localization.consensus import consensus
from ..outputs import counted
from .evidence import OVERLAP, SAME_SPOT, TIME, Evidence, Link

OK, DOUBTFUL, WRONG = "ok", "doubtful", "wrong"
KIND_WEIGHT = {SAME_SPOT: 1.0, OVERLAP: 0.5}  # time links: link_weight
POSE = "pose fix"  # the camera position triangulated from verified views (evidence.PoseFixEvidence)


@dataclass
class JudgeConfig:
    tol_min_m: float = 12.0  # same-spot tolerance bounds (the tolerance itself comes from the data)
    tol_max_m: float = 35.0
    tol_factor: float = 3.0  # x the median label distance of same-spot pairs
    view_m: float = 40.0  # extra tolerance of an overlapping view (the two cameras stood apart)
    walk_mps: float = 2.0  # a brisk walk between two captures
    wrong_ratio: float = 1.4  # other side >= this x own side ...
    wrong_min: float = 1.5  # ... and >= this much evidence: wrong
    doubt_h_error_m: float = 30.0  # the phone itself reported a worse accuracy: doubtful
    session_m: float = 15.0  # a session offset at least this large ...
    session_min_links: int = 8  # ... from at least this many cross-session links (same-spot, overlap, pose fix)
    session_min_photos: int = 3  # ... of at least this many of the session's photos
    pose_min_weight: float = 1.0  # a pose fix weighs at least this (else: the weights of the views it rests on)
    ray_deg: float = 15.0  # an overlapping view's ray (relative pose + the other camera's compass heading) +- this
    ray_range_m: float = 150.0  # ... and the two cameras at most this far apart (pose.PoseConfig.max_range_m)
    ray_weight: float = 1.0  # evidence weight of an overlapping view with a ray
    far_gain: float = 2.0  # a disagreeing view d m away with tolerance t weighs min(far_gain, d / t) x its weight


@dataclass
class Verdict:
    verdict: str  # ok | doubtful | wrong
    score: float | None  # label score in [0, 1]; None when nothing could check the label
    reason: str  # in words
    proposed_en: np.ndarray | None = None  # (2,) east/north metres
    proposed_sigma_m: float | None = None  # its uncertainty (1 sigma, metres)
    evidence: dict = field(default_factory=dict)  # counts of links by kind, agreeing / disagreeing


@dataclass
class SessionShift:
    session: str  # "YYYY-MM-DD device"
    photos: list[int]
    offset_en: np.ndarray  # (2,) label - truth, metres
    se_m: float  # robust standard error of the offset
    links: int
    gain: float = 0.0  # metres of cross-session disagreement that undoing the offset explains


def tolerance_m(en: np.ndarray, ev: Evidence, cfg: JudgeConfig) -> float:
    """Same-spot tolerance from the data: tol_factor x the median label distance of same-spot pairs."""
    d = [float(np.linalg.norm(en[i] - en[l.j])) for i, ls in enumerate(ev.links) for l in ls
         if l.kind == SAME_SPOT and l.j > i]
    med = float(np.median(d)) if d else cfg.tol_min_m / cfg.tol_factor
    return float(np.clip(cfg.tol_factor * med, cfg.tol_min_m, cfg.tol_max_m))


def link_weight(link: Link, tol: float, cfg: JudgeConfig) -> float:
    """Evidence weight of one link: 1 for a same-spot view, 0.5 for an overlapping one (`ray_weight` when its
    relative pose gives a ray: it then says where, not only "near"); a capture-time neighbour weighs
    min(1, tol / (walk_mps x dt)), so a neighbour minutes away (who could have walked anywhere) hardly votes
    for the label (against it: time_miss_weight)."""
    if link.kind == TIME:
        return min(1.0, tol / max(cfg.walk_mps * link.dt_s, 1e-9))
    if link.kind == OVERLAP and link.ray_en is not None:
        return cfg.ray_weight
    return KIND_WEIGHT[link.kind]


def time_miss_weight(d: float, link: Link, tol: float, herr2: np.ndarray, cfg: JudgeConfig) -> float:
    """Weight of a capture-time neighbour d metres away that disagrees (d beyond the walking reach tol +
    walk_mps x dt): its plain link_weight, raised towards 1 as d - reach grows to `tol` beyond the reach."""
    reach = tol + cfg.walk_mps * link.dt_s
    return float(max(link_weight(link, tol, cfg), min(1.0, (d - reach) / tol)))


def _pair_tol(i: int, link: Link, tol: float, herr: np.ndarray, cfg: JudgeConfig) -> float:
    hi, hj = herr[i], herr[link.j]
    t = tol
    # the phones' own 1-sigma figures, two of them; not for capture-time neighbours: one phone's fixes seconds
    # apart share most of their error (same satellites, same surroundings)
    if link.kind != TIME and np.isfinite(hi) and np.isfinite(hj):
        t = max(t, 1.5 * float(np.hypot(hi, hj)))
    if link.kind == OVERLAP:
        t += cfg.view_m
    elif link.kind == TIME:
        t += cfg.walk_mps * link.dt_s
    return t


def _ray_miss_m(d: np.ndarray, ray: np.ndarray, cfg: JudgeConfig) -> float:
    """How far offset d (2,) = x_i - x_j lies outside the ray's wedge (metres; 0 inside): the ray from camera j
    towards camera i, widened by ray_deg either side (compass and pose error)."""
    s = float(d @ ray)
    if s <= 0:
        return float(np.linalg.norm(d))
    perp = abs(float(d[0] * ray[1] - d[1] * ray[0]))
    return max(0.0, perp - s * np.tan(np.radians(cfg.ray_deg)))


def agrees(i: int, link: Link, en: np.ndarray, tol: float, herr: np.ndarray, cfg: JudgeConfig) -> bool:
    """Does `link` agree with photo i's label? Within the pair tolerance; an overlapping view whose relative pose
    gives a ray (the other camera's heading known) must also have the label near that ray and within view range."""
    d = np.asarray(en[i] - en[link.j], float)
    t = _pair_tol(i, link, tol, herr, cfg)
    if link.kind == OVERLAP and link.ray_en is not None:
        base = t - cfg.view_m
        near_enough = float(np.linalg.norm(d)) <= base + cfg.ray_range_m
        return near_enough and _ray_miss_m(d, np.asarray(link.ray_en), cfg) <= base
    return float(np.linalg.norm(d)) <= t


def _fix_of(i: int, ev: Evidence):
    return ev.fixes[i] if ev.fixes else None


def _median_offset(offs: list) -> tuple[np.ndarray, float]:
    o = np.array(offs)
    med = np.median(o, axis=0)
    mad = 1.4826 * np.median(np.abs(o - med), axis=0)
    return med, float(np.hypot(*(1.253 * mad / np.sqrt(len(o)))))  # a median's standard error


def _session_offset(en, ev, sess, s, members, cfg) -> SessionShift | None:
    offs, who = {SAME_SPOT: [], OVERLAP: []}, {SAME_SPOT: set(), OVERLAP: set()}
    for i in members:
        fx = _fix_of(i, ev)
        if fx is not None and fx.views and all(sess[j] != s for j in fx.views):
            offs[SAME_SPOT].append(en[i] - fx.en)  # a camera placed by other sessions' photos: the offset itself
            who[SAME_SPOT].add(i)
        for l in ev.links[i]:
            if l.kind in (SAME_SPOT, OVERLAP) and sess[l.j] != s and not (fx is not None and l.j in fx.views):
                offs[l.kind].append(en[i] - en[l.j])
                who[l.kind].add(i)
    # same-spot offsets measure the shift itself; overlapping views add the distance between the two cameras
    # but are many more: the estimate with the smaller standard error is used
    best = None
    for o, w in ((offs[SAME_SPOT], who[SAME_SPOT]), (offs[SAME_SPOT] + offs[OVERLAP], who[SAME_SPOT] | who[OVERLAP])):
        if len(o) >= cfg.session_min_links and len(w) >= cfg.session_min_photos:
            med, se = _median_offset(o)
            if best is None or se < best[1]:
                best = (med, se, o)
    if best is None:
        return None
    med, se, o = best
    mag = float(np.linalg.norm(med))
    if mag >= cfg.session_m and mag >= 3 * se:
        o = np.array(o)
        # what undoing it would explain: the drop in total cross-session label disagreement
        gain = float(np.linalg.norm(o, axis=1).sum() - np.linalg.norm(o - med, axis=1).sum())
        return SessionShift(s, list(members), med, se, len(o), gain)
    return None


def session_shifts(en: np.ndarray, ev: Evidence, cfg: JudgeConfig) -> list[SessionShift]:
    """Sessions (device + day) whose labels are offset as a whole from the verified photos of other sessions.

    Two sessions offset from each other look alike from either side, so sessions are undone one at a time,
    the one whose correction explains the most cross-session disagreement first (ties: the smaller session,
    the larger one being the reference), and the offsets re-measured after each.
    """
    sess = [session_of(t, d) for t, d in zip(ev.times, ev.devices)]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sess):
        if s is not None:
            groups.setdefault(s, []).append(i)
    en = np.array(en, float)
    out: list[SessionShift] = []
    while True:
        cands = [c for s, m in sorted(groups.items()) if s not in {x.session for x in out}
                 and cfg.session_min_photos <= len(m) < len(en)
                 for c in [_session_offset(en, ev, sess, s, m, cfg)] if c is not None]
        if not cands:
            return out
        best = max(cands, key=lambda c: (round(c.gain, 6), -len(c.photos)))
        en[best.photos] -= best.offset_en
        out.append(best)


def _seen_agreeing(j: int, en, ev: Evidence, tol: float, herr, cfg: JudgeConfig, exclude: int, wrong) -> bool:
    """Is photo j's label confirmed by a verified view (not a time neighbour) of a photo other than `exclude`?"""
    if wrong is not None and wrong[j]:
        return False
    return any(l.kind != TIME and l.j != exclude and agrees(j, l, en, tol, herr, cfg) for l in ev.links[j])


def _agree(n: int) -> str:
    return f"{counted(n, 'piece', 'pieces')} of evidence {'agrees' if n == 1 else 'agree'}"


def _trust(i: int, en: np.ndarray, ev: Evidence, tol: float, herr: np.ndarray, cfg: JudgeConfig,
           exclude: int, wrong: np.ndarray | None) -> float:
    """How far photo i's own label is corroborated by its links other than `exclude` (1 .. 2; 0.2 if judged wrong)."""
    if wrong is not None and wrong[i]:
        return 0.2
    agree = sum(link_weight(l, tol, cfg) for l in ev.links[i]
                if l.j != exclude and agrees(i, l, en, tol, herr, cfg))
    return 1.0 + min(0.5 * agree, 1.0)


class _Item(NamedTuple):
    """One piece of evidence about photo i's label."""
    kind: str  # SAME_SPOT | OVERLAP | TIME | POSE
    place: np.ndarray  # (2,) east/north metres where it puts photo i
    weight: float
    agrees: bool  # with photo i's label (its own rule: tolerance, ray)
    extra_m: float  # how uncertain `place` is beyond the label noise (metres)
    reach_m: float  # how far from `place` photo i may be and still fit this evidence (metres)
    corroborated: bool  # the evidence's own photo is confirmed by another verified view


def judge_photo(i: int, en: np.ndarray, ev: Evidence, tol: float, cfg: JudgeConfig,
                wrong: np.ndarray | None = None) -> Verdict:
    herr = ev.h_error_m
    links = ev.links[i]
    kinds = {k: sum(1 for l in links if l.kind == k) for k in (SAME_SPOT, OVERLAP, TIME)}
    phone = ""
    if np.isfinite(herr[i]) and herr[i] > cfg.doubt_h_error_m:
        phone = f"the phone reported its position accurate to only {herr[i]:.0f} m"
    if not links:
        if phone:
            return Verdict(DOUBTFUL, None, phone + "; no other photo confirms it", evidence=kinds)
        return Verdict(OK, None, "not checked: no verified view of the same scene and no capture-time neighbour",
                       evidence=kinds)
    items: list[_Item] = []
    fx = _fix_of(i, ev)
    in_fix = set(fx.views) if fx is not None else set()
    w_fix = 0.0
    for l in links:
        trust = _trust(l.j, en, ev, tol, herr, cfg, i, wrong)
        w = link_weight(l, tol, cfg) * trust
        ok = agrees(i, l, en, tol, herr, cfg)
        if l.kind == TIME and not ok:  # how far out of walking reach: 150 m in 27 s is no near miss
            w = time_miss_weight(float(np.linalg.norm(en[i] - en[l.j])), l, tol, herr[[i, l.j]], cfg) * trust
        if l.kind != TIME and l.j in in_fix:
            w_fix += w  # the views that triangulated the camera speak through its position (below)
            continue
        extra = cfg.view_m if l.kind == OVERLAP else cfg.walk_mps * l.dt_s if l.kind == TIME else 0.0
        items.append(_Item(l.kind, en[l.j], w, ok, extra,
                           _pair_tol(i, l, tol, herr, cfg), _seen_agreeing(l.j, en, ev, tol, herr, cfg, i, wrong)))
    if fx is not None:
        # a position, not only "these photos agree": as precise as the labels it rests on and its own residuals
        hv = np.nanmean(herr[fx.views]) if np.isfinite(herr[fx.views]).any() else np.nan
        t = tol if not (np.isfinite(herr[i]) and np.isfinite(hv)) else max(tol, 1.5 * float(np.hypot(herr[i], hv)))
        t += fx.spread_m
        items.append(_Item(POSE, fx.en, max(w_fix, cfg.pose_min_weight), float(np.linalg.norm(en[i] - fx.en)) <= t,
                           fx.spread_m, t, False))
    own, dis = 1.0, []
    for it in items:
        if it.agrees:
            own += it.weight
        elif it.kind == TIME or not it.corroborated:
            dis.append(it)
        else:  # a verified view of a photo that others corroborate, far outside its own tolerance, is no edge
            # case: it weighs up to far_gain x more (two photos that only contradict each other stay doubtful)
            far = float(np.linalg.norm(en[i] - it.place)) / it.reach_m
            dis.append(it._replace(weight=it.weight * float(np.clip(far, 1.0, cfg.far_gain))))
    n_agree = len(items) - len(dis)
    ev_d = {**kinds, "pose_fix": int(fx is not None), "agree": n_agree, "disagree": len(dis)}
    if not dis:
        if phone:
            return Verdict(DOUBTFUL, 1.0, phone + f"; {_agree(n_agree)} with it", evidence=ev_d)
        return Verdict(OK, 1.0, f"{_agree(n_agree)} with the label", evidence=ev_d)
    pts = np.array([it.place for it in dis])
    # where the evidence places the photo: each piece counts by its weight and how sharply it places (a neighbour
    # 5 s away says "here"; one 60 s away, "within 130 m of here")
    ws = np.array([it.weight * tol / (tol + it.extra_m) for it in dis])
    c = consensus(pts, ws, tol)
    in_seed = set(int(k) for k in c.support)
    seed = [dis[k] for k in sorted(in_seed)]
    # the proposal rests on a pose fix when there is one, else on same-spot and time evidence; overlapping
    # views only when there is nothing else
    strong = [it for it in seed if it.kind == POSE] or [it for it in seed if it.kind != OVERLAP] or seed
    p = np.array([it.place for it in strong])
    pw = np.array([it.weight * tol / (tol + it.extra_m) for it in strong])
    prop = (p * pw[:, None]).sum(0) / pw.sum()
    # the other side: every disagreeing piece of evidence compatible with the proposal, each within its own
    # tolerance (an overlapping view or a time neighbour a minute away says only "within tens of metres")
    members = [it for k, it in enumerate(dis) if k in in_seed or np.linalg.norm(prop - it.place) <= it.reach_m]
    other = float(sum(it.weight for it in members))
    score = own / (own + other)
    spread = float(np.sqrt((pw * ((p - prop) ** 2).sum(1)).sum() / pw.sum()))
    extra = max(it.extra_m for it in strong)
    sigma = float(np.sqrt(spread ** 2 + (tol / cfg.tol_factor) ** 2 / len(strong) + (extra / 2) ** 2))
    dist = float(np.linalg.norm(prop - en[i]))
    what = ", ".join(f"{sum(1 for it in members if it.kind == k)} {k}" for k in (SAME_SPOT, OVERLAP, TIME, POSE)
                     if any(it.kind == k for it in members))
    said = f"other photos ({what}) place it {dist:.0f} m away; {_agree(n_agree)} with the label"
    if other >= cfg.wrong_ratio * own and other >= cfg.wrong_min:
        return Verdict(WRONG, score, said, prop, sigma, ev_d)
    if other >= own or phone:
        return Verdict(DOUBTFUL, score, said + (f"; {phone}" if phone else ""), prop, sigma, ev_d)
    return Verdict(OK, score, f"most evidence agrees with the label ({said})", evidence=ev_d)


def judge(en: np.ndarray, ev: Evidence, cfg: JudgeConfig | None = None) -> tuple[list[Verdict], list[SessionShift], float]:
    """Verdicts for every photo, the shifted sessions found, and the same-spot tolerance used (metres)."""
    cfg = cfg or JudgeConfig()
    en = np.asarray(en, float)
    shifts = session_shifts(en, ev, cfg)
    fixed = en.copy()
    in_shift: dict[int, SessionShift] = {}
    for s in shifts:
        fixed[s.photos] = en[s.photos] - s.offset_en
        in_shift.update({i: s for i in s.photos})
    tol = tolerance_m(fixed, ev, cfg)
    first = [judge_photo(i, fixed, ev, tol, cfg) for i in range(len(en))]
    wrong = np.array([v.verdict == WRONG for v in first], bool)
    # second pass: photos judged wrong no longer vouch for the photos around them
    out = [judge_photo(i, fixed, ev, tol, cfg, wrong) if ev.links[i] else first[i] for i in range(len(en))]
    for i, s in in_shift.items():
        v = out[i]
        shift = (f"its capture session ({s.session}, {counted(len(s.photos), 'photo')}) is offset "
                 f"{np.linalg.norm(s.offset_en):.0f} m from {counted(s.links, 'verified view')} of other sessions")
        if v.verdict == WRONG and v.proposed_en is not None:
            out[i] = Verdict(WRONG, v.score, f"{shift}; then {v.reason}", v.proposed_en, v.proposed_sigma_m, v.evidence)
        else:
            sig = float(np.hypot(s.se_m, tol / cfg.tol_factor))
            out[i] = Verdict(WRONG, v.score, shift, fixed[i], sig, v.evidence)
    return out, shifts, tol
