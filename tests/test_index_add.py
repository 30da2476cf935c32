"""`img2gps index add`: append photos to a fitted knn model; the result equals a fit on the union."""
import shutil

import numpy as np
import pandas as pd

from img2gps.cli import main
from synth import make_gallery, offset, scene, write_jpeg


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
    assert "skipped nogps.jpg:" in out.err and "skipped broken.jpg:" in out.err
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
    a = make_gallery(tmp_path / "a", n_places=2, views=2)
    assert main(["fit", "--data", str(a), "--method", "mean-coordinate", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    before = (tmp_path / "m" / "model.json").read_text()
    assert main(["index", "add", "--model", str(tmp_path / "m"), str(a)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be extended" in err[0]
    assert (tmp_path / "m" / "model.json").read_text() == before
