"""The `opq` command: global options, settings, logging, and where errors become exit codes."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from opq.cli import analyze, bench, box, boxes, db, demo, keys, makai, mauka, places, serve, users
from opq.cli.logs import configure_logging
from opq.config import load_settings
from opq.errors import ConfigError, Conflict, InvalidValue, NotFound, OpqError
from opq.store.engine import redact

logger = logging.getLogger(__name__)

EXIT_STORAGE = 1
EXIT_BAD_INPUT = 2


class LogLevel(StrEnum):
    """The --log-level choices."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    """The --log-format choices."""

    plain = "plain"
    json = "json"


def exit_code_for(err: OpqError) -> int:
    """2 for bad input (settings, values, duplicates, unknown references), 1 for storage trouble."""
    if isinstance(err, ConfigError | Conflict | InvalidValue | NotFound):
        return EXIT_BAD_INPUT
    return EXIT_STORAGE


class OpqGroup(TyperGroup):
    """The root command: every OpqError raised below it ends the process with one line on stderr."""

    # Any: the Context class is click's or, in newer typer, typer's own copy of click.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OpqError as err:
            logger.debug("command failed", exc_info=True)
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(exit_code_for(err)) from err


app = typer.Typer(
    cls=OpqGroup,
    help="Open Power Quality: power-quality monitoring from wall-outlet boxes to the cloud.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(places.locations_app, name="locations")
app.add_typer(places.regions_app, name="regions")
app.add_typer(boxes.app, name="boxes")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(box.app, name="box")
app.add_typer(makai.app, name="makai")
app.add_typer(mauka.app, name="mauka")
app.add_typer(bench.app, name="bench")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("analyze")(analyze.analyze)


@app.callback()
def root(
    ctx: typer.Context,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, show_default=False, help="Overrides the log_level setting."),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            case_sensitive=False,
            show_default=False,
            help="plain text or JSON lines, on stderr; overrides the log_format setting.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            show_default=False,
            help="Settings file (default: ./opq.toml if present); OPQ_* variables override it.",
        ),
    ] = None,
) -> None:
    """Load the settings once and configure logging, before any command runs."""
    overrides: dict[str, str] = {}
    if log_level is not None:
        overrides["log_level"] = log_level.value
    if log_format is not None:
        overrides["log_format"] = log_format.value
    settings = load_settings(config, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    logger.debug(
        "settings from %s and OPQ_* variables: database %s, log level %s",
        config or "./opq.toml (if present)",
        redact(settings.db_url),
        settings.log_level,
    )
    ctx.obj = settings


def main() -> None:
    """Entry point of the `opq` console script."""
    app(prog_name="opq")
