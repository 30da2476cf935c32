"""`img2gps analyze learning-curve|backbones|shaping|coverage`: the paper's analyses on your own gallery.
Each writes a PNG, a markdown table and a JSON table (bench format) to --out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import DataError
from ..outputs import wrote
from . import App, app

analyze_app = App(no_args_is_help=True, help="Learning curve, backbone scaling, feature shaping, coverage map.")
app.add_typer(analyze_app, name="analyze")


JSON_HELP = "Also write the JSON table here (bench format, e.g. bench/results/NAME.json)."


def _done(paths, json_copy: Optional[Path] = None) -> None:
    for p in paths:
        typer.echo(wrote(p))
    if json_copy is not None:  # the same file, so the command recorded inside it re-creates both
        import shutil

        src = next(p for p in paths if str(p).endswith(".json"))
        Path(json_copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, json_copy)
        typer.echo(wrote(json_copy))


def _guard(out: Path, json_copy: Optional[Path], overwrite: bool, *inputs) -> None:
    """Before any work: --out is no input and holds none; --json is no input and replaces only a results JSON."""
    from ..outputs import check_file, dataset_inputs, refuse_input

    ins = [q for i in inputs if i for q in dataset_inputs(i)]
    refuse_input(out, ins, folder=True)
    if json_copy is not None:
        check_file(json_copy, ins, "bench-json", overwrite)


def _load(data: str):
    from ..data import load_dataset
    from .modelling import report_skipped

    ds = load_dataset(data)
    report_skipped(ds)
    return ds


def _csv(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


@analyze_app.command("learning-curve")
def learning_curve(
    out: Path = typer.Option(..., "--out", help="Folder for learning_curve.png/.md/.json."),
    json_copy: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json replace a file img2gps did not write."),
    bench: Optional[Path] = typer.Option(None, "--bench", help="A bench JSON made with --fractions (its .predictions.csv "
                                         "beside it gives the bootstrap interval)."),
    data: Optional[str] = typer.Option(None, "--data", help="Or run the bench now on this dataset."),
    methods: str = typer.Option("knn", "--methods", help="With --data: comma-separated method specs."),
    protocol: str = typer.Option("kfold:5", "--protocol", help="With --data: loo | kfold:K | kfold-geo:K[:R]."),
    fractions: str = typer.Option("0.25,0.5,0.75,1.0", "--fractions", help="With --data: gallery fractions."),
    metric: str = typer.Option("mean", "--metric", help="mean | median error per fraction."),
    extrapolate: float = typer.Option(2.0, "--extrapolate", help="Predict at this multiple of the largest gallery (<= 2)."),
):
    """Error against gallery size per method, a log-linear fit and how much one more doubling would buy."""
    import pandas as pd

    from ..analysis.learning_curve import CurveConfig, write_learning_curve

    cfg = CurveConfig(metric=metric, extrapolate=extrapolate)  # checks both before any slow work
    _guard(out, json_copy, overwrite, bench, bench and Path(bench).with_suffix(".predictions.csv"), data)
    if (bench is None) == (data is None):
        raise DataError("learning-curve: give exactly one of --bench BENCH.json or --data DATASET")
    if bench is not None:
        try:
            result = json.loads(Path(bench).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{bench}: cannot read bench JSON ({e})") from None
        pp = Path(bench).with_suffix(".predictions.csv")
        preds = pd.read_csv(pp) if pp.is_file() else None
        if preds is None:
            typer.echo(f"note: {pp} not found: no bootstrap interval", err=True)
    else:
        from ..bench_outputs import write_outputs
        from ..evaluate import run_bench
        from .modelling import parse_fractions

        ds = _load(data)
        result, preds = run_bench(ds, protocol, list(_csv(methods)), fractions=parse_fractions(fractions))
        out.mkdir(parents=True, exist_ok=True)
        _done(write_outputs(out / "bench.json", result, preds, plots=False))
    _done(write_learning_curve(out, result, preds, cfg), json_copy)


@analyze_app.command("backbones")
def backbones(
    data: str = typer.Option(..., "--data", help="Labelled dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for backbones.png/.md/.json."),
    json_copy: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json replace a file img2gps did not write."),
    backbones_: str = typer.Option("lite0,lite1,lite2,dinov2s-imgfocus", "--backbones", help="Encoder names."),
    methods: str = typer.Option("knn", "--methods", help="knn, regression, contrastive, or spec templates with {b}."),
    protocol: str = typer.Option("kfold:5", "--protocol", help="loo | kfold:K | kfold-geo:K[:R] | split:DIR"),
):
    """The same methods over each offline backbone: parameters, cost and error in one table."""
    from ..analysis.backbones import BackboneConfig, specs_for, write_backbones

    cfg = BackboneConfig(backbones=_csv(backbones_), methods=_csv(methods), protocol=protocol)
    _guard(out, json_copy, overwrite, data)
    specs_for(cfg)  # a bad name fails before any slow work
    _done(write_backbones(out, _load(data), cfg), json_copy)


@analyze_app.command("shaping")
def shaping(
    data: str = typer.Option(..., "--data", help="Labelled dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for shaping.png/.md/.json."),
    json_copy: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json replace a file img2gps did not write."),
    before: str = typer.Option("knn:embed=lite0:k=1", "--before", help="Method on the frozen features."),
    after: str = typer.Option("contrastive:backbone=lite0:k=1", "--after", help="Method on the trained features."),
    protocol: str = typer.Option("kfold:5", "--protocol", help="loo | kfold:K | kfold-geo:K[:R] | split:DIR"),
):
    """k-NN (k=1) before and after contrastive training on the same held-out photos: maps and the change."""
    from ..analysis.shaping import ShapingConfig, write_shaping
    from ..predictors.registry import make_predictor

    for s in (before, after):
        make_predictor(s)
    _guard(out, json_copy, overwrite, data)
    _done(write_shaping(out, _load(data), ShapingConfig(before=before, after=after, protocol=protocol)), json_copy)


@analyze_app.command("coverage")
def coverage(
    data: str = typer.Option(..., "--data", help="The gallery (labelled dataset)."),
    out: Path = typer.Option(..., "--out", help="Folder for coverage.png/.md/.json and coverage_cells.csv."),
    json_copy: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --json replace a file img2gps did not write."),
    cell: float = typer.Option(10.0, "--cell", help="Cell size in metres."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="A bench .predictions.csv for cell errors."),
    spec: Optional[str] = typer.Option(None, "--spec", help="Which method's rows of --predictions (default: first)."),
    error: str = typer.Option("knn", "--error", help="Without --predictions: knn (leave-one-out) | none."),
    embed: str = typer.Option("lite0", "--embed", help="Encoder for the leave-one-out k-NN errors."),
    spots: int = typer.Option(8, "--spots", help="How many 'collect here next' spots to list."),
):
    """Where the gallery is thin or fails, against the paper's protocol, and where to collect next."""
    from ..analysis.coverage import CoverageConfig, write_coverage

    if predictions is not None and not Path(predictions).is_file():
        raise DataError(f"{predictions}: predictions CSV not found")
    cfg = CoverageConfig(cell_m=cell, error=error, embed=embed, spec=spec, n_spots=spots)
    _guard(out, json_copy, overwrite, data, predictions)
    _done(write_coverage(out, _load(data), cfg, predictions), json_copy)
