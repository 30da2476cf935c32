"""rerank: global retrieval, then geometric verification of the shortlist, then spatial consensus.

Query path (query.py): global embedding (lite0 by default) + VLAD over the query's RootSIFT -> gallery photos
ranked by the sum of both z-scored similarities -> verify the top candidates in order (mutual ratio-test matches,
MAGSAC fundamental matrix), stopping early after a very strong match; with near_m > 0 the gallery photos standing
near a verified one are verified next (on penn91 this changed no answer, so it is off by default) -> the densest
cluster of verified photos, weighted by inliers, is the answer. It is recognised (source "consensus") only when
the strongest verified pair is nearly a pure rotation (parallax <= rec_parallax degrees with >= rec_inliers
inliers: the query stood at that gallery camera's spot); otherwise it is a scene seen from elsewhere (source
"scene"). When nothing verifies (with matcher2=xfeat: not even with XFeat on the same shortlist,
docs/shared-photos.md), the answer is the weighted geometric median of the shortlist (source "fallback"). For
scene and fallback answers, calibration may choose knn's answer or the midpoint instead
(answer=auto; localization/answers.py). Each kind has its own calibrated radius (localization/conformal.py).

Camera pose (pose=auto|on|off): for the strongest verified gallery photos whose own heading is known (EXIF
GPSImgDirection), the pair's essential matrix gives the query's heading and the direction towards it
(localization/pose.py); two or more such photos at distinct places fix the query camera's own position
(source "pose") instead of the verified cameras' consensus (source "consensus"). `auto` uses the pose position
only when the held-out calibration shows it closer to the truth than the consensus; `on` always when it
exists; `off` never (the heading is still reported). The query's focal length is its only metadata read.

Fit path: gallery keypoints are extracted once (cached on disk by content hash), each photo keeps at most
gallery_keypoints of them (0 = all), spread over the photo (verification/store.py gallery_form), the state built
(state.py) and calibrated (calibrate.py) by running the query procedure over held-out gallery photos.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ...features.cache import embed_dataset
from ...features.encoders import get_encoder
from ...features.indexing import ExtractSpec, ensure_features
from ...features.rootsift import KeypointCache, Keypoints, extract
from ...localization.knn import KNNState
from ...retrieval.database import CosineIndex
from ...retrieval.vlad import VladCodebook
from ...verification.store import KeypointStore, gallery_form
from ..base import BasePredictor
from .calibrate import calibrate
from .config import RerankConfig
from .query import answer
from .state import KEYS_FILE, RerankState, build_state, load_state, save_state, state_dict


@contextlib.contextmanager
def single_threaded():
    """One BLAS and one torch thread for the small matrix products of a query.

    Measured on the shared 2-core machine under load: a 2000x2000 descriptor product and a Lite0 forward pass
    ran 15-50x slower with two threads than with one (threads spin while the other core is busy), and on an
    idle machine these products are too small to gain much from a second thread.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):  # BLAS and OpenMP (faiss k-means)
            yield
    finally:
        torch.set_num_threads(n)


class RerankPredictor(BasePredictor):
    """Holds its config and a RerankState (None before fit/load); the query is query.answer(state, config, ...)."""
    name = "rerank"
    Config = RerankConfig
    # Queries are decoded at full size: SIFT must see the same pixels (INTER_AREA to max_side) as the gallery
    # did at fit time; a 640 px query against a 1024 px gallery loses most verifications.
    query_max_side = None

    def __init__(self, config=None, spec=None):
        super().__init__(config, spec)
        self.state: RerankState | None = None

    # -- fit ----------------------------------------------------------------------------------------------
    def _fit(self, train) -> None:
        with single_threaded():
            self._fit_single(train)

    def _fit_single(self, train) -> None:
        c, fcfg = self.config, self.config.feature_config
        keys = [train.content_key(i) for i in range(len(train))]
        # one pass decodes each photo for both its embedding and its keypoints (all cores; resumable)
        self.indexing_stats = ensure_features(train, ExtractSpec(embed=c.embed, features=fcfg), self.indexing,
                                              keys=keys, label="indexing")
        encoder = get_encoder(c.embed)
        knn = KNNState.build(CosineIndex(embed_dataset(encoder, train, keys=keys), c.index), self.gallery)
        cam = train.with_camera_meta().table  # gallery headings / focal lengths: labels.csv, else the EXIF
        self.gallery["heading"] = cam["heading"].to_numpy(float)
        self.gallery["focal35"] = cam["focal35"].to_numpy(float)
        cache = KeypointCache(fcfg)  # filled by ensure_features above

        def read(i: int) -> Keypoints:
            kp = cache.get(keys[i])
            if kp is None:  # removed from the cache while fitting: extract again
                kp = extract(train.open(i), fcfg)
            return gallery_form(kp, c.gallery_keypoints)

        store = KeypointStore(len(keys), read, c.cache_mb * 2**20)
        codebook = None
        counts = [len(store.get(i)) for i in range(len(keys))] if c.vlad else []
        if c.vlad and sum(counts) >= 4 * c.vlad:  # learnt from the gallery only, on a bounded sample
            codebook = VladCodebook.train_from(counts, store.unit_desc, c.vlad)
        self.state = build_state(knn, encoder, keys, store, codebook, self.gallery, c)
        self.state.photos = train.open  # for the second matcher's gallery features (matcher2), never saved
        self.state.calibrations = calibrate(self.state, c)

    # -- predict ------------------------------------------------------------------------------------------
    def _predict_ranked_one(self, query, top_k: int, n: int):
        with single_threaded():
            return answer(self.state, self.config, query, top_k, n, self.gallery, self.spec)

    @property
    def query_encoder(self):
        """The frozen global encoder of the shortlist (read by ONNX export)."""
        return self.state.encoder if self.state is not None else None

    def use_query_encoder(self, encoder) -> None:
        """Embed queries with another runtime of the same network (e.g. export.OnnxEncoder)."""
        self.state.encoder = encoder

    def fit_report(self):
        return {"index": self.state.knn.index_report,
                "calibration": [cal.summary for cal in self.state.calibrations]}  # one per area

    # -- appending ---------------------------------------------------------------------------------------
    def add_refusal(self):
        if self.state is None or self.state.keys is None:
            return f"{self.spec}: this model predates `index add` (no {KEYS_FILE}); re-fit it with `img2gps fit`"
        return None

    def _add(self, new) -> None:
        """New photos' embeddings, keypoints and VLAD vectors appended (the codebook is kept, so every existing
        vector and keypoint stays as it was); neighbour lists, score scales and calibration redone."""
        s, c, fcfg = self.state, self.config, self.config.feature_config
        new_keys = [new.content_key(i) for i in range(len(new))]
        cam = new.with_camera_meta().table  # the new rows' headings / focal lengths, as fit reads them
        for col in ("heading", "focal35"):
            self.gallery.loc[len(self.gallery) - len(new):, col] = cam[col].to_numpy(float)
        with single_threaded():
            self.indexing_stats = ensure_features(new, ExtractSpec(embed=c.embed, features=fcfg), self.indexing,
                                                  keys=new_keys, label="indexing")
            index = s.knn.index
            index.add(embed_dataset(get_encoder(c.embed), new, keys=new_keys))
            knn = KNNState.build(index, self.gallery)
            n_old, old, cache = len(s.store), s.store, KeypointCache(fcfg)

            def read(i: int) -> Keypoints:
                if i < n_old:
                    return old.get(i)
                kp = cache.get(new_keys[i - n_old])
                return gallery_form(kp if kp is not None else extract(new.open(i - n_old), fcfg), c.gallery_keypoints)

            store = KeypointStore(n_old + len(new), read, c.cache_mb * 2**20)
            vlad = s.vlad
            if s.codebook is not None:
                more = s.codebook.encode_all(lambda i: store.unit_desc(n_old + i), len(store) - n_old)
                vlad = np.concatenate([vlad, more])
            self.state = build_state(knn, s.encoder, list(s.keys) + new_keys, store, s.codebook, self.gallery, c,
                                     vlad)
            if s.photos is not None:  # photos at hand for all rows only when the old ones were
                self.state.photos = lambda j, old=s.photos: old(j) if j < n_old else new.open(j - n_old)
            self.state.calibrations = calibrate(self.state, c)

    def _remove(self, keep, recalibrate) -> None:
        """The kept rows of the index vectors, keypoints (read lazily from the old store), VLAD vectors and
        content keys; the codebook is kept; neighbour lists and score scales redone, then the calibration."""
        s, c = self.state, self.config
        with single_threaded():
            old_index, old_store = s.knn.index, s.store
            knn = KNNState.build(CosineIndex(old_index.vectors[keep], old_index.kind, old_index.refine), self.gallery)
            store = KeypointStore(len(keep), lambda i: old_store.get(int(keep[i])), c.cache_mb * 2**20)
            self.state = build_state(knn, s.encoder, [s.keys[int(i)] for i in keep], store, s.codebook,
                                     self.gallery, c, s.vlad[keep] if s.vlad is not None else None)
            if s.photos is not None:
                self.state.photos = lambda j, old=s.photos: old(int(keep[j]))
            self.state.calibrations = calibrate(self.state, c) if recalibrate else s.calibrations

    # -- persistence --------------------------------------------------------------------------------------
    def _save_files(self, d: Path) -> None:
        save_state(self.state, self.config, d)

    def _state(self):
        return state_dict(self.state, self.config)

    def _load_files(self, d: Path, state) -> None:
        self.state = load_state(d, self.gallery, self.config, state, get_encoder(self.config.embed))
