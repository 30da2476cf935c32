"""Which campus does rerank pick for a photo it cannot verify? (issue 30; the numbers in rerank/query.answer_area)

    python bench/two_areas_area_choice.py

penn91 + bgu-west in one gallery, the seeded 20% hold-out of bench/two_areas.py (first 60 per area); rerank
fitted without calibration (not needed here). For each held-out photo the first view goes through the query
procedure; for unverified ones the area by the shortlist score (global + VLAD z-scored over the gallery), by
per-area z-scores and by the top global similarity is compared with the truth. Prints counts per area.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import two_areas as T
from img2gps.data import load_dataset
from img2gps.area import split_areas
import img2gps.predictors.rerank.method as M
from img2gps.predictors.rerank.state import Calibration
from img2gps.localization.conformal import MondrianRadius
from img2gps.predictors import make_predictor
from img2gps.predictors.rerank import query as Q
from img2gps.photos import open_query
M.calibrate = lambda st, c: [Calibration(MondrianRadius()) for _ in st.knn.plane.areas]
tmp = tempfile.mkdtemp()
ds = load_dataset(T.combined_dataset(Path("/work/shared/data/penn91"), Path("/work/shared/data/bgu-west"), Path(tmp) / "c"))
areas = split_areas(ds.lat, ds.lon)
rng = np.random.default_rng(0)
held = [np.sort(rng.choice(a.rows, max(1, round(0.2 * a.n_photos)), replace=False)) for a in areas]
isheld = np.zeros(len(ds), bool); isheld[np.concatenate(held)] = True
p = make_predictor("rerank"); p.fit(ds.subset(np.flatnonzero(~isheld)))
st, cfg = p.state, p.config
lab = st.knn.plane.label
from img2gps.retrieval.database import pair_stats
V = st.knn.index.vectors
zs = [(pair_stats(V[lab == a]), pair_stats(st.vlad[lab == a])) for a in range(2)]
def area_z(g, v):
    return int(np.argmax([(( (g - zs[a][0][0]) / zs[a][0][1] + (v - zs[a][1][0]) / zs[a][1][1])[lab == a]).max() for a in range(2)]))
for a, rows in enumerate(held):
    stats = {"verified_wrong": 0, "fallback_wrong": 0, "verified": 0, "fallback": 0, "top_global_wrong": 0}
    for i in rows[:60]:
        q = open_query(ds.read(int(i)), max_side=p.query_max_side)[0]
        loc, score = Q.view(st, cfg, q.image(), q.focal35, 5)
        g = st.knn.index.similarities(st.encoder.embed([q.image()]))
        kind = "verified" if loc.verified else "fallback"
        stats[kind] += 1
        if loc.area != a:
            stats[kind + "_wrong"] += 1
        stats["top_global_wrong"] += int(lab[np.argmax(g)] != a)
        if not loc.verified:
            from img2gps.features.rootsift import extract
            dq = extract(q.image(), cfg.feature_config).unit_desc(True)
            v = st.vlad @ st.codebook.encode(dq)
            stats["fb_z_wrong"] = stats.get("fb_z_wrong", 0) + int(area_z(g, v) != a)
            stats["fb_global_wrong"] = stats.get("fb_global_wrong", 0) + int(lab[np.argmax(g)] != a)
            stats["fb_shortlist_wrong"] = stats.get("fb_shortlist_wrong", 0) + int(lab[np.argmax(score)] != a)
    print("area", a, stats, flush=True)
