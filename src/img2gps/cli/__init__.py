"""The `img2gps` command: one typer app; each command group lives in its own module."""
from __future__ import annotations

import os
import re
import signal
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..errors import Img2GPSError

# Help text a user reads: no "<bool>" on flags, no "<list[str]>" or "{photos}": the metavar names (PHOTO...,
# MODEL_DIR) and plain words for the remaining types. Typer >= 0.20 prints those type labels; they are rewritten here.
_TYPE_WORDS = {"int": "N", "float": "NUMBER", "str": "TEXT", "path": "PATH", "file": "FILE", "directory": "DIR",
               "int range": "N", "float range": "NUMBER"}


def clean_help(text: str) -> str:
    """One help line -> the same line without typer's type labels (padded to the same width, so columns align)."""
    def pad(new: str):
        return lambda m: new(m).ljust(len(m.group(0)))

    text = re.sub(r" ?<bool>", pad(lambda m: ""), text)
    text = re.sub(r" ?<list\[[^\]]*\]>", pad(lambda m: ""), text)
    text = re.sub(r"\{([A-Z_]+)\}\.\.\.", r"\1...", text)  # usage: {PHOTO}... -> PHOTO...
    if text.lstrip().startswith("Usage:"):
        text = re.sub(r"\{([A-Z_]+)\}", r"\1", text)  # usage: {DATASET} -> DATASET
    return re.sub(r"<([a-z ]+)>", pad(lambda m: _TYPE_WORDS.get(m.group(1), m.group(1).upper())), text)


class HelpCommand(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        super().format_help(ctx, formatter)
        formatter.buffer[:] = [clean_help(s) for s in formatter.buffer]


class HelpGroup(TyperGroup):
    def format_help(self, ctx, formatter) -> None:
        super().format_help(ctx, formatter)
        formatter.buffer[:] = [clean_help(s) for s in formatter.buffer]

    def format_commands(self, ctx, formatter) -> None:
        """The command list with each command's whole first sentence, wrapped: click cuts it to the terminal
        width with "...", which left `img2gps --help` unreadable."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class App(typer.Typer):
    """typer.Typer whose commands print plain, cleaned help (see clean_help)."""

    def __init__(self, **kw):
        super().__init__(cls=HelpGroup, rich_markup_mode=None, **kw)

    def command(self, *args, cls=None, **kw):
        return super().command(*args, cls=cls or HelpCommand, **kw)


# Shown under `img2gps --help`; \b keeps click from re-wrapping the example lines.
EPILOG = """Start here: `img2gps demo` fits the default method on the default gallery ($IMG2GPS_DATA, else
../shared/data/penn91), locates held-out photos, writes a map and prints the commands that use its model.

\b
Example, from your own geotagged photos:
  img2gps data build PHOTOS/ DATASET/
  img2gps fit --data DATASET/ --method rerank --out MODEL/
  img2gps predict photo.jpg --model MODEL/ --map where.html

Each command's --help says more."""

app = App(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, epilog=EPILOG,
          help="Locate campus photos: build a dataset, fit a model, benchmark it, predict, serve.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"img2gps {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Show the version and exit.")) -> None:
    pass


def _register() -> None:
    # Importing each module attaches its commands to `app` (data, fit/bench/eval, predict/serve/export, demo, analyze).
    from . import analyze, data, demo, index, modelling, use  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Entry point: user-facing errors become one line on stderr and exit code 2; never a traceback."""
    _register()
    debug = os.environ.get("IMG2GPS_DEBUG") == "1"
    # SIGTERM behaves like Ctrl-C so atomic writers clean their temp dirs and never leave half-written output.
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a server worker)
        pass
    try:
        # standalone_mode=False makes click *return* a typer.Exit code instead of raising it
        rc = app(args=argv, standalone_mode=False)
        if rc == 130:  # typer turns Ctrl-C into a silent exit code 130 (no command returns 130 itself)
            print("interrupted", file=sys.stderr)
        return rc if isinstance(rc, int) else 0
    except Img2GPSError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        return int(code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors and anything unexpected: still one line
        click_exc = _click_exception_types()
        if isinstance(e, click_exc):
            e.show()
            return e.exit_code
        if debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (set IMG2GPS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def megapixels_option(value: float | None) -> int:
    """--max-megapixels (None = photos.MAX_PIXELS) -> pixels, or a one-line DataError."""
    from ..errors import DataError
    from ..photos import pixel_limit

    try:
        return pixel_limit(value)
    except ValueError as e:
        raise DataError(str(e)) from None


def _click_exception_types() -> tuple[type, ...]:
    """Usage errors: typer >= 0.20 vendors its own click, older ones use the click package."""
    types: list[type] = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
