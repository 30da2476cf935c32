"""The bounded-memory parts of the gallery database on synthetic data: the HDF5 keypoint store, sampled score
statistics, range-search neighbour lists, the streaming VLAD codebook."""
import numpy as np
import pytest

from img2gps.errors import ModelError
from img2gps.retrieval.database import neighbours_within, pair_stats
from img2gps.retrieval.vlad import VladCodebook
from img2gps.features.rootsift import Keypoints
from img2gps.verification.store import KeypointLRU, KeypointStore, gallery_form, write_store


def _kp(rng, n):  # as a gallery holds them: positions on the store's grid
    return gallery_form(Keypoints(rng.random((n, 2), np.float32) * 400, rng.integers(0, 256, (n, 128), dtype=np.uint8),
                                  (400, 300)), 0)


def test_store_round_trip_reads_only_requested_photos(tmp_path):
    rng = np.random.default_rng(0)
    kps = [_kp(rng, n) for n in (50, 0, 120, 7, 300)]
    path = tmp_path / "keypoints.h5"
    write_store(path, iter(kps), len(kps), "sift-test")
    store = KeypointStore.open(path, len(kps), "sift-test", cache_bytes=10**9)
    for i in (4, 1, 0):
        got = store.get(i)
        assert np.array_equal(got.xy, kps[i].xy) and np.array_equal(got.desc, kps[i].desc)
        assert got.desc.dtype == np.uint8 and got.size == (400, 300)
    assert sorted(store.cache.keys()) == [0, 1, 4]  # nothing else was read
    assert store.unit_desc(0).dtype == np.float32 and np.allclose(np.linalg.norm(store.unit_desc(0), axis=1), 1, atol=1e-5)
    assert list(store.counts) == [50, 0, 120, 7, 300]
    with pytest.raises(ModelError, match="holds 5 photos, the gallery 6"):
        KeypointStore.open(path, 6, "sift-test")
    with pytest.raises(ModelError, match="expects 'sift-other'"):
        KeypointStore.open(path, 5, "sift-other")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="bad.h5: unreadable keypoint store"):
        KeypointStore.open(tmp_path / "bad.h5", 5, "sift-test")


def test_lru_is_bounded_in_bytes():
    rng = np.random.default_rng(1)
    one = _kp(rng, 100)
    lru = KeypointLRU(max_bytes=3 * one.nbytes + 10)
    for i in range(10):
        lru.put(i, _kp(rng, 100))
    assert lru.bytes <= 3 * one.nbytes + 10 and sorted(lru.keys()) == [7, 8, 9]
    kp = lru.get(7)
    kp.unit_desc(True)  # its float32 RootSIFT form now counts too
    lru.touch(7, kp)
    # its true size (5x the raw bytes) is over the bound alone: the others go, the one in use stays
    assert sorted(lru.keys()) == [7] and lru.bytes == kp.nbytes > lru.max_bytes
    lru = KeypointLRU(max_bytes=3 * kp.nbytes)
    for i in range(10):  # every entry grows after it is cached, as the fit's VLAD pass does
        lru.put(i, _kp(rng, 100))
        lru.get(i).unit_desc(True)
        lru.touch(i, lru.get(i))
        assert lru.bytes == sum(lru.get(j).nbytes for j in lru.keys()) <= lru.max_bytes
    assert sorted(lru.keys()) == [7, 8, 9]


def test_pair_stats_exact_when_small_and_close_when_sampled():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(600, 16)).astype(np.float32) + 0.5
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    s = v @ v.T
    off = s[~np.eye(len(v), dtype=bool)]
    assert pair_stats(v) == (float(off.mean()), float(off.std() + 1e-6))
    m, sd = pair_stats(v, max_rows=200)
    assert abs(m - off.mean()) < 0.02 and abs(sd - off.std()) < 0.02


def test_neighbours_within_matches_the_distance_matrix():
    rng = np.random.default_rng(3)
    en = rng.random((300, 2)) * 200
    en[10] = en[11]  # an exact duplicate position: within 0 m
    d = np.linalg.norm(en[:, None] - en[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    for r, k in ((15.0, 4), (0.0, 4), (40.0, 2)):
        want = [[int(j) for j in np.argsort(row, kind="stable")[:k] if row[j] <= r] for row in d]
        assert neighbours_within(en, r, k) == want
    assert neighbours_within(en, 0.0, 4)[10] == [11]


def test_streaming_codebook_equals_the_in_memory_one():
    rng = np.random.default_rng(4)
    descs = [rng.random((n, 16), np.float32) for n in (300, 0, 500, 250)]
    descs = [d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9) for d in descs]
    pool = np.concatenate([d for d in descs if len(d)])
    import faiss

    for sample in (400, 5000):  # sampled, and everything
        # the sample the in-memory version drew: rows of the concatenation of all descriptors
        rows = np.random.default_rng(0).choice(len(pool), sample, replace=False) if len(pool) > sample else slice(None)
        km = faiss.Kmeans(16, 8, niter=10, seed=0, verbose=False, spherical=True)
        km.train(np.ascontiguousarray(pool[rows]))
        a = VladCodebook(km.centroids)
        reads = []
        b = VladCodebook.train_from([len(d) for d in descs], lambda i: reads.append(i) or descs[i], k=8, sample=sample)
        assert np.array_equal(a.centroids, b.centroids)
        assert 1 not in reads  # an empty photo is never read
    assert len(pool) == 1050


def _clustered(n, dim=64, seed=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 20, 2), dim))
    v = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, dim))
    return v.astype(np.float32)


@pytest.mark.slow
def test_index_factory_by_size_and_approximate_recall(tmp_path, monkeypatch):
    from img2gps.retrieval import database
    from img2gps.retrieval.database import CosineIndex, resolve_kind

    assert resolve_kind("auto", 100_000) == "flat" and resolve_kind("auto", 100_001) == "ivfpq"
    with pytest.raises(ValueError, match="unknown index kind"):
        resolve_kind("lsh", 10)
    v = _clustered(3000)
    exact = CosineIndex(v, "flat")
    assert exact.kind == "flat" and exact.recall_vs_exact() == 1.0
    monkeypatch.setattr(database, "EXACT_MAX", 1000)  # a small gallery standing in for a large one
    auto = CosineIndex(v)
    assert auto.kind == "ivfpq"
    for index in (auto, CosineIndex(v, "hnsw")):
        r = index.recall_vs_exact(10, sample=100)
        assert 0.8 <= r <= 1.0, (index.kind, r)
        s, i = index.search(v[:5], 10)
        es, ei = exact.search(v[:5], 10)
        assert (i[:, 0] == ei[:, 0]).all() and np.allclose(s[:, 0], es[:, 0], atol=1e-5)  # own vector first, exact cosine
        index.save(tmp_path)
        again = CosineIndex.load(tmp_path, index.kind)
        assert again.kind == index.kind and np.array_equal(again.search(v[:5], 10)[1], i)


def test_knn_spec_index_option_reaches_the_model(gallery_dir, tmp_path):
    import json

    from img2gps.data import load_dataset
    from img2gps.errors import ModelError
    from img2gps.predictors import load_model, make_predictor

    with pytest.raises(ModelError, match="index must be one of"):
        make_predictor("knn:index=lsh")
    p = make_predictor("knn:k=1:index=hnsw")
    p.fit(load_dataset(gallery_dir))
    rep = p.fit_report()["index"]
    assert rep["kind"] == "hnsw" and 0.0 <= rep["recall_at_10_vs_exact"] <= 1.0
    p.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["state"]["index"]["kind"] == "hnsw"
    assert load_model(tmp_path / "m").state.index.kind == "hnsw"


def test_load_hashes_small_files_and_verify_hashes_everything(tmp_path, monkeypatch, capsys):
    from img2gps import modeldir
    from img2gps.cli import main

    def files(d):
        (d / "small.bin").write_bytes(b"s" * 10)
        (d / "big.bin").write_bytes(b"b" * 1000)

    modeldir.write_model_dir(tmp_path / "m", {"spec": "x", "method": "x"}, files)
    man = modeldir.read_manifest(tmp_path / "m", verify="full")
    assert man["sizes"] == {"small.bin": 10, "big.bin": 1000}
    monkeypatch.setattr(modeldir, "QUICK_HASH_MAX", 100)
    (tmp_path / "m" / "big.bin").write_bytes(b"B" * 1000)  # same size, different bytes
    modeldir.read_manifest(tmp_path / "m")  # quick: the big file is only size-checked
    with pytest.raises(ModelError, match="big.bin is corrupted \\(checksum mismatch\\)"):
        modeldir.read_manifest(tmp_path / "m", verify="full")
    assert main(["verify", "--model", str(tmp_path / "m")]) != 0
    assert "big.bin is corrupted" in capsys.readouterr().err
    (tmp_path / "m" / "big.bin").write_bytes(b"b" * 999)
    with pytest.raises(ModelError, match="big.bin is corrupted \\(size 999, expected 1000\\)"):
        modeldir.read_manifest(tmp_path / "m")
    (tmp_path / "m" / "small.bin").write_bytes(b"t" * 10)
    (tmp_path / "m" / "big.bin").write_bytes(b"b" * 1000)
    with pytest.raises(ModelError, match="small.bin is corrupted \\(checksum mismatch\\)"):
        modeldir.read_manifest(tmp_path / "m")
    (tmp_path / "m" / "small.bin").write_bytes(b"s" * 10)
    modeldir.read_manifest(tmp_path / "m", verify="full")  # every file matches again
    # verify then loads the model as predict would: this hand-written one names no real method (issue 30)
    assert main(["verify", "--model", str(tmp_path / "m")]) == 2
    assert "unknown method 'x'" in capsys.readouterr().err


def test_exact_index_is_stored_once_and_loads_the_same(tmp_path):
    from img2gps.retrieval.database import CosineIndex

    v = _clustered(200)
    flat = CosineIndex(v, "flat")
    flat.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npy"]  # no second copy in index.faiss
    again = CosineIndex.load(tmp_path, "auto")
    assert again.kind == "flat" and np.array_equal(again.search(v[:7], 5)[1], flat.search(v[:7], 5)[1])


def test_process_keypoint_memory_counts_only_raw_arrays_and_gallery_writes_skip_it(tmp_path):
    """Unit descriptors derived from a cached photo (4x its raw bytes) live with the caller, not in the
    process-wide LRU, whose byte bound would otherwise not hold; indexing writes go to disk only."""
    from img2gps.features.rootsift import FeatureConfig, KeypointCache

    rng = np.random.default_rng(6)
    cache = KeypointCache(FeatureConfig(max_side=64, n_features=10), root=tmp_path)
    memory = cache.memory  # the process-wide LRU in front of every keypoint cache
    memory.clear()
    raw = [_kp(rng, 200) for _ in range(5)]
    for i, kp in enumerate(raw):
        cache.put(f"k{i}", kp)
    assert memory.bytes == sum(k.nbytes for k in raw)
    got = cache.get("k0")
    got.unit_desc(True)
    assert got.nbytes > 4 * raw[0].nbytes and memory.bytes == sum(k.nbytes for k in raw)
    again = cache.get("k0")
    assert np.array_equal(again.desc, raw[0].desc) and again.nbytes == raw[0].nbytes  # a fresh object
    cache.put("gallery", _kp(rng, 50), remember=False)
    assert memory.bytes == sum(k.nbytes for k in raw) and cache.has("gallery")
    assert len(cache.get("gallery")) == 50  # read back from disk (and only now remembered)
    memory.clear()


def test_vlad_encode_all_equals_encoding_one_by_one():
    rng = np.random.default_rng(7)
    descs = [rng.random((n, 16), np.float32) for n in (40, 0, 90)]
    cb = VladCodebook(rng.random((4, 16)).astype(np.float32))
    assert np.array_equal(cb.encode_all(descs.__getitem__, 3), np.stack([cb.encode(d) for d in descs]))
