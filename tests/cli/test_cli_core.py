import json

import pytest

from img2gps.cli import main


@pytest.mark.slow
def test_fit_bench_eval_demo_cli(gallery_dir, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["fit", "--data", str(gallery_dir), "--method", "knn:k=1", "--out", str(model),
                 "--exclude", "place00_view2.jpg,place01_view2.jpg"]) == 0
    assert main(["fit", "--data", str(gallery_dir), "--method", "knn:k=1", "--out", str(model)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert main(["bench", "--data", str(gallery_dir), "--protocol", "kfold-geo:3:5", "--methods", "knn:k=1",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["protocol"] == "kfold-geo:3:5" and "knn:k=1" in res["results"]
    assert (tmp_path / "r.predictions.csv").exists() and (tmp_path / "r.cdf.png").exists()
    assert main(["eval", "--model", str(model), "--data", str(gallery_dir)]) == 0
    man = json.loads((model / "model.json").read_text())
    assert any(k.startswith("eval:") for k in man["metrics"])
    assert main(["demo", "--data", str(gallery_dir), "--method", "knn:k=1", "--out", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    assert "held-out" in text and (tmp_path / "demo" / "demo_map.png").exists()
    # the demo prints how to use its model, with the real path: the printed predict command works as printed
    import shlex

    line = next(ln for ln in text.splitlines() if ln.strip().startswith("img2gps predict"))
    argv = shlex.split(line.strip())[1:]
    argv[argv.index("PHOTO.jpg")] = str(gallery_dir / "images" / "place01_view2.jpg")
    assert main(argv) == 0
    assert "img2gps serve --model" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "--data", str(tmp_path / "nope"), "--methods", "knn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not found" in err and "\n" not in err
    assert main(["fit", "--data", str(tmp_path), "--method", "knn:q=1", "--out", str(tmp_path / "m")]) == 2
    assert "unknown option" in capsys.readouterr().err
    (tmp_path / "labels.csv").write_text("image,Latitude,Longitude\n")
    assert main(["bench", "--data", str(tmp_path), "--protocol", "bogus"]) == 2


def test_version_and_clean_help_texts(capsys):
    import re

    from img2gps import __version__
    from img2gps.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"img2gps {__version__}"
    import typer

    from img2gps.cli import app

    def walk(cmd, path):  # every command and group, so a new one is checked too
        yield path
        if hasattr(cmd, "commands"):  # a group (typer bundles its own click)
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])

    commands = list(walk(typer.main.get_command(app), []))
    assert ["index", "add"] in commands and ["data", "build"] in commands
    for cmd in commands:
        assert main(cmd + ["--help"]) == 0
        out = capsys.readouterr().out
        for bad in ("<bool>", "<list", "<str>", "<path>", "<int>"):
            assert bad not in out, (cmd, bad)
        usage = out.splitlines()[0]
        assert not re.search(r"\{\w+\}", usage), usage
    main(["predict", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # help text wraps with the terminal's width
    assert "PHOTO..." in out.splitlines()[0] and "MODEL_DIR" in out and "[default: 120]" in flat
    main(["fit", "--help"])
    assert "[default: rerank]" in capsys.readouterr().out  # the default named, not "the best method"
