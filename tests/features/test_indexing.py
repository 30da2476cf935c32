"""Gallery indexing engines (in-process, process pool, Ray) and resumable fits, on a tiny synthetic gallery."""
import os

import h5py
import numpy as np
import pytest

import img2gps.features.indexing as indexing
from img2gps.data import load_dataset
from img2gps.features.indexing import IndexingConfig
from img2gps.predictors.registry import make_predictor
from synth import make_gallery


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return load_dataset(make_gallery(tmp_path_factory.mktemp("g"), n_places=3, views=2))


def fit_rerank(ds, cache, monkeypatch, out, **kw):
    monkeypatch.setenv("IMG2GPS_CACHE", str(cache))  # a fresh cache: every photo is extracted
    p = make_predictor("rerank:vlad=0")
    p.indexing = IndexingConfig(min_pool=0, **kw)
    p.fit(ds)
    p.save(out, thumbnails=False)
    return p


def same_model(a, b):
    ea, eb = np.load(a / "knn" / "embeddings.npy"), np.load(b / "knn" / "embeddings.npy")
    assert ea.shape == eb.shape and np.abs(ea - eb).max() <= 1e-5
    with h5py.File(a / "keypoints.h5") as f, h5py.File(b / "keypoints.h5") as g:
        for k in ("xy", "desc", "offsets", "size"):
            assert np.array_equal(f[k][:], g[k][:]), k


@pytest.fixture(scope="module")
def local_model(small, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("local")
    p = fit_rerank(small, d / "cache", mp, d / "model", workers=1, engine="local")
    mp.undo()
    assert p.indexing_stats.pids == {os.getpid()} and p.indexing_stats.computed == len(small)
    return d / "model"


@pytest.mark.slow
def test_process_pool_equals_in_process(small, local_model, tmp_path, monkeypatch):
    p = fit_rerank(small, tmp_path / "cache", monkeypatch, tmp_path / "model", workers=2, engine="pool", batch=1)
    assert p.indexing_stats.computed == len(small)
    assert p.indexing_stats.pids and os.getpid() not in p.indexing_stats.pids  # ran in worker processes
    same_model(local_model, tmp_path / "model")


@pytest.mark.slow
def test_ray_data_on_two_local_workers_equals_in_process(small, local_model, tmp_path, monkeypatch):
    pytest.importorskip("ray")  # a test dependency (pyproject [test]); skips only where it is not installed
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    p = fit_rerank(small, tmp_path / "cache", monkeypatch, tmp_path / "model", workers=2, engine="ray", batch=1)
    st = p.indexing_stats
    assert st.computed == len(small) and st.pids and os.getpid() not in st.pids  # ran in Ray worker processes
    same_model(local_model, tmp_path / "model")


@pytest.mark.slow
def test_killed_fit_resumes_without_recomputing_finished_photos(small, local_model, tmp_path, monkeypatch):
    calls = []
    real = indexing.extract_photo

    def counting(data, spec, name="photo"):
        if len(calls) == 4 and not hasattr(counting, "resumed"):
            raise KeyboardInterrupt  # the fit is killed after 4 photos
        calls.append(name)
        return real(data, spec, name)

    monkeypatch.setattr(indexing, "extract_photo", counting)
    with pytest.raises(KeyboardInterrupt):
        fit_rerank(small, tmp_path / "cache", monkeypatch, tmp_path / "model", workers=1, engine="local",
                   batch=1)
    first = list(calls)
    assert len(first) == 4
    counting.resumed = True
    p = fit_rerank(small, tmp_path / "cache", monkeypatch, tmp_path / "model", workers=1, engine="local", batch=1)
    resumed = calls[4:]
    assert p.indexing_stats.cached == 4 and p.indexing_stats.computed == len(small) - 4
    assert len(resumed) == len(small) - 4 and not set(resumed) & set(first)  # finished photos not recomputed
    same_model(local_model, tmp_path / "model")


def test_bad_engine_and_progress_line(small, tmp_path, monkeypatch, capsys):
    from img2gps.errors import DataError

    with pytest.raises(DataError, match="--engine"):
        IndexingConfig(engine="spark").check()
    monkeypatch.setenv("IMG2GPS_CACHE", str(tmp_path))
    st = indexing.ensure_features(small, indexing.ExtractSpec(embed="lite0"),
                                  IndexingConfig(workers=1, engine="local", progress=True))
    assert st.computed == len(small)
    err = capsys.readouterr().err
    assert f"{len(small)}/{len(small)} photos" in err and "photos/s" in err and "ETA" in err


def test_in_process_extraction_runs_on_one_thread_like_the_workers(small, tmp_path, monkeypatch):
    """Pool and Ray workers extract on one torch thread; so does the in-process engine, then restores the
    caller's setting: a cached embedding's bytes do not depend on which engine computed it."""
    import torch

    monkeypatch.setenv("IMG2GPS_CACHE", str(tmp_path))
    seen = []

    def fake(data, spec, name="photo"):
        seen.append(torch.get_num_threads())
        return indexing.PhotoFeatures(error="skipped by the test")

    monkeypatch.setattr(indexing, "extract_photo", fake)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        indexing.ensure_features(small, indexing.ExtractSpec(embed="lite0"), IndexingConfig(workers=1, engine="local"),
                                 on_error=lambda name, why: None)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_knn_gallery_embeddings_are_the_same_bytes_in_process_and_in_the_pool(small, tmp_path, monkeypatch):
    got = {}
    for engine, workers in (("local", 1), ("pool", 2)):
        monkeypatch.setenv("IMG2GPS_CACHE", str(tmp_path / engine))  # fresh: every photo is embedded
        p = make_predictor("knn")
        p.indexing = IndexingConfig(min_pool=0, workers=workers, engine=engine, batch=1)
        p.fit(small)
        assert p.indexing_stats.computed == len(small)
        got[engine] = p.state.vectors
    assert got["local"].tobytes() == got["pool"].tobytes()
