"""Can a score tell a photo taken in the gallery's area from one taken on another campus? (ROC AUC)

    python bench/in_area.py [--a ../shared/data/penn91] [--b ../shared/data/bgu-west] [--json OUT]

For each direction (gallery A, photos from elsewhere B; then the reverse), every photo of both sets is first
brought to one size (long side 256 px, the size of bgu-west's photos) and re-encoded as a JPEG without EXIF,
so neither resolution nor metadata can give the campus away. In-area photos: each photo of A held out with its
same-spot siblings (localization/holdout.py, as a new user's photo would be); photos from elsewhere: a seeded
sample of B of the same count. The score is the query's top cosine similarity to the gallery's global
embedding (the evidence knn and rerank's shortlist see); ROC AUC is the probability that a random in-area
photo scores above a random photo from elsewhere (Mann-Whitney U / (n_in n_out), ties counted half).
"""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from img2gps.provenance import code_revision  # noqa: E402

SIDE = 256  # bgu-west's long side: both sets are brought to it
ENCODERS = ("lite0", "dinov2s-imgfocus")


def auc(pos, neg) -> float:
    """ROC AUC of scores pos (in-area) against neg (elsewhere): Mann-Whitney U / (n_pos n_neg)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))


def normalised(ds):
    """Every photo of a dataset at SIDE px long side, re-encoded as a JPEG without EXIF (PIL images)."""
    from PIL import Image

    out = []
    for i in range(len(ds)):
        im = ds.open(i).convert("RGB")
        im.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)  # no exif= argument: nothing but pixels survives
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def main() -> None:
    from two_areas import area_pair_parser  # bench/ is the script's own folder

    ap = area_pair_parser(__doc__)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from img2gps.data import load_dataset
    from img2gps.geo import LocalFrame
    from img2gps.localization.holdout import excluded_mask, same_spot_radius_m
    from img2gps.features.encoders import get_encoder

    sets = {Path(p).name: load_dataset(p) for p in (a.a, a.b)}
    images = {k: normalised(ds) for k, ds in sets.items()}
    rows = []
    for enc_name in ENCODERS:
        enc = get_encoder(enc_name)
        emb = {k: np.asarray(enc.embed(v), np.float32) for k, v in images.items()}
        emb = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in emb.items()}
        for gal, other in (tuple(sets), tuple(sets)[::-1]):
            ds = sets[gal]
            en = LocalFrame.around(ds.lat, ds.lon).to_en(ds.lat, ds.lon)
            sim = emb[gal] @ emb[gal].T
            sim[excluded_mask(en, same_spot_radius_m(en))] = -np.inf
            inside = sim.max(1)
            inside = inside[np.isfinite(inside)]
            rng = np.random.default_rng(0)
            pick = rng.choice(len(emb[other]), min(len(inside), len(emb[other])), replace=False)
            outside = (emb[other][pick] @ emb[gal].T).max(1)
            rows.append({"encoder": enc_name, "gallery": gal, "photos from elsewhere": other,
                         "n in": int(len(inside)), "n elsewhere": int(len(outside)), "auc": auc(inside, outside),
                         "in median": float(np.median(inside)), "elsewhere median": float(np.median(outside)),
                         "elsewhere p95": float(np.quantile(outside, 0.95))})
            print(rows[-1], flush=True)
    out = {"title": "Telling a photo from elsewhere: ROC AUC of the top similarity (issue 19)",
           "command": " ".join(["python"] + sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
           "code": code_revision(), "table": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
