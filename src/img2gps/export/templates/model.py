"""Leaderboard model exported by img2gps (`img2gps export --format leaderboard`; see the README beside it).

Self-contained: needs only numpy, torch, Pillow and (for `rerank`) opencv-python; downloads nothing and imports
nothing from img2gps. The evaluator builds `Model(weights_path="__no_weights__.pth")`, loads model.pt into it
(every tensor's shape is fixed below, in CONFIG, so a shape-filtered load keeps them all) and calls
`predict(batch)` on lists of image paths (from preprocess.prepare_data). Each output is [latitude, longitude]
in degrees. Every step mirrors img2gps's own query path (decoding, EXIF orientation, resizing, normalisation,
retrieval / verification / regression), so the answers equal `img2gps predict` on the same model.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageOps

CONFIG = {}  # @CONFIG@ (written by img2gps export)

EARTH_RADIUS_M = 6_371_008.8  # img2gps's metric frame (the leaderboard scores with 6,371,000 m)


# ----- opening photos (img2gps.photos.open_image) ---------------------------------------------------------------
def _decode(data: bytes, side):
    im = Image.open(io.BytesIO(data))
    if side and im.format == "JPEG":
        im.draft("RGB", (side, side))  # reduced-scale JPEG decoding, exactly as img2gps decodes a query
    im.load()
    return im


def _upright_rgb(im):
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((arr / (arr.max() or 1.0) * 255).astype(np.uint8))
    rgb = im.convert("RGB")
    return Image.frombytes(rgb.mode, rgb.size, rgb.tobytes())  # no metadata: the photo's own GPS is never read


def open_photo(item, side=None):
    """A path, bytes, PIL image, HxWx3 uint8 array or CxHxW / HxWxC tensor -> upright RGB PIL image."""
    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as f:
            im = _decode(f.read(), side)
    elif isinstance(item, (bytes, bytearray)):
        im = _decode(bytes(item), side)
    elif isinstance(item, Image.Image):
        im = item
    else:
        arr = item.detach().cpu().numpy() if torch.is_tensor(item) else np.asarray(item)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr[..., :3] if arr.ndim == 3 and arr.shape[-1] >= 3 else arr.squeeze())
    out = _upright_rgb(im)
    if side and max(out.size) > side:
        out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


def network_input(im, shrink_side: int, size: int, norm: str) -> torch.Tensor:
    """(1, 3, size, size): Lanczos down to shrink_side, the whole photo squashed to a square, then normalised."""
    if max(im.size) > shrink_side:
        im = im.copy()
        im.thumbnail((shrink_side, shrink_side), Image.Resampling.LANCZOS)
    x = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR),
                             dtype=np.float32)]) / 255.0
    if norm == "lite":
        x = (x - 0.5) / 0.5
    else:
        x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))


# ----- EfficientNet-Lite (Tan & Le 2019; lite variants: ReLU6, no squeeze-excitation, fixed stem and head) -------
LITE_STAGES = [  # repeats, kernel, stride, expansion, in, out
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
LITE_SCALING = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}  # width, depth, resolution


def _width(channels: int, mult: float) -> int:
    c = channels * mult
    out = max(8, int(c + 4) // 8 * 8)
    return int(out + 8 if out < 0.9 * c else out)


class SameConv(nn.Conv2d):
    """TensorFlow 'SAME' convolution with the padding fixed for the network's native input size."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=False, image_size=224):
        super().__init__(cin, cout, k, stride, 0, groups=groups, bias=bias)
        out = math.ceil(image_size / stride)
        p = max((out - 1) * stride + k - image_size, 0)
        self.pad = (p // 2, p - p // 2, p // 2, p - p // 2)

    def forward(self, x):
        if any(self.pad):
            x = F.pad(x, self.pad)
        return super().forward(x)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand, image_size):
        super().__init__()
        mid = cin * expand
        self.expand, self.skip = expand, stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv, self._bn0 = SameConv(cin, mid, 1, image_size=image_size), _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, image_size=image_size)
        self._bn1 = _bn(mid)
        self._project_conv, self._bn2 = SameConv(mid, cout, 1, image_size=math.ceil(image_size / stride)), _bn(cout)

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """Stem, MBConv blocks and the 1x1 head conv (1280 channels): `features(x)` -> (B, 1280, H/32, W/32).

    round_after: index of the stage (0 = stem, 1..n = blocks, n+1 = head) after which activations are rounded
    through float16, as img2gps's cached frozen features are (None = never)."""

    def __init__(self, variant: int = 0):
        super().__init__()
        width, depth, size = LITE_SCALING[variant]
        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, image_size=size), _bn(32)
        size = math.ceil(size / 2)
        blocks = []
        for i, (r, k, s, e, cin, cout) in enumerate(LITE_STAGES):
            cin, cout = (32 if i == 0 else _width(cin, width)), _width(cout, width)
            reps = r if i in (0, len(LITE_STAGES) - 1) else int(math.ceil(depth * r))
            for j in range(reps):
                blocks.append(MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e, size))
                if j == 0:
                    size = math.ceil(size / s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv(cout, 1280, 1, image_size=size), _bn(1280)

    def features(self, x, round_after=None):
        stages = [lambda t: F.relu6(self._bn0(self._conv_stem(t))), *self._blocks,
                  lambda t: F.relu6(self._bn1(self._conv_head(t)))]
        for i, stage in enumerate(stages):
            x = stage(x)
            if i == round_after:
                x = x.half().float()
        return x


# ----- trained heads (img2gps regression / contrastive) -----------------------------------------------------------
class AttentionPool(nn.Module):
    def __init__(self, channels, heads):
        super().__init__()
        self.score = nn.Conv2d(channels, heads, kernel_size=1)

    def forward(self, x):
        w = torch.softmax(self.score(x).flatten(2), dim=-1)
        return torch.einsum("bkp,bcp->bkc", w, x.flatten(2)).flatten(1)


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class RegressionHead(nn.Module):
    """Attention pooling -> FC hidden -> ReLU -> (dropout, off at inference) -> FC 2 (z-scored lat, lon)."""

    def __init__(self, channels, heads, hidden):
        super().__init__()
        self.pool, self.fc, self.out = AttentionPool(channels, heads), nn.Linear(heads * channels, hidden), \
            nn.Linear(hidden, 2)

    def embed(self, x):
        return torch.relu(self.fc(self.pool(x)))

    def forward(self, x):
        return self.out(self.embed(x))


class ProjectionHead(nn.Module):
    def __init__(self, channels, pool, heads, hidden, dim):
        super().__init__()
        self.pool = AttentionPool(channels, heads) if pool == "attention" else MeanPool()
        width = channels * heads if pool == "attention" else channels
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return F.normalize(self.mlp(self.pool(x)), dim=1)


# ----- positions: a local east/north metre frame, neighbour aggregation, consensus ----------------------------
def to_latlon(en, lat0, lon0):
    m_lat = np.pi / 180 * EARTH_RADIUS_M
    m_lon = m_lat * np.cos(np.radians(lat0))
    en = np.asarray(en, float)
    return float(lat0 + en[..., 1] / m_lat), float(lon0 + en[..., 0] / m_lon)


def weighted_median(en, w, iters=50):
    en, w = np.asarray(en, float), np.clip(np.asarray(w, float), 1e-12, None)
    x = (en * w[:, None]).sum(0) / w.sum()
    for _ in range(iters):
        d = np.maximum(np.linalg.norm(en - x, axis=1), 1e-6)
        x_new = ((en * (w / d)[:, None]).sum(0)) / (w / d).sum()
        if np.linalg.norm(x_new - x) < 1e-4:
            return x_new
        x = x_new
    return x


def aggregate(en, sims, how):
    """k neighbours' positions + cosine similarities -> one position (similarity-weighted mean by default)."""
    sims = np.asarray(sims, float)
    w = np.exp((sims - sims.max()) / 0.05) if how == "softmax" else np.clip(sims, 1e-6, None)
    return weighted_median(en, w) if how == "median" else (en * w[:, None]).sum(0) / w.sum()


def consensus(en, w, radius_m):
    """Densest weighted cluster of verified candidates, re-centred once; its weighted mean."""
    en, w = np.asarray(en, float).reshape(-1, 2), np.clip(np.asarray(w, float).reshape(-1), 0.0, None)
    if w.sum() <= 0:
        w = np.ones(len(en))
    near = np.linalg.norm(en[:, None, :] - en[None, :, :], axis=-1) <= radius_m
    seed = int(np.lexsort((-w, -(near @ w)))[0])
    members = np.flatnonzero(near[seed])
    wm = w[members]
    centre = (en[members] * wm[:, None]).sum(0) / wm.sum()
    members2 = np.flatnonzero(np.linalg.norm(en - centre, axis=1) <= radius_m)
    if len(members2) and w[members2].sum() >= wm.sum():
        members, wm = members2, w[members2]
        centre = (en[members] * wm[:, None]).sum(0) / wm.sum()
    return centre


def l2n(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def top_k(vectors, q, k):
    """Exact cosine k-NN of one query (vectors already unit length): (similarities, indices), best first."""
    sims = vectors @ l2n(q.reshape(1, -1))[0]
    idx = np.argsort(-sims, kind="stable")[:k]
    return sims[idx], idx


# ----- local features and geometric verification (rerank) ---------------------------------------------------------
def sift_keypoints(im, max_side, n_features):
    import cv2

    g = np.asarray(im.convert("L"))
    h, w = g.shape
    s = max_side / max(h, w)
    if s < 1:
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    kps, desc = cv2.SIFT_create(nfeatures=n_features).detectAndCompute(g, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    return np.array([k.pt for k in kps], np.float32), np.clip(np.rint(desc), 0, 255).astype(np.uint8)


def root_unit(desc):
    d = desc.astype(np.float32)
    d = np.sqrt(d / np.maximum(d.sum(1, keepdims=True), 1e-7))
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-7)


def vlad(desc, centroids):
    k, dim = centroids.shape
    if len(desc) == 0:
        return np.zeros(k * dim, np.float32)
    assign = (desc @ centroids.T).argmax(1)
    onehot = np.zeros((k, len(desc)), np.float32)
    onehot[assign, np.arange(len(desc))] = 1.0
    v = onehot @ desc - onehot.sum(1, keepdims=True) * centroids
    v = np.sign(v) * np.sqrt(np.abs(v))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    v = v.ravel()
    return (v / max(float(np.linalg.norm(v)), 1e-9)).astype(np.float32)


def mutual_matches(da, db, ratio):
    if len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), np.int64)
    sim = da @ db.T
    rows = np.arange(len(da))
    best = sim.argmax(1)
    s1 = sim[rows, best]
    sim[rows, best] = -2.0
    s2 = sim.max(1)
    sim[rows, best] = s1
    d1, d2 = np.sqrt(np.maximum(2 - 2 * s1, 0)), np.sqrt(np.maximum(2 - 2 * s2, 0))
    ia = np.flatnonzero(d1 < ratio * d2)
    if len(ia):
        ia = ia[sim[:, best[ia]].argmax(0) == ia]
    return np.stack([ia, best[ia]], axis=1)


def inliers(pa, pb, px, iters):
    import cv2

    if len(pa) < 8:
        return 0
    try:
        f, mask = cv2.findFundamentalMat(pa.astype(np.float64), pb.astype(np.float64), cv2.USAC_MAGSAC, px, 0.999,
                                         iters)
    except cv2.error:
        return 0
    return 0 if f is None or mask is None else int(mask.ravel().astype(bool).sum())


class _OneThread:
    """One torch and one BLAS thread per query, as img2gps runs rerank queries (same sums, same answers)."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            from threadpoolctl import threadpool_limits

            self.limit = threadpool_limits(1)
        except Exception:
            self.limit = None

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)
        if self.limit is not None:
            self.limit.__exit__(*exc)


# ----- the model ----------------------------------------------------------------------------------------------
class Model(nn.Module):
    """img2gps model for the leaderboard. predict(list of images) -> list of [lat, lon] (degrees)."""

    def __init__(self, weights_path=None):
        super().__init__()
        c = CONFIG
        self.method = c["method"]
        if "encoder" in c:
            self.encoder = EfficientNetLite(c["encoder"]["variant"])
        if "head" in c:
            h = c["head"]
            self.head = (RegressionHead(h["channels"], h["heads"], h["hidden"]) if h["kind"] == "regression" else
                         ProjectionHead(h["channels"], h["pool"], h["heads"], h["hidden"], h["dim"]))
        for name, (shape, dtype) in c["buffers"].items():
            self.register_buffer(name, torch.zeros(shape, dtype=getattr(torch, dtype)))
        self._derived = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_derived", None))
        self.eval()
        if weights_path and os.path.isfile(weights_path):  # the evaluator passes a placeholder path: skipped
            sd = torch.load(weights_path, map_location="cpu")
            self.load_state_dict(sd.get("state_dict", sd) if isinstance(sd, dict) else sd)

    # -- shared pieces -----------------------------------------------------------------------------------------
    def _features(self, im):
        e = CONFIG["encoder"]
        x = network_input(im, e["shrink_side"], e["input_size"], e["norm"])
        return self.encoder.features(x, e.get("round_after"))

    def _embedding(self, im):
        """The query's global vector: pooled encoder features, or the trained head's embedding."""
        f = self._features(im)
        if "head" not in CONFIG:
            return f.mean(dim=(2, 3))[0].numpy().astype(np.float32)
        if CONFIG["head"]["kind"] == "regression":
            return self.head.embed(f)[0].numpy().astype(np.float32)
        return self.head(f)[0].numpy().astype(np.float32)

    def _gallery(self):
        if self._derived is None:
            d = {"vectors": l2n(self.gallery_vectors.numpy()), "en": self.gallery_en.numpy()}
            if self.method == "rerank":
                counts = self.kp_counts.numpy()
                cuts = np.concatenate([[0], np.cumsum(counts)])
                xy, desc = self.kp_xy.numpy(), self.kp_desc.numpy()
                d["xy"] = [xy[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
                d["desc"] = [root_unit(desc[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
                r = CONFIG["rerank"]
                dist = np.linalg.norm(d["en"][:, None, :] - d["en"][None, :, :], axis=-1)
                np.fill_diagonal(dist, np.inf)
                d["near"] = [[int(j) for j in np.argsort(row)[: r["near_max"]] if row[j] <= r["near_m"]]
                             for row in dist]
            self._derived = d
        return self._derived

    # -- methods -----------------------------------------------------------------------------------------------
    def _knn(self, im):
        g, k = self._gallery(), CONFIG["knn"]
        sims, idx = top_k(g["vectors"], self._embedding(im), k["k"])
        return aggregate(g["en"][idx], sims, k["agg"])

    def _regression(self, im):
        z = self.head(self._features(im))[0].double().numpy()
        n = CONFIG["norm"]  # undo the z-scoring of the training labels
        return float(z[0] * n["lat_std"] + n["lat_mean"]), float(z[1] * n["lon_std"] + n["lon_mean"])

    def _rerank(self, im):
        r, g = CONFIG["rerank"], self._gallery()
        with _OneThread():
            q = self._embedding(im)
            xy, desc = sift_keypoints(im, r["max_side"], r["features"])
            dq = root_unit(desc)
            g_sims = (g["vectors"] @ (q.ravel() / max(float(np.linalg.norm(q)), 1e-12))).astype(float)
            score = (g_sims - r["z"][0][0]) / r["z"][0][1]
            if "vlad_centroids" in CONFIG["buffers"]:
                v_sims = self.vlad_gallery.numpy() @ vlad(dq, self.vlad_centroids.numpy())
                score = score + (v_sims - r["z"][1][0]) / r["z"][1][1]
            checked = self._verify_shortlist(np.argsort(-score), xy, dq, r, g)
            ver = [(j, n) for j, n in checked.items() if n >= r["min_inliers"]]
            if ver:
                return consensus(g["en"][[j for j, _ in ver]], [n for _, n in ver], r["cluster_m"])
            sims, idx = top_k(g["vectors"], q, r["k"])
            knn = np.asarray(aggregate(g["en"][idx], sims, "mean"), float)
            if r["fallback"] == "knn":
                own = knn
            else:
                idx = np.argsort(-score)[: r["fallback_k"]]
                idx = idx[np.isfinite(score[idx])]
                own = np.asarray(weighted_median(g["en"][idx], np.exp((score[idx] - score[idx].max()) / r["fallback_t"])))
            # the answer the model's calibration chose for unverified photos: its own, knn's, or their midpoint
            choice = r.get("fallback_answer", "own")
            return own if choice == "own" else knn if choice == "knn" else 0.5 * (own + knn)

    @staticmethod
    def _verify_shortlist(order, xy, dq, r, g):
        def verify(j):
            m = mutual_matches(dq, g["desc"][j], r["ratio"])
            return inliers(xy[m[:, 0]], g["xy"][j][m[:, 1]], r["ransac_px"], r["max_iters"]) if len(m) >= 8 else 0

        checked, shortlist, priority, stop = {}, [int(j) for j in order][: r["topn"]], [], False
        while len(checked) < r["max_verify"]:
            if priority:
                j = priority.pop(0)
            elif shortlist and not stop:
                j = shortlist.pop(0)
            else:
                break
            if j in checked:
                continue
            n = checked[j] = verify(j)
            if n >= r["min_inliers"]:
                priority += [q for q in g["near"][j] if q not in checked and q not in priority]
                stop |= n >= r["stop_inliers"]
        return checked

    def locate(self, item):
        """One image -> (latitude, longitude) in degrees."""
        if self.method == "mean-coordinate":
            return float(self.centre[0]), float(self.centre[1])
        im = open_photo(item, CONFIG.get("decode_side"))
        if self.method == "regression":
            return self._regression(im)
        en = self._rerank(im) if self.method == "rerank" else self._knn(im)
        return to_latlon(en, CONFIG["frame"][0], CONFIG["frame"][1])

    def predict(self, batch):
        """batch: a list (or tensor) of images, usually paths -> list of [latitude, longitude] in degrees.
        Images are run one at a time, exactly as img2gps runs a query."""
        with torch.no_grad():
            return [list(self.locate(item)) for item in batch]

    def forward(self, batch):
        return torch.tensor(self.predict(batch), dtype=torch.float64)


def get_model():
    return Model()
