"""`img2gps eval --split CSV` scores a saved split (as `data split` writes it) of a dataset; a split that names
photos the dataset lacks is one line naming the file; the gallery-centre baseline shows no radius coverage."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from img2gps.cli import main
from synth import make_gallery


def _setup(tmp_path):
    g = make_gallery(tmp_path / "g", n_places=4, views=3)  # 12 photos, 40 m apart
    assert main(["data", "split", str(g), "--out", str(tmp_path / "s"), "--kind", "random", "--val-frac", "0.25"]) == 0
    val = tmp_path / "s" / "val.csv"
    assert main(["fit", "--data", str(g), "--method", "mean-coordinate", "--exclude", str(val),
                 "--out", str(tmp_path / "m"), "--quiet"]) == 0
    return g, val


def test_eval_scores_the_photos_of_a_split(tmp_path, capsys):
    g, val = _setup(tmp_path)
    names = pd.read_csv(val)["image"].tolist()
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "m"), "--data", str(g), "--split", str(val.parent)]) == 0  # its val.csv
    out = capsys.readouterr().out
    assert f"(split {val})" in out and "3 held-out photos" in out and len(names) == 3
    base_line = next(ln for ln in out.splitlines() if "(gallery centre)" in ln)
    assert "—" in base_line  # the baseline gives no radius: no coverage shown
    # model.json stays strict JSON after eval records its metrics (a baseline's missing figure was written NaN)
    m = json.loads((tmp_path / "m" / "model.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in model.json"))["metrics"]
    (key, rec), = [(k, v) for k, v in m.items() if k.startswith("eval:")]
    assert key.endswith(f"(split {val})") and rec["n"] == 3 and rec["radius_coverage"] is not None


def test_a_split_naming_photos_not_in_the_dataset_is_refused(tmp_path, capsys):
    g, val = _setup(tmp_path)
    bad = tmp_path / "bad.csv"
    pd.concat([pd.read_csv(val), pd.DataFrame([{"image": "elsewhere.jpg", "Latitude": 40.0, "Longitude": -75.0}])]
              ).to_csv(bad, index=False)
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "m"), "--data", str(g), "--split", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: 1 image not in") and "elsewhere.jpg" in err[0]
    assert main(["eval", "--model", str(tmp_path / "m"), "--data", str(g), "--split", str(tmp_path / "no.csv")]) == 2
    assert f"{tmp_path / 'no.csv'}: labels file not found" in capsys.readouterr().err
