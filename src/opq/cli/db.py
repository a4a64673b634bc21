"""`opq db ...`: create, upgrade and check the schema; prune expired records; count rows."""

from __future__ import annotations

import typer

from opq.cli.context import (
    DbOption,
    JsonOption,
    database_url,
    now_ms,
    opened_store,
    print_json,
    print_table,
)
from opq.errors import StorageError
from opq.store import migrate
from opq.store.engine import make_engine, redact

app = typer.Typer(help="The database: schema, retention, row counts.", no_args_is_help=True)


def _revision_at(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


def _upgrade(ctx: typer.Context, db: str | None) -> tuple[str, str | None, str]:
    """Migrate the schema to head: the redacted URL and the revisions before and after."""
    url = database_url(ctx, db)
    before = _revision_at(url)
    with opened_store(ctx, db, upgrade=True) as store:
        after = migrate.current_revision(store.engine)
    return redact(url), before, after or "none"


@app.command("init")
def init(ctx: typer.Context, db: DbOption = None) -> None:
    """Create the opq schema in the database (or bring it up to date); safe to run again."""
    where, before, after = _upgrade(ctx, db)
    if before is None:
        typer.echo(f"created the opq schema at revision {after} in {where}")
    elif before == after:
        typer.echo(f"the opq schema in {where} is already at revision {after}: nothing to do")
    else:
        typer.echo(f"upgraded the opq schema in {where} from revision {before} to {after}")


@app.command("upgrade")
def upgrade(ctx: typer.Context, db: DbOption = None) -> None:
    """Migrate the schema to the newest revision this opq knows."""
    where, before, after = _upgrade(ctx, db)
    state = "unchanged" if before == after else "upgraded"
    typer.echo(f"{where}: schema revision {before or 'none'} -> {after} ({state})")


@app.command("check")
def check(ctx: typer.Context, db: DbOption = None) -> None:
    """Connect and compare the schema revision with this opq's; fails if it is behind or missing."""
    url = database_url(ctx, db, must_exist=True)
    engine = make_engine(url)
    try:
        current = migrate.current_revision(engine)
        backend = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    finally:
        engine.dispose()
    head = migrate.head_revision()
    typer.echo(f"backend:  {backend}")
    typer.echo(f"database: {redact(url)}")
    typer.echo(f"schema:   {current or 'none'} (this opq needs {head})")
    if current is None:
        raise StorageError("the database has no opq schema: run `opq db init --db URL`")
    if current != head:
        raise StorageError("the schema is behind: run `opq db upgrade --db URL`")
    typer.echo("ok")


@app.command("prune")
def prune(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Delete the records older than their retention (the `retention` settings)."""
    with opened_store(ctx, db) as store:
        deleted = store.prune(now_ms())
    if as_json:
        print_json(deleted)
    else:
        print_table("Rows deleted", ["collection", "rows"], sorted(deleted.items()))


@app.command("stats")
def stats(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """How many rows each table holds."""
    with opened_store(ctx, db) as store:
        counts = store.row_counts()
    if as_json:
        print_json(counts)
    else:
        print_table("Rows per table", ["table", "rows"], sorted(counts.items()))
