"""What every command shares: the settings, the --db option, the store it opens, tables and JSON."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from opq.config import Settings
from opq.errors import ConfigError, InvalidValue, StorageError
from opq.store import Store, open_store
from opq.store.engine import parse_url, redact

logger = logging.getLogger(__name__)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        show_default=False,
        help="Database URL, sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: the db_url setting, sqlite:///opq.sqlite3).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_INTEGER = re.compile(r"^[+-]?\d+$")


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command loaded."""
    settings = ctx.obj
    if not isinstance(settings, Settings):
        raise RuntimeError("the opq root command did not load the settings")
    return settings


def database_url(ctx: typer.Context, db: str | None, *, must_exist: bool = False) -> str:
    """The --db URL or the db_url setting, checked for shape (a bad URL is bad input).

    With must_exist, an SQLite file that is not there is an error, rather than a new empty file.
    """
    url = db if db is not None else settings_of(ctx).db_url
    try:
        parsed = parse_url(url)
    except StorageError as err:
        source = "--db" if db is not None else "setting db_url (env OPQ_DB_URL)"
        raise ConfigError(f"{source}: {err}") from err
    if must_exist and parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database))
        if not path.exists():
            raise StorageError(f"database file {path} does not exist: run `opq db init --db URL`")
    return url


@contextmanager
def opened_store(ctx: typer.Context, db: str | None, *, upgrade: bool = False) -> Iterator[Store]:
    """The store at --db; without upgrade, its schema must be there and current already."""
    url = database_url(ctx, db, must_exist=not upgrade)
    logger.debug("opening database %s (upgrade=%s)", redact(url), upgrade)
    with open_store(url, settings_of(ctx).retention, upgrade=upgrade) as store:
        yield store


def now_ms() -> int:
    """The current time [ms since the Unix epoch]."""
    return time.time_ns() // 1_000_000


def parse_time_ms(text: str | None) -> int:
    """ISO 8601 (UTC when no offset is given) or integer ms since the epoch; None means now."""
    if text is None:
        return now_ms()
    if _INTEGER.match(text.strip()):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise InvalidValue(
            f"time {text!r} is neither ISO 8601 (like 2026-11-22T10:00:00Z) nor integer ms since the epoch"
        ) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_time(timestamp_ms: int | None, timespec: str = "seconds") -> str:
    """A time [ms since the epoch] as ISO 8601 in UTC, for people."""
    if timestamp_ms is None:
        return ""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def print_json(data: Any) -> None:
    """Print data as JSON on stdout, for scripts."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(title: str, columns: Sequence[str | Column], rows: Iterable[Sequence[object]]) -> None:
    """Print a table on stdout; cells are text, never rich markup."""
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(Text(_cell(value)) for value in row))
    Console().print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
