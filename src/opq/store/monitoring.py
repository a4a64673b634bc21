"""Health records of services and boxes, and the single overwritten system stats document."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from opq.errors import InvalidValue
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import HealthRecord

logger = logging.getLogger(__name__)

HEALTH_STATUSES = ("up", "down")
MAX_SERVICE_LENGTH = 32
MAX_SERVICE_ID_LENGTH = 64


def check_health_record(record: HealthRecord) -> None:
    """Service 1 to 32 characters, service_id None or 1 to 64, status "up" or "down"."""
    where = f"health record of {record.service!r}"
    if not record.service.strip() or len(record.service) > MAX_SERVICE_LENGTH:
        raise InvalidValue(
            f"{where}: service {record.service!r} is not valid: use 1 to {MAX_SERVICE_LENGTH} characters"
        )
    if record.service_id is not None and not (
        record.service_id.strip() and len(record.service_id) <= MAX_SERVICE_ID_LENGTH
    ):
        raise InvalidValue(
            f"{where}: service_id {record.service_id!r} is not valid: use None or 1 to "
            f"{MAX_SERVICE_ID_LENGTH} characters"
        )
    if record.status not in HEALTH_STATUSES:
        raise InvalidValue(
            f"{where}: status {record.status!r} is not valid: use one of {', '.join(HEALTH_STATUSES)}"
        )


class HealthRecords:
    """The health collection: whether each service and box appeared up, over time."""

    def __init__(self, engine: Engine, lifetime_ms: int | None = None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms

    def record(self, records: Sequence[HealthRecord]) -> None:
        """Store a batch of records in one transaction; one bad record stores none."""
        for record in records:
            check_health_record(record)
        if not records:
            return
        lifetime = self._lifetime_ms
        rows = [
            {
                "timestamp_ms": r.timestamp_ms,
                "service": r.service,
                "service_id": r.service_id,
                "status": r.status,
                "info": r.info,
                "expire_at": None if lifetime is None else r.timestamp_ms + lifetime,
            }
            for r in records
        ]
        with translated(f"store {len(rows)} health records"), write_transaction(self._engine) as conn:
            conn.execute(schema.health.insert(), rows)

    def latest(self) -> list[HealthRecord]:
        """The newest record of each (service, service_id), by service then service_id."""
        h = schema.health
        # A window partition groups NULL service_ids together, which a join on equality would not.
        rank = (
            func.row_number()
            .over(
                partition_by=(h.c.service, h.c.service_id),
                order_by=(h.c.timestamp_ms.desc(), h.c.id.desc()),
            )
            .label("rank")
        )
        ranked = select(h.c.timestamp_ms, h.c.service, h.c.status, h.c.service_id, h.c.info, rank).subquery()
        query = select(
            ranked.c.timestamp_ms,
            ranked.c.service,
            ranked.c.status,
            ranked.c.service_id,
            ranked.c.info,
        ).where(ranked.c.rank == 1)
        with translated("read the latest health records"), self._engine.connect() as conn:
            found = [HealthRecord(*row) for row in conn.execute(query)]
        # Sorted here: SQLite and PostgreSQL put NULLs at opposite ends.
        return sorted(found, key=lambda r: (r.service, r.service_id is not None, r.service_id or ""))

    def history(
        self, service: str, service_id: str | None = None, *, since_ms: int, until_ms: int
    ) -> list[HealthRecord]:
        """Records of a service with since_ms <= timestamp_ms <= until_ms, oldest first.

        With service_id None, the records of every service_id of the service.
        """
        h = schema.health
        query = select(h.c.timestamp_ms, h.c.service, h.c.status, h.c.service_id, h.c.info).where(
            h.c.service == service, h.c.timestamp_ms.between(since_ms, until_ms)
        )
        if service_id is not None:
            query = query.where(h.c.service_id == service_id)
        query = query.order_by(h.c.timestamp_ms, h.c.id)
        with translated(f"read the health history of {service!r}"), self._engine.connect() as conn:
            return [HealthRecord(*row) for row in conn.execute(query)]


class SystemStats:
    """The seed's system_stats: one document, overwritten by each put."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, timestamp_ms: int, document: dict[str, Any]) -> None:
        """Replace the system stats document with this one, collected at timestamp_ms."""
        if not isinstance(document, dict):
            raise InvalidValue(f"system stats must be a dict, got {type(document).__name__}")
        try:
            json.dumps(document, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidValue(f"system stats cannot be stored as JSON: {err}") from err
        with translated("store system stats"), write_transaction(self._engine) as conn:
            _upsert(
                conn,
                schema.system_stats,
                {"id": 1, "timestamp_ms": timestamp_ms, "document": document},
            )

    def get(self) -> tuple[int, dict[str, Any]] | None:
        """(timestamp_ms, document) of the last put, or None before the first."""
        s = schema.system_stats
        with translated("read system stats"), self._engine.connect() as conn:
            row = conn.execute(select(s.c.timestamp_ms, s.c.document).where(s.c.id == 1)).first()
        if row is None:
            return None
        return int(row.timestamp_ms), dict(row.document)


def _upsert(conn: Connection, table: Table, row: dict[str, Any]) -> None:
    # One statement, so two writers at once cannot both insert the single row.
    changed = {name: value for name, value in row.items() if name != "id"}
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(row)
        conn.execute(pg.on_conflict_do_update(index_elements=["id"], set_=changed))
    else:
        lite = sqlite.insert(table).values(row)
        conn.execute(lite.on_conflict_do_update(index_elements=["id"], set_=changed))
