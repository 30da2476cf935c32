"""A bench run stopped part-way continues from its last finished fold (bench_resume.py), and the query-kind table
reports verified and recognised shares relative to the photos as taken."""
import json

import pandas as pd
import pytest

import img2gps.evaluate as evaluate
from img2gps.bench_resume import FoldCheckpoints, folder_for
from img2gps.data import load_dataset
from img2gps.data.shared_photos import kind_ratios
from img2gps.errors import DataError

SPECS: list[str] = []  # the baseline alone (always run): the fold bookkeeping is what is tested, fast
TIMING = ("fit_s", "predict_ms_p50", "predict_ms_p95")


class Stop(Exception):
    pass


def counting(monkeypatch, fail_at: int | None = None) -> list:
    """Wrap evaluate.run_fold: record (spec, validation photos) per computed fold; raise on call `fail_at`."""
    calls, real = [], evaluate.run_fold

    def run_fold(spec, ds, fold, run, *a, **kw):
        calls.append((spec, tuple(int(i) for i in fold.val)))
        if fail_at is not None and len(calls) == fail_at:
            raise Stop("injected failure")
        return real(spec, ds, fold, run, *a, **kw)
    monkeypatch.setattr(evaluate, "run_fold", run_fold)
    return calls


def untimed(results: dict) -> dict:
    return {k: {m: v for m, v in r.items() if m not in TIMING} for k, r in results.items()}


def bench(ds, ck, **kw):
    kw = {"query_as": ["reencode"], "seed": 0} | kw
    return evaluate.run_bench(ds, "kfold:3", SPECS, progress=False, checkpoint=ck, **kw)


def test_a_stopped_bench_continues_from_its_last_finished_fold(gallery_dir, tmp_path, monkeypatch, capsys):
    ds = load_dataset(gallery_dir)
    calls = counting(monkeypatch)
    full, full_preds = bench(ds, None)  # uninterrupted, no checkpoints
    order = list(calls)
    assert len(order) == 3

    ck = folder_for(tmp_path / "out.json")
    calls = counting(monkeypatch, fail_at=2)  # fold 2 fails
    with pytest.raises(Stop):
        bench(ds, ck)
    assert len(list(ck.glob("*.fold.json"))) == 1  # fold 1, saved
    calls = counting(monkeypatch)
    again, again_preds = bench(ds, ck)
    assert calls == order[1:]  # only the remaining folds were computed
    assert "resuming: 1 finished fold read" in capsys.readouterr().err
    assert again.pop("resumed_folds") == 1 and "resumed_folds" not in full
    assert untimed(again["results"]) == untimed(full["results"])
    assert [{k: v for k, v in r.items() if k != "ms p50"} for r in again["table"]] == \
        [{k: v for k, v in r.items() if k != "ms p50"} for r in full["table"]]
    cols = [c for c in full_preds.columns if c != "predict_ms"]
    pd.testing.assert_frame_equal(again_preds[cols], full_preds[cols])

    # another run (here another seed of the transformations) does not reuse them, and says so
    calls = counting(monkeypatch)
    bench(ds, ck, seed=1)
    assert len(calls) == 3 and "starting fresh" in capsys.readouterr().err
    FoldCheckpoints.remove(ck)
    assert not ck.exists()


def test_a_foreign_folder_is_never_used(gallery_dir, tmp_path):
    ds = load_dataset(gallery_dir)
    ck = folder_for(tmp_path / "out.json")
    ck.mkdir()
    (ck / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not a bench checkpoint folder"):
        bench(ds, ck)
    FoldCheckpoints.remove(ck)
    assert (ck / "mine.txt").read_text() == "user data"


def test_the_kind_table_gives_verified_and_recognised_shares_relative_to_the_photos_as_taken():
    def rows(sources):
        return pd.DataFrame({"error_m": 10.0, "radius_m": 20.0, "z2": 0.1, "predict_ms": 5.0, "source": sources,
                             "recognised": [s in ("consensus", "pose") for s in sources]})
    taken = evaluate.metrics(rows(["consensus", "scene", "scene", "fallback"]))
    crop = evaluate.metrics(rows(["pose", "fallback", "scene", "fallback"]))
    assert (taken["verified_frac"], taken["recognised_frac"]) == (0.75, 0.25)
    assert (crop["verified_frac"], crop["recognised_frac"]) == (0.5, 0.25)
    (row,) = kind_ratios({"m": taken, "m as crop": crop}, ["m"], ["crop"])
    assert row["verified"] == 0.5 and row["verified ratio"] == pytest.approx(0.5 / 0.75)
    assert row["recognised"] == 0.25 and row["recognised ratio"] == 1.0
    (row,) = kind_ratios({"m": taken | {"verified_frac": 0.0}, "m as crop": crop}, ["m"], ["crop"])
    assert row["verified ratio"] is None  # no ratio to nothing
    json.dumps(row)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["penn91", "bgu-west"])
def test_bench_cli_resumes_after_ctrl_c(name, tmp_path, monkeypatch, capsys):
    from conftest import SHARED_DATA
    from img2gps.cli import main

    data = (SHARED_DATA / name).resolve()
    if not (data / "labels.csv").exists():
        pytest.skip(f"../shared/data/{name} not present")
    out = tmp_path / "r.json"
    argv = ["bench", "--data", str(data), "--protocol", "kfold:5", "--folds", "1,2", "--methods", "mean-coordinate",
            "--query-as", "reencode", "--json", str(out), "--no-plots"]
    real, calls = evaluate.run_fold, []

    def interrupted(*a, **kw):  # the user presses Ctrl-C during fold 2
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(evaluate, "run_fold", interrupted)
    assert main(argv) == 130 and not out.exists() and folder_for(out).is_dir()
    monkeypatch.setattr(evaluate, "run_fold", real)
    assert main(argv) == 0
    assert "resuming: 1 finished fold read" in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["folds_run"] == [1, 2] and "mean-coordinate as reencode" in res["results"]
    assert res["results"]["mean-coordinate"]["verified_frac"] == 0.0  # the baseline verifies nothing
    # a partial run keeps its folds for a later run of more folds; a run of all folds removes them
    assert len(list(folder_for(out).glob("*.fold.json"))) == 2
    del argv[argv.index("--folds"):argv.index("--folds") + 2]  # now all five folds
    calls.clear()
    monkeypatch.setattr(evaluate, "run_fold", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    assert main(argv) == 0 and len(calls) == 3  # folds 3-5 only
    assert json.loads(out.read_text())["resumed_folds"] == 2
    assert not folder_for(out).exists()  # the JSON holds every fold now


def test_bench_json_is_strict_json_without_nan(tmp_path):
    """A figure that does not exist (NaN) is written as null: strict JSON readers reject a bare NaN."""
    import json

    import numpy as np
    import pandas as pd

    from img2gps.bench_outputs import write_outputs

    out = tmp_path / "m.json"
    write_outputs(out, {"protocol": "loo", "results": {"knn": {"radius_median_m": float("nan"), "n": np.int64(3),
                                                             "mean_m": np.float32(1.5)}}}, pd.DataFrame(), plots=False)
    doc = json.loads(out.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert doc["results"]["knn"] == {"radius_median_m": None, "n": 3, "mean_m": 1.5}
