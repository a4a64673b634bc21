"""Database URLs and engines: SQLite (embedded, WAL) or PostgreSQL (psycopg 3), and error translation."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.engine import URL

from opq.errors import Conflict, InvalidValue, NotFound, StorageError

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "opq_write"


def redact(url: str | URL) -> str:
    """The URL as text with any password masked, safe for errors and logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))
    # Users wrote postgresql:// or sqlite://, not the driver SQLAlchemy picked.
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """Validate a database URL and pick the driver: sqlite:///PATH or postgresql://..."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise StorageError(
            f"malformed database URL {redact(url)!r}: expected sqlite:///PATH or "
            "postgresql://USER@HOST/DBNAME"
        ) from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StorageError(
                f"database URL {redact(parsed)!r} names no file: use sqlite:///PATH "
                "(the embedded database is a file shared by every opq process)"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        if not parsed.database:
            raise StorageError(f"database URL {redact(parsed)!r} names no database")
        return parsed.set(drivername="postgresql+psycopg")
    raise StorageError(
        f"unsupported database URL {redact(parsed)!r}: opq stores into sqlite:/// or postgresql://"
    )


def make_engine(url: str) -> Engine:
    """An engine for the URL, checked by connecting once, so a bad URL fails here and says why."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args={"connect_timeout": 10, "application_name": "opq"},
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except exc.SQLAlchemyError as err:
        engine.dispose()
        raise StorageError(f"cannot reach database {redact(parsed)}: {_first_line(err)}") from err
    return engine


def _sqlite_engine(url: URL) -> Engine:
    path = Path(str(url.database))
    if not path.parent.exists():
        raise StorageError(f"cannot open database {redact(url)}: directory {path.parent} does not exist")
    # pysqlite's own transaction handling is off; BEGIN is emitted below, IMMEDIATE for writers, so
    # two processes never deadlock upgrading a read lock to a write lock.
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front; a reader keeps WAL's snapshot and blocks no one.
        writes = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: committed at the end, rolled back on an exception.

    On SQLite it takes the write lock when it begins (BEGIN IMMEDIATE), waiting for other writers
    instead of failing when it later upgrades from reading to writing.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def _first_line(err: BaseException) -> str:
    original = getattr(err, "orig", None) or err
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn driver errors raised while doing `action` into opq's errors, with the action named."""
    try:
        yield
    except (Conflict, NotFound, InvalidValue):
        raise
    except exc.IntegrityError as err:
        raise Conflict(f"{action}: {_first_line(err)}") from err
    except exc.SQLAlchemyError as err:
        raise StorageError(f"{action}: {_first_line(err)}") from err
