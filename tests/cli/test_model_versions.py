"""Models from another version (issue 30): a refused model says in one line which code wrote it; `verify` accepts
exactly what `predict` loads; the demo's model cache is keyed by the code, so a model fitted by other code is
never reused silently."""
from __future__ import annotations

import json

import pytest

from img2gps.cli import main
from img2gps.errors import ModelError
from img2gps.modeldir import FORMAT_VERSION
from img2gps.predictors import load_model
from states import hand_built_knn
from synth import make_gallery


def _rewrite(md, **changes):
    man = json.loads((md / "model.json").read_text())
    (md / "model.json").write_text(json.dumps({**man, **changes}))
    return man


def test_a_model_of_another_format_is_refused_naming_the_code_that_wrote_it(tmp_path, capsys):
    md = hand_built_knn(tmp_path / "m", "knn:k=2", 8)
    man = json.loads((md / "model.json").read_text())
    assert man["format_version"] == FORMAT_VERSION and len(man["code_fingerprint"]) == 20
    _rewrite(md, format_version=1, package_versions={"img2gps": "0.0.9"}, code_fingerprint="abcdef0123456789abcd")
    with pytest.raises(ModelError) as e:
        load_model(md)
    msg = str(e.value)
    assert "written by img2gps 0.0.9, code abcdef0123 (model format 1)" in msg and "re-fit" in msg
    assert "\n" not in msg
    for cmd in (["verify", "--model", str(md)], ["predict", str(tmp_path / "q.jpg"), "--model", str(md)]):
        make_gallery(tmp_path / "g", n_places=1, views=1)
        (tmp_path / "q.jpg").write_bytes(next((tmp_path / "g" / "images").iterdir()).read_bytes())
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "written by img2gps 0.0.9" in err, err


def test_verify_refuses_what_predict_refuses(tmp_path, capsys):
    md = hand_built_knn(tmp_path / "m", "knn:k=2", 8)
    assert main(["verify", "--model", str(md)]) == 0
    man = json.loads((md / "model.json").read_text())
    for change in ({"bogus": 1}, {"k": 0}):  # model.json is not among its own checksums: only loading sees these
        _rewrite(md, config={**man["config"], **change})
        with pytest.raises(ModelError) as e:
            load_model(md)
        assert main(["verify", "--model", str(md)]) == 2
        assert str(e.value) in capsys.readouterr().err


def test_the_demo_cache_is_keyed_by_the_code(tmp_path, monkeypatch):
    from img2gps import provenance
    from img2gps.cli.demo import cached_model
    from img2gps.data import load_dataset

    gallery = load_dataset(make_gallery(tmp_path / "g", n_places=3, views=2))
    _, d1, cached = cached_model(gallery, "mean-coordinate")
    assert not cached and cached_model(gallery, "mean-coordinate")[2]  # same code: reused
    monkeypatch.setattr(provenance, "code_fingerprint", lambda: "0123456789" * 2)  # other code
    _, d2, cached = cached_model(gallery, "mean-coordinate")
    assert not cached and d2 != d1
