"""The `jen1` command: a short root that registers one module per subcommand."""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup

from jen1cli import __version__
from jen1cli.commands import codec, download, edit, evaluate, generate, train
from jen1cli.commands.common import report_and_exit
from jen1cli.commands.session import Terminated, notes_on_success, sigterm_raises

# Typer ≥ 0.24 bundles its own copy of click, whose exceptions are not click's: pass both kinds.
_PASS_THROUGH = tuple(
    {
        typer.Exit,
        typer.Abort,
        click.exceptions.Exit,
        click.ClickException,
        click.Abort,
        SystemExit,
        getattr(typer.exceptions, "TyperException", SystemExit),
    }
)


def _is_usage_error(err: BaseException) -> bool:
    """A bad option or argument (click's or typer's UsageError), not a request for help."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names


class Jen1Group(TyperGroup):
    """Routes every command error through one formatter (one line; exit 2 for bad input)."""

    def invoke(self, ctx: click.Context):
        # Signals arrive as exceptions, so temp files are removed on the way out (session.py).
        with sigterm_raises(), notes_on_success():
            try:
                return super().invoke(ctx)
            except _PASS_THROUGH as err:
                if _is_usage_error(err):  # one line, like every other bad input
                    where = getattr(getattr(err, "ctx", None), "command_path", "jen1")
                    message = f"jen1: error: {err.format_message()} (see `{where} --help`)"
                    typer.echo(" ".join(message.split()), err=True)
                    raise SystemExit(2) from None
                raise
            except KeyboardInterrupt:
                typer.echo("jen1: interrupted", err=True)
                raise SystemExit(130) from None
            except Terminated:
                typer.echo("jen1: terminated", err=True)
                raise SystemExit(143) from None
            except Exception as err:  # noqa: BLE001 - formatted once here, not in every command
                report_and_exit(err)


app = typer.Typer(
    name="jen1",
    cls=Jen1Group,
    help="JEN-1 text-to-music: generate, inpaint, continue and remix 48 kHz stereo music.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(generate.generate)
app.command()(edit.inpaint)
app.command("continue")(edit.continue_)
app.command()(edit.remix)
app.command()(codec.encode)
app.command()(codec.decode)
app.command()(download.download)
app.command()(train.train)
app.command("eval")(evaluate.evaluate)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jen1 {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """JEN-1 text-to-music: generate, inpaint, continue and remix 48 kHz stereo music."""


# Commands after which the process may end without the interpreter's shutdown (see main). Not
# train: accelerate and TensorBoard flush and tear down process groups in exit handlers there.
_FAST_EXIT_COMMANDS = {"generate", "inpaint", "continue", "remix", "encode", "decode"}


def main() -> None:
    """Console-script entry point.

    After a generating or codec command, the process ends with ``os._exit`` once stdout and stderr
    are flushed: the interpreter's shutdown tears down every module torch and transformers import,
    which took ~2 s on 2 CPU cores (``examples/profile_generate.py``), as long as a short decode.
    Nothing is lost: each output is written to a temp file, closed and renamed before the command
    returns, and a failed command has already removed its temp file.
    """
    import os

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        app(prog_name="jen1")
        code = 0
    except SystemExit as stop:
        if command not in _FAST_EXIT_COMMANDS or not isinstance(stop.code, int | None):
            raise
        code = stop.code or 0
    if command not in _FAST_EXIT_COMMANDS:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
