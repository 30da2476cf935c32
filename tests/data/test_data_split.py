"""`img2gps data split`: seeded random and location-disjoint splits, the buffer property, safe output."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from img2gps.cli import main
from img2gps.data.sources import load_dataset
from img2gps.data.splits import split_from_dir
from img2gps.geo import LocalFrame, pairwise_m

BASE = (39.9515, -75.1915)


def make_dataset(root: Path, n: int = 60, seed: int = 0) -> Path:
    """Photos in a few bursts (several photos a metre apart), like real campus data."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-150, 150, (n // 4, 2))
    en = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 1.5, (n, 2))
    lat, lon = LocalFrame(*BASE).to_latlon(en)
    (root / "images").mkdir(parents=True)
    names = []
    for i in range(n):
        names.append(f"p{i:03d}.jpg")
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / "images" / names[-1])
    pd.DataFrame({"image": names, "Latitude": lat, "Longitude": lon, "time": "", "device": "cam"}).to_csv(
        root / "labels.csv", index=False)
    return root


def split(*args) -> int:
    return main(["data", "split", *map(str, args)])


def _en(df_all: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    f = LocalFrame.around(df_all.Latitude, df_all.Longitude)
    return f.to_en(df.Latitude, df.Longitude)


def test_both_kinds_files_report_and_buffer(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "splits"
    assert split(ds, "--out", out) == 0
    full = pd.read_csv(ds / "labels.csv")
    rep = json.loads((out / "split_report.json").read_text())
    for kind in ("random", "geo"):
        tr, va = pd.read_csv(out / kind / "train.csv"), pd.read_csv(out / kind / "val.csv")
        assert list(tr.columns) == list(full.columns) == list(va.columns)
        assert not set(tr.image) & set(va.image)
        s = rep["splits"][kind]
        assert (s["train"], s["val"]) == (len(tr), len(va))
        assert len(tr) + len(va) + s["dropped_by_buffer"] == len(full)
        d = pairwise_m(_en(full, va), _en(full, tr)).min(axis=1)
        assert s["val_to_nearest_train_m"]["min"] == pytest.approx(d.min(), abs=0.01)
        assert s["val_to_nearest_train_m"]["median"] == pytest.approx(np.median(d), abs=0.01)
    assert rep["splits"]["random"]["val"] == 12 and rep["splits"]["random"]["train"] == 48  # seeded 80/20
    geo_tr, geo_va = pd.read_csv(out / "geo" / "train.csv"), pd.read_csv(out / "geo" / "val.csv")
    # The buffer: no training photo within R = 10 m of any validation photo.
    assert pairwise_m(_en(full, geo_tr), _en(full, geo_va)).min() > 10.0
    assert rep["splits"]["geo"]["val_with_train_within_10m"] == 0
    assert 0.1 * 60 <= len(geo_va) <= 0.45 * 60
    # Bursts make a random split leak: some validation photo has a training photo metres away.
    assert rep["splits"]["random"]["val_to_nearest_train_m"]["min"] < 10
    # The lead's bench reader takes these folders as they are.
    d = load_dataset(ds)
    fold = split_from_dir(out / "geo", d)
    assert sorted(np.array(d.ids)[fold.val]) == sorted(geo_va.image)


def test_single_kind_radius_and_determinism(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert split(ds, "--out", a, "--kind", "geo", "--radius", 30) == 0
    assert split(ds, "--out", b, "--kind", "geo", "--radius", 30) == 0
    assert sorted(p.name for p in a.iterdir()) == ["split_report.json", "train.csv", "val.csv"]
    for f in ("train.csv", "val.csv"):
        assert (a / f).read_text() == (b / f).read_text()
    full = pd.read_csv(ds / "labels.csv")
    tr, va = pd.read_csv(a / "train.csv"), pd.read_csv(a / "val.csv")
    assert pairwise_m(_en(full, tr), _en(full, va)).min() > 30.0
    assert split(ds, "--out", c, "--kind", "random", "--seed", 7, "--val-frac", 0.25) == 0
    assert len(pd.read_csv(c / "val.csv")) == 15
    assert split(ds, "--out", tmp_path / "d", "--kind", "random", "--seed", 8, "--val-frac", 0.25) == 0
    assert (c / "val.csv").read_text() != (tmp_path / "d" / "val.csv").read_text()


def test_refuses_dataset_folder_and_non_empty_output(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")
    before = sorted(p.name for p in ds.rglob("*"))
    assert split(ds, "--out", ds / "splits") == 2
    assert split(ds, "--out", ds) == 2
    assert sorted(p.name for p in ds.rglob("*")) == before
    out = tmp_path / "s"
    assert split(ds, "--out", out, "--kind", "random") == 0
    assert split(ds, "--out", out, "--kind", "random") == 2
    assert "not empty" in capsys.readouterr().err
    assert split(ds, "--out", out, "--kind", "geo", "--overwrite") == 0
    assert json.loads((out / "split_report.json").read_text())["splits"].keys() == {"geo"}
    for bad in (["--kind", "spatial"], ["--val-frac", "1.5"], ["--radius", "-1"]):
        assert split(ds, "--out", tmp_path / "bad", *bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error:") for e in err)
    assert not (tmp_path / "bad").exists()


def test_split_of_a_parquet_dataset(tmp_path):
    rows = []
    for i, (e, n) in enumerate([(0, 0), (1, 0), (60, 0), (61, 1), (120, 0), (0, 90), (1, 91), (200, 200)]):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(buf, "JPEG")
        la, lo = LocalFrame(*BASE).to_latlon(np.array([e, n], float))
        rows.append({"image": {"bytes": buf.getvalue(), "path": f"x{i}.jpg"}, "Latitude": la, "Longitude": lo})
    pq = tmp_path / "set.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    out = tmp_path / "s"
    assert split(pq, "--out", out, "--val-frac", 0.25, "--radius", 5) == 0
    rep = json.loads((out / "split_report.json").read_text())
    assert rep["n"] == 8 and rep["splits"]["geo"]["val_to_nearest_train_m"]["min"] > 5
