"""Local features, geometric verification, caches, VLAD and spatial consensus on synthetic data with known answers."""
import numpy as np
import pytest

from img2gps.localization.consensus import consensus
from img2gps.features.rootsift import FeatureConfig, KeypointCache, extract
from img2gps.verification.local import PairCache, VerifyConfig, mutual_matches, verify_pair
from img2gps.retrieval.vlad import VladCodebook
from rerank_synth import perspective, pil, textured

CFG = FeatureConfig(max_side=400, n_features=600)
VCFG = VerifyConfig()


@pytest.fixture(scope="module")
def kps():
    """Three photos of scene 1 (two perspective views) and four unrelated scenes."""
    base = textured(1)
    same = [base, perspective(base, 11), perspective(base, 12, strength=0.15)]
    other = [textured(s) for s in (2, 3, 4, 5)]
    return [extract(pil(a), CFG) for a in same], [extract(pil(a), CFG) for a in other]


def test_extract_gives_bounded_keypoints_and_uint8_descriptors(kps):
    k = kps[0][0]
    assert 200 <= len(k) <= 1.1 * CFG.n_features
    assert k.desc.dtype == np.uint8 and k.desc.shape == (len(k), 128)
    w, h = k.size
    assert max(w, h) <= CFG.max_side
    assert (k.xy >= 0).all() and (k.xy[:, 0] < w).all() and (k.xy[:, 1] < h).all()
    d = k.unit_desc()
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-4)


def test_extract_downscales_large_photos_and_handles_blank_ones():
    big = extract(pil(textured(7, 1200, 900)), FeatureConfig(max_side=300, n_features=100))
    assert max(big.size) == 300 and len(big) <= 110  # OpenCV keeps ties at the cut: "about" n_features
    blank = extract(pil(np.full((200, 200, 3), 128, np.uint8)), CFG)
    assert len(blank) == 0 and blank.desc.shape == (0, 128)


def test_a_perspective_view_verifies_and_unrelated_scenes_do_not(kps):
    same, other = kps
    for view in same[1:]:
        assert verify_pair(same[0], view, VCFG) >= 100
    for o in other:
        assert verify_pair(same[0], o, VCFG) < VCFG.min_inliers
        assert verify_pair(o, same[1], VCFG) < VCFG.min_inliers


def test_mutual_ratio_matching():
    rng = np.random.default_rng(0)
    a = rng.random((50, 128)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    m = mutual_matches(a, a[::-1].copy())
    assert len(m) == 50 and (m[:, 1] == 49 - m[:, 0]).all()
    # A duplicated descriptor on b's side is ambiguous: the ratio test must drop it.
    b = np.concatenate([a, a[:1]])
    assert 0 not in mutual_matches(a, b)[:, 0]
    assert len(mutual_matches(a[:1], a)) == 0  # fewer than two points: nothing to test


def test_keypoint_cache_round_trip(tmp_path):
    cache = KeypointCache(CFG, root=tmp_path)
    first = [extract(pil(textured(20 + i)), CFG) for i in range(2)]
    for k, kp in zip(["k1", "k2"], first):
        cache.put(k, kp)
    again = [KeypointCache(CFG, root=tmp_path).get(k) for k in ["k1", "k2"]]
    for x, y in zip(first, again):
        assert np.array_equal(x.xy, y.xy) and np.array_equal(x.desc, y.desc) and x.size == y.size
    # other settings live elsewhere; a torn file is recomputed, not trusted
    assert KeypointCache(FeatureConfig(max_side=200), root=tmp_path).get("k1") is None
    cache.memory.clear()  # the in-memory copy would still answer; test the disk
    cache.path("k1").write_bytes(b"torn")
    assert cache.get("k1") is None


def test_pair_cache_round_trip(tmp_path):
    pc = PairCache(CFG, VCFG, root=tmp_path)
    assert pc.get("a", "b") is None
    pc.put("a", "b", 42)
    pc.save()
    again = PairCache(CFG, VCFG, root=tmp_path)
    assert again.get("a", "b") == 42 and again.get("b", "a") is None
    assert PairCache(CFG, VerifyConfig(ransac_px=2.0), root=tmp_path).get("a", "b") is None


def test_vlad_ranks_the_same_scene_first(kps):
    same, other = kps
    descs = [k.unit_desc() for k in same + other]
    cb = VladCodebook.train(descs, k=8)
    v = np.stack([cb.encode(d) for d in descs])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    sims = v[1] @ v.T
    sims[1] = -1
    assert int(np.argmax(sims)) in (0, 2)  # a view of scene 1 is closest to another view of scene 1
    assert not cb.encode(np.zeros((0, 128), np.float32)).any()


# -- consensus ---------------------------------------------------------------------------------------------
def test_consensus_ignores_one_heavy_look_alike_far_away():
    rng = np.random.default_rng(1)
    cluster = rng.normal(0, 3, (4, 2))
    en = np.vstack([cluster, [[80.0, 0.0]]])
    w = np.array([30, 25, 20, 40, 60.0])  # the look-alike has the single strongest match
    c = consensus(en, w, radius_m=15)
    assert np.linalg.norm(c.en - np.average(cluster, axis=0, weights=w[:4])) < 1.0
    assert sorted(c.support.tolist()) == [0, 1, 2, 3]
    assert c.share == pytest.approx(w[:4].sum() / w.sum())
    plain_mean = np.average(en, axis=0, weights=w)
    assert np.linalg.norm(plain_mean) > 20  # what a plain weighted mean would have done


def test_consensus_follows_the_evidence_when_it_is_stronger_elsewhere():
    en = np.array([[0, 0], [2, 0], [100, 100]], float)
    c = consensus(en, [15, 15, 200], radius_m=15)
    assert np.allclose(c.en, [100, 100]) and c.spread_m == 0 and c.support.tolist() == [2]


def test_consensus_single_candidate_and_bad_input():
    c = consensus([[5.0, -3.0]], [20], radius_m=10)
    assert np.allclose(c.en, [5, -3]) and c.share == 1.0
    c = consensus([[0, 0], [4, 0]], [0, 0])  # no evidence at all: equal weights
    assert np.allclose(c.en, [2, 0])
    with pytest.raises(ValueError):
        consensus(np.zeros((0, 2)), [])
