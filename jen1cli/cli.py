"""The `jen1` command: a short root that registers one module per subcommand."""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup

from jen1cli import __version__
from jen1cli.commands import codec, download, edit, evaluate, generate, train
from jen1cli.commands.common import report_and_exit

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
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH as err:
            if _is_usage_error(err):  # one line, like every other bad input
                where = getattr(getattr(err, "ctx", None), "command_path", "jen1")
                typer.echo(f"jen1: error: {err.format_message()} (see `{where} --help`)", err=True)
                raise SystemExit(2) from None
            raise
        except KeyboardInterrupt:
            typer.echo("jen1: interrupted", err=True)
            raise SystemExit(130) from None
        except Exception as err:  # noqa: BLE001 - formatted once here instead of in every command
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


def main() -> None:
    """Console-script entry point."""
    app(prog_name="jen1")


if __name__ == "__main__":
    sys.exit(main())
