"""`img2gps index add`: append photos to a fitted knn model; the result equals a fit on the union."""
import shutil

import numpy as np
import pandas as pd
import pytest

from img2gps.cli import main
from synth import make_gallery, offset, scene, write_jpeg


@pytest.mark.slow
def test_index_add_equals_fit_on_union_and_skips_bad_photos(tmp_path, capsys):
    a = make_gallery(tmp_path / "a", n_places=3, views=2)
    raw = tmp_path / "raw"
    for k in range(3):  # new places, positions from EXIF (read exactly as `data build` reads them)
        write_jpeg(raw / f"new{k}.jpg", scene(500 + k), *offset(500 + 40 * k, 300))
    write_jpeg(raw / "nogps.jpg", scene(600))
    (raw / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["fit", "--data", str(a), "--method", "knn", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    old = np.load(tmp_path / "m" / "embeddings.npy")
    capsys.readouterr()
    assert main(["index", "add", "--model", str(tmp_path / "m"), str(raw), "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "added 3 photos" in out.out
    assert f"skipped {raw / 'nogps.jpg'}:" in out.err and f"skipped {raw / 'broken.jpg'}:" in out.err
    new = np.load(tmp_path / "m" / "embeddings.npy")
    assert new.shape[0] == len(old) + 3 and np.array_equal(new[:len(old)], old)  # existing rows untouched
    g = pd.read_csv(tmp_path / "m" / "gallery.csv")
    assert g["image"].tolist()[-3:] == ["new0.jpg", "new1.jpg", "new2.jpg"]
    assert len(list((tmp_path / "m" / "thumbs").iterdir())) == len(g)

    # the same photos fitted at once: the union dataset = a + the built new photos
    assert main(["data", "build", str(raw), str(tmp_path / "b")]) == 0
    u = tmp_path / "u"
    shutil.copytree(a, u)
    for f in (tmp_path / "b" / "images").iterdir():
        shutil.copy(f, u / "images" / f.name)
    lab = pd.concat([pd.read_csv(a / "labels.csv"), pd.read_csv(tmp_path / "b" / "labels.csv")[["image", "Latitude", "Longitude"]]])
    lab.to_csv(u / "labels.csv", index=False)
    assert main(["fit", "--data", str(u), "--method", "knn", "--out", str(tmp_path / "mu"), "--quiet"]) == 0
    gu = pd.read_csv(tmp_path / "mu" / "gallery.csv")
    assert gu["image"].tolist() == g["image"].tolist()
    assert np.abs(np.load(tmp_path / "mu" / "embeddings.npy") - new).max() <= 1e-5

    # predict finds an added photo
    from img2gps.predictors.registry import load_model

    pred = load_model(tmp_path / "m").predict([raw / "new1.jpg"])[0]
    assert pred.neighbours[0].image_id == "new1.jpg"


def test_index_add_refuses_other_methods(tmp_path, capsys):
    a = make_gallery(tmp_path / "a", n_places=3, views=2)  # 6 photos: enough to calibrate a radius
    assert main(["fit", "--data", str(a), "--method", "mean-coordinate", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    before = (tmp_path / "m" / "model.json").read_text()
    assert main(["index", "add", "--model", str(tmp_path / "m"), str(a)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be extended" in err[0]
    assert (tmp_path / "m" / "model.json").read_text() == before


@pytest.mark.slow
def test_index_add_to_rerank_keeps_existing_keypoints(tmp_path, capsys):
    import h5py

    from img2gps.predictors.registry import load_model

    a = make_gallery(tmp_path / "a", n_places=3, views=2)
    b = make_gallery(tmp_path / "b", n_places=5, views=2)  # places 3 and 4 are new; rename to avoid clashes
    lab = pd.read_csv(b / "labels.csv")
    lab = lab[lab["image"].str.startswith(("place03", "place04"))].copy()
    for n in lab["image"]:
        (b / "images" / n).rename(b / "images" / f"b_{n}")
    lab["image"] = "b_" + lab["image"]
    lab.to_csv(b / "labels.csv", index=False)
    m = tmp_path / "m"
    assert main(["fit", "--data", str(a), "--method", "rerank:vlad=8", "--out", str(m), "--quiet"]) == 0
    with h5py.File(m / "keypoints.h5") as f:
        old = {k: f[k][:] for k in ("xy", "desc", "offsets", "size")}
    old_emb = np.load(m / "knn" / "embeddings.npy")
    assert main(["index", "add", "--model", str(m), str(b), "--workers", "1", "--quiet"]) == 0
    with h5py.File(m / "keypoints.h5") as f:
        n = old["offsets"][-1]
        assert np.array_equal(f["xy"][:n], old["xy"]) and np.array_equal(f["desc"][:n], old["desc"])
        assert np.array_equal(f["offsets"][:len(old["offsets"])], old["offsets"]) and len(f["size"]) == 10
    assert np.array_equal(np.load(m / "knn" / "embeddings.npy")[:6], old_emb)
    p = load_model(m)
    assert len(p.gallery) == 10 and p.gallery["image"].tolist()[-1] == "b_place04_view1.jpg"
    got = p.predict([b / "images" / "b_place04_view1.jpg"])[0]
    assert got.recognised and got.neighbours[0].image_id == "b_place04_view1.jpg"
