"""How well is the area of a photo chosen in a gallery of two far-apart areas? (issue 30; localization/area_choice.py)

    python bench/two_areas_area_cv.py [--a ../shared/data/penn91] [--b ../shared/data/bgu-west] [--json OUT]

penn91 + bgu-west in one gallery (lite0 embeddings, cached). Every photo is a query once, its same-spot siblings
(same area, within SPOT_M) left out. Counted per area: photos sent to the other area by
- top1: the area of the most similar gallery photo (the rule before the classifier);
- z_top1 / pct_top1: the area whose top similarity is highest as a z-score / percentile of that area's own
  top-similarity distribution (each gallery photo against the rest of its area, siblings left out);
- classifier: area_choice.AreaClassifier alone (10 folds of whole CELL_M grid cells; a fold's training photos within
  SPOT_M of one of its photos left out);
- chosen: AreaClassifier.choose (the classifier unless it is less than UNSURE_GAP surer than of the top1 area).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import two_areas as T  # noqa: E402

SPOT_M = 10.0
CELL_M = 30.0


def main() -> None:
    from img2gps.area import GalleryPlane
    from img2gps.data import load_dataset
    from img2gps.features.cache import embed_dataset
    from img2gps.features.encoders import get_encoder
    from img2gps.localization.area_choice import AreaClassifier
    from sklearn.model_selection import GroupKFold

    ap = T.area_pair_parser(__doc__)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(T.combined_dataset(Path(args.a), Path(args.b), Path(tmp) / "c"))
        v = embed_dataset(get_encoder("lite0"), ds)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    plane = GalleryPlane.of(ds.lat, ds.lon)
    lab, en, n, n_areas = plane.label, plane.en, len(v), plane.n_areas
    near = (lab[:, None] == lab[None, :]) & (np.linalg.norm(en[:, None] - en[None, :], axis=-1) < SPOT_M)
    sims = np.where(near, -np.inf, v @ v.T)  # each photo against the rest, its siblings (and itself) left out
    top_area = lab[np.argmax(sims, 1)]
    per_area_top = np.stack([np.where(lab[None, :] == a, sims, -np.inf).max(1) for a in range(n_areas)], 1)
    own = [np.sort(per_area_top[lab == a, a]) for a in range(n_areas)]
    z = np.stack([(per_area_top[:, a] - own[a].mean()) / own[a].std() for a in range(n_areas)], 1)
    pct = np.stack([np.searchsorted(own[a], per_area_top[:, a]) / len(own[a]) for a in range(n_areas)], 1)
    clf_area, chosen = np.zeros(n, int), np.zeros(n, int)
    # folds of whole CELL_M cells (each area's photos by grid cell), so leaving out a fold's siblings removes
    # little more than the fold itself, as a photo taken at a spot the gallery lacks
    cells = np.unique(np.c_[lab, np.floor(en / CELL_M)], axis=0, return_inverse=True)[1].reshape(-1)
    kept = []
    for tr, te in GroupKFold(10).split(v, lab, cells):
        keep = tr[~near[np.ix_(tr, te)].any(1)]
        kept.append(len(keep) / len(tr))
        clf = AreaClassifier.fit(v[keep], lab[keep], n_areas)
        clf_area[te] = clf.proba(v[te]).argmax(1)
        chosen[te] = [clf.choose(v[i], int(top_area[i])) for i in te]
    n_a = len(T.pd.read_csv(Path(args.a) / "labels.csv"))  # the combined table lists A's photos first
    names = [Path(args.a).name if plane.areas[a].rows[0] < n_a else Path(args.b).name for a in range(n_areas)]
    out = {"photos": {names[a]: int((lab == a).sum()) for a in range(n_areas)}, "spot_m": SPOT_M, "cell_m": CELL_M,
           "fold_train_kept_min": round(min(kept), 3), "wrong_area": {}}
    print(f"training photos kept per fold after the buffer: at least {min(kept):.1%}")
    for rule, got in (("top1", top_area), ("z_top1", z.argmax(1)), ("pct_top1", pct.argmax(1)),
                      ("classifier", clf_area), ("chosen", chosen)):
        out["wrong_area"][rule] = {names[a]: int(((got != lab) & (lab == a)).sum()) for a in range(n_areas)}
        print(f"{rule:>10}: wrong area " + ", ".join(f"{k} {w}" for k, w in out["wrong_area"][rule].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
