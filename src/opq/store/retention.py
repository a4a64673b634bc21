"""Retention: delete what has expired; on PostgreSQL, drop whole daily partitions of measurements."""

from __future__ import annotations

import logging
import re

from sqlalchemy import Connection, Engine, Table, delete, select, text

from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.events import Events
from opq.store.files import Files
from opq.store.incidents import Incidents
from opq.store.measurements import DAY_MS

logger = logging.getLogger(__name__)

_PARTITION = re.compile(r"^measurements_d(\d+)$")


# An upload still unfinished this long after it began was left by a writer that died.
UNFINISHED_UPLOAD_MS = DAY_MS


def prune_expired(
    engine: Engine, events: Events, incidents: Incidents, files: Files, now_ms: int
) -> dict[str, int]:
    """Delete every record whose expire_at has passed; the rows deleted per collection."""
    deleted: dict[str, int] = {}
    with translated("prune expired measurements"), write_transaction(engine) as conn:
        if _is_postgres(engine):
            deleted["measurement_partitions"] = _drop_expired_partitions(conn, now_ms)
        deleted["measurements"] = _delete_expired(conn, schema.measurements, now_ms)
    for table in (schema.trends, schema.notifications, schema.health):
        with translated(f"prune expired {table.name}"), write_transaction(engine) as conn:
            deleted[table.name] = _delete_expired(conn, table, now_ms)
    deleted["incidents"] = incidents.delete_expired(now_ms)
    # Incidents go through their repository, which takes their classifications, annotations and
    # trimmed waveforms along; events one by one through theirs, which takes their box events and
    # waveform files along.
    expired_events = select(schema.events.c.event_id).where(schema.events.c.expire_at <= now_ms)
    with translated("find expired events"), engine.connect() as conn:
        event_ids = conn.execute(expired_events).scalars().all()
    for event_id in event_ids:
        events.delete(event_id)
    deleted["events"] = len(event_ids)
    deleted["unfinished_files"] = files.delete_unfinished(started_before_ms=now_ms - UNFINISHED_UPLOAD_MS)
    logger.info("pruned %s", deleted)
    return deleted


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _delete_expired(conn: Connection, table: Table, now_ms: int) -> int:
    return conn.execute(delete(table).where(table.c.expire_at <= now_ms)).rowcount


def _drop_expired_partitions(conn: Connection, now_ms: int) -> int:
    """Drop daily partitions that hold nothing unexpired; how many were dropped."""
    partitions = conn.execute(
        text(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE parent.relname = 'measurements'"
        )
    ).scalars()
    dropped = 0
    for name in partitions:
        match = _PARTITION.match(name)
        # Only days wholly in the past can be wholly expired.
        if match is None or (int(match.group(1)) + 1) * DAY_MS > now_ms:
            continue
        still_live = conn.exec_driver_sql(
            f"SELECT 1 FROM {name} WHERE expire_at IS NULL OR expire_at > %(now)s LIMIT 1",
            {"now": now_ms},
        ).first()
        if still_live is not None:
            continue
        conn.exec_driver_sql(f"DROP TABLE {name}")
        dropped += 1
        logger.info("dropped expired partition %s", name)
    return dropped
