"""Ids other services rely on (event_id, incident_id), allocated atomically by the database."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Engine, select

from opq.errors import StorageError
from opq.store import schema
from opq.store.engine import translated, write_transaction

IdKind = Literal["event", "incident"]


def allocate_ids(engine: Engine, kind: IdKind, count: int = 1) -> range:
    """Reserve `count` consecutive ids of a kind; no two callers, processes or restarts share one."""
    if count < 1:
        raise ValueError(f"count must be positive, not {count}")
    counters = schema.id_counters
    bump = (
        counters.update()
        .where(counters.c.name == kind)
        .values(last_value=counters.c.last_value + count)
        .returning(counters.c.last_value)
    )
    # One UPDATE ... RETURNING: the row lock (PostgreSQL) or the write lock (SQLite) makes the
    # read and the increment one step.
    with translated(f"allocate {count} {kind} id(s)"), write_transaction(engine) as conn:
        last = conn.execute(bump).scalar_one_or_none()
    if last is None:
        raise StorageError(f"the database has no {kind} id counter: run `opq db upgrade`")
    return range(last - count + 1, last + 1)


def last_id(engine: Engine, kind: IdKind) -> int:
    """The last id of a kind handed out (0 before the first)."""
    counters = schema.id_counters
    with translated(f"read the {kind} id counter"), engine.connect() as conn:
        value = conn.execute(
            select(counters.c.last_value).where(counters.c.name == kind)
        ).scalar_one_or_none()
    return 0 if value is None else int(value)
