"""The approximate gallery index that `index=auto` picks above EXACT_MAX, on small stand-ins for a large gallery:
float16 re-scoring vectors, exact cosines after re-ranking, recall against exact search, chunked add and scan,
save/load."""
import numpy as np
import pytest

from img2gps.retrieval import database
from img2gps.retrieval.database import CosineIndex, l2_normalise


def _clustered(n, dim=32, seed=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 20, 2), dim))
    return (centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture
def big(monkeypatch):
    """A 2,000-vector gallery that counts as large: EXACT_MAX lowered, scans in small chunks."""
    monkeypatch.setattr(database, "EXACT_MAX", 500)
    monkeypatch.setattr(CosineIndex, "CHUNK", 300)
    return _clustered(2000)


def test_auto_above_exact_max_is_ivfpq_with_half_precision_rows_and_high_recall(big):
    exact = CosineIndex(big, "flat")
    auto = CosineIndex(big)
    assert exact.kind == "flat" and exact.vectors.dtype == np.float32
    assert auto.kind == "ivfpq" and auto.vectors.dtype == np.float16 and len(auto) == len(big)
    assert np.allclose(auto.vectors.astype(np.float32), exact.vectors, atol=1e-3)
    assert auto.index.nprobe == min(auto.index.nlist, database.NPROBE)
    q = l2_normalise(big[::47] + 0.05)
    s, i = auto.search(q, 10)
    es, ei = exact.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i.tolist(), ei.tolist())])
    assert recall >= 0.95, recall
    # re-ranked similarities are exact cosines (to float16 rounding of the stored rows), best first
    assert np.all(np.diff(s, axis=1) <= 1e-6)
    assert np.allclose(s, [exact.vectors[r] @ qq for r, qq in zip(i, q)], atol=2e-3)


def test_dot_and_similarities_scan_half_precision_in_chunks(big):
    auto, exact = CosineIndex(big, "ivfpq"), CosineIndex(big, "flat")
    q = l2_normalise(big[:3])
    d = auto.dot(q)
    assert d.shape == (3, len(big)) and d.dtype == np.float32
    assert np.allclose(d, exact.dot(q), atol=2e-3)
    assert np.allclose(auto.dot(q[0]), d[0], atol=1e-6)
    assert np.allclose(auto.similarities(big[1] * 7.0), exact.similarities(big[1]), atol=2e-3)
    assert auto.recall_vs_exact(10, sample=50) >= 0.95
    # on unclustered vectors one probed cell of ~50 finds few true neighbours, and the measure says so
    flat_cloud = CosineIndex(np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32), "ivfpq")
    flat_cloud.index.nprobe = 1
    assert flat_cloud.recall_vs_exact(10, sample=50) < 0.5


def test_add_in_chunks_equals_one_build_and_save_load_keeps_the_kind(big, tmp_path):
    exact = CosineIndex(big, "flat")
    grown = CosineIndex(big[:700], "flat")
    grown.add(big[700:])
    assert np.array_equal(grown.vectors, exact.vectors)
    assert np.array_equal(grown.search(big[:4], 5)[1], exact.search(big[:4], 5)[1])
    auto = CosineIndex(big)
    auto.add(big[:10] * 2.0)  # appended rows keep the dtype and get the next indices
    assert len(auto) == len(auto.vectors) == 2010 and auto.vectors.dtype == np.float16
    assert set(auto.search(big[:1], 2)[1][0].tolist()) == {0, 2000}
    auto.save(tmp_path)
    again = CosineIndex.load(tmp_path)
    assert again.kind == "ivfpq" and again.vectors.dtype == np.float16
    assert again.index.nprobe == auto.index.nprobe and again.shortlist == database.SHORTLIST
    assert np.array_equal(again.search(big[5:9], 10)[1], auto.search(big[5:9], 10)[1])
    # a model saved before float16 storage (float32 embeddings.npy) loads into the same form
    np.save(tmp_path / "embeddings.npy", auto.vectors.astype(np.float32))
    assert CosineIndex.load(tmp_path).vectors.dtype == np.float16


def test_codes_are_fast_scan_when_the_dimension_allows_it(big):
    assert type(CosineIndex(big).index).__name__ == "IndexIVFPQFastScan"  # 4-bit codes, 4 dims each
    odd = _clustered(2000, dim=30)
    index = CosineIndex(odd, "ivfpq")
    assert type(index.index).__name__ == "IndexIVFPQ" and not index.index.do_polysemous_training
    assert index.search(odd[:3], 1)[1][:, 0].tolist() == [0, 1, 2]
