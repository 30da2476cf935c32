"""What a gallery photo keeps in rerank's keypoint store (verification/store.py gallery_form) and what it costs on
disk: the first-listed keypoints, spread over the photo, positions stored exactly, a bounded number of bytes each."""
import numpy as np

from img2gps.features.rootsift import FeatureConfig, Keypoints, extract
from img2gps.verification.store import GRID, KeypointStore, gallery_form, spread, write_store, xy_scale
from rerank_synth import pil, textured


def test_spread_keeps_each_cells_first_listed_up_to_a_common_quota():
    rng = np.random.default_rng(0)
    # in priority order: 300 points crowded into the top-left cell, then 60 spread over the whole photo
    crowd = rng.random((300, 2)) * [400 / GRID, 300 / GRID]
    rest = rng.random((60, 2)) * [400 - 400 / GRID, 300] + [400 / GRID, 0]  # none in that cell
    xy = np.vstack([crowd, rest]).astype(np.float32)
    keep = spread(xy, (400, 300), 100)
    assert len(keep) == 100 and np.all(np.diff(keep) > 0)
    assert set(range(300, 360)) <= set(keep.tolist())  # every point outside the crowded cell is kept
    assert keep[:40].tolist() == list(range(40))  # the crowded cell keeps its 40 first-listed, not any 40
    assert len(spread(xy, (400, 300), 0)) == len(spread(xy, (400, 300), 1000)) == 360  # no cap / under the cap


def test_gallery_form_is_idempotent_and_the_store_reads_it_back_exactly(tmp_path):
    kps = [extract(pil(textured(s, 480, 360)), FeatureConfig(480, 800)) for s in range(3)]
    kps.append(Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (640, 480)))
    forms = [gallery_form(k, 400) for k in kps]
    assert [len(f) for f in forms[:3]] == [400] * 3 and len(forms[3]) == 0
    for k, f in zip(kps, forms):
        again = gallery_form(f, 400)
        assert np.array_equal(again.xy, f.xy) and np.array_equal(again.desc, f.desc)
        assert np.abs(f.xy - k.xy[spread(k.xy, k.size, 400)]).max(initial=0) <= 0.5 / xy_scale(k.size)
    write_store(tmp_path / "k.h5", iter(forms), len(forms), "sift-test-g400")
    store = KeypointStore.open(tmp_path / "k.h5", len(forms), "sift-test-g400")
    for i, f in enumerate(forms):
        got = store.get(i)
        assert got.xy.dtype == np.float32 and np.array_equal(got.xy, f.xy) and np.array_equal(got.desc, f.desc)


def test_stored_bytes_per_keypoint(tmp_path):
    """Real SIFT descriptors (uint8, gzip) and uint16 positions: under 120 B a keypoint (128 + 8 before), counted
    as what a second photo adds to the file (the file's fixed part is a few KB)."""
    forms = [gallery_form(extract(pil(textured(10 + s, 640, 480)), FeatureConfig(640, 1500)), 500) for s in range(2)]
    sizes = []
    for k in (1, 2):
        write_store(tmp_path / f"k{k}.h5", iter(forms[:k]), k, "sift-test")
        sizes.append((tmp_path / f"k{k}.h5").stat().st_size)
    per_kp = (sizes[1] - sizes[0]) / len(forms[1])
    assert len(forms[1]) == 500 and 60 < per_kp < 120, per_kp
