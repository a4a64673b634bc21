"""Fixtures shared by the tests: a fresh database per test on every backend, and the PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from opq.store import Store, open_store
from tests.pgserver import throwaway_server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The throwaway server's `opq` database, with a migrated template database beside it."""
    with throwaway_server() as url:
        template_url = _with_database(url, "opq_template")
        _admin(url, "CREATE DATABASE opq_template")
        open_store(template_url, upgrade=True).close()
        yield url


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _admin(url: str, sql: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, migrated, empty database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'opq.sqlite3'}"
        open_store(url, upgrade=True).close()
        yield url
        return
    base = request.getfixturevalue("postgres_url")
    name = f"test_{next(_database_numbers)}"
    _admin(base, f"CREATE DATABASE {name} TEMPLATE opq_template")
    yield _with_database(base, name)
    _admin(base, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A Store over a new, empty database of each backend."""
    with open_store(db_url) as opened:
        yield opened
