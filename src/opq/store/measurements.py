"""Measurements and trends: batched writes fast enough for thousands of boxes, and range reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select

from opq.store import schema
from opq.store.engine import translated
from opq.store.models import Measurement, Stats, Trend

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
_MEASUREMENT_COLUMNS = (
    "box_id",
    "timestamp_ms",
    "voltage",
    "frequency",
    "thd",
    "transient",
    "expire_at",
)
_METRICS = ("voltage", "frequency", "thd", "transient")


@dataclass(frozen=True)
class InsertResult:
    """What a batched insert did: rows stored, and rows skipped as duplicates of stored ones."""

    inserted: int
    duplicates: int


class Measurements:
    """The measurements collection: one row per box and timestamp, kept for a limited time."""

    def __init__(self, engine: Engine, lifetime_ms: int | None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms
        self._postgres = engine.dialect.name == "postgresql"
        self._partition_days: set[int] = set()

    def insert_many(self, batch: Sequence[Measurement]) -> InsertResult:
        """Store a batch in one transaction; a duplicate (box_id, timestamp_ms) skips only itself."""
        if not batch:
            return InsertResult(0, 0)
        lifetime = self._lifetime_ms
        rows = [
            (
                m.box_id,
                m.timestamp_ms,
                m.voltage,
                m.frequency,
                m.thd,
                m.transient,
                None if lifetime is None else m.timestamp_ms + lifetime,
            )
            for m in batch
        ]
        with translated(f"store {len(rows)} measurements"), self._engine.begin() as conn:
            if self._postgres:
                inserted = self._copy_postgres(conn, rows)
            else:
                inserted = self._insert_sqlite(conn, rows)
        duplicates = len(rows) - inserted
        if duplicates:
            logger.debug("skipped %d duplicate measurements", duplicates)
        return InsertResult(inserted, duplicates)

    @staticmethod
    def _insert_sqlite(conn: Connection, rows: list[tuple[object, ...]]) -> int:
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        before = dbapi.total_changes
        dbapi.executemany(
            "INSERT OR IGNORE INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return int(dbapi.total_changes - before)

    def _copy_postgres(self, conn: Connection, rows: list[tuple[object, ...]]) -> int:
        import psycopg

        self._ensure_partitions(conn, {int(row[1]) // DAY_MS for row in rows})  # type: ignore[call-overload]
        columns = ", ".join(_MEASUREMENT_COLUMNS)
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        # COPY is the fast path; it is all or nothing, so a batch holding a duplicate goes
        # through a staging table and ON CONFLICT instead.
        try:
            with raw.transaction(), raw.cursor() as cur:
                with cur.copy(f"COPY measurements ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS measurements_staging "
                "(LIKE measurements INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY measurements_staging ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO measurements ({columns}) SELECT {columns} FROM measurements_staging "
                "ON CONFLICT (box_id, timestamp_ms) DO NOTHING"
            )
            inserted = cur.rowcount
            cur.execute("DELETE FROM measurements_staging")
        return inserted

    def _ensure_partitions(self, conn: Connection, days: set[int]) -> None:
        missing = days - self._partition_days
        for day in sorted(missing):
            name = f"measurements_d{day}"
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF measurements "
                f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
            self._partition_days.add(day)

    def for_box(self, box_id: str, start_ms: int, end_ms: int) -> list[Measurement]:
        """One box's measurements with start_ms <= timestamp_ms <= end_ms, oldest first."""
        m = schema.measurements
        query = (
            select(m.c.box_id, m.c.timestamp_ms, m.c.voltage, m.c.frequency, m.c.thd, m.c.transient)
            .where(m.c.box_id == box_id, m.c.timestamp_ms.between(start_ms, end_ms))
            .order_by(m.c.timestamp_ms)
        )
        with translated(f"read measurements of box {box_id!r}"), self._engine.connect() as conn:
            return [Measurement(*row) for row in conn.execute(query)]

    def latest(self, box_id: str) -> Measurement | None:
        """The newest measurement of a box, if any is still stored."""
        m = schema.measurements
        query = (
            select(m.c.box_id, m.c.timestamp_ms, m.c.voltage, m.c.frequency, m.c.thd, m.c.transient)
            .where(m.c.box_id == box_id)
            .order_by(m.c.timestamp_ms.desc())
            .limit(1)
        )
        with translated(f"read the latest measurement of box {box_id!r}"):
            with self._engine.connect() as conn:
                row = conn.execute(query).first()
        return None if row is None else Measurement(*row)

    def count(self, since_ms: int | None = None) -> int:
        """How many measurements are stored (with timestamp_ms >= since_ms, if given)."""
        m = schema.measurements
        query = select(func.count()).select_from(m)
        if since_ms is not None:
            query = query.where(m.c.timestamp_ms >= since_ms)
        with translated("count measurements"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


class Trends:
    """The trends collection: one-minute roll-ups per box, upserted so a re-roll replaces."""

    def __init__(self, engine: Engine, lifetime_ms: int | None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms

    def upsert_many(self, batch: Sequence[Trend]) -> None:
        """Store trends; a trend for an existing (box_id, timestamp_ms) replaces it."""
        if not batch:
            return
        t = schema.trends
        rows = [self._row(trend) for trend in batch]
        insert = _dialect_insert(self._engine)(t)
        updated = {name: insert.excluded[name] for name in rows[0] if name not in ("box_id", "timestamp_ms")}
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.box_id, t.c.timestamp_ms], set_=updated
        )
        with translated(f"store {len(rows)} trends"), self._engine.begin() as conn:
            conn.execute(statement, rows)

    def _row(self, trend: Trend) -> dict[str, object]:
        row: dict[str, object] = {
            "box_id": trend.box_id,
            "timestamp_ms": trend.timestamp_ms,
            "location": trend.location,
            "expire_at": None
            if self._lifetime_ms is None
            else trend.timestamp_ms + self._lifetime_ms,
        }
        for metric in _METRICS:
            stats: Stats | None = getattr(trend, metric)
            for part in ("min", "max", "average"):
                row[f"{metric}_{part}"] = None if stats is None else getattr(stats, part)
        return row

    def for_box(self, box_id: str, start_ms: int, end_ms: int) -> list[Trend]:
        """One box's trends with start_ms <= timestamp_ms <= end_ms, oldest first."""
        t = schema.trends
        query = (
            select(t)
            .where(t.c.box_id == box_id, t.c.timestamp_ms.between(start_ms, end_ms))
            .order_by(t.c.timestamp_ms)
        )
        with translated(f"read trends of box {box_id!r}"), self._engine.connect() as conn:
            return [_trend(row._mapping) for row in conn.execute(query)]

    def count(self, since_ms: int | None = None) -> int:
        """How many trends are stored (with timestamp_ms >= since_ms, if given)."""
        t = schema.trends
        query = select(func.count()).select_from(t)
        if since_ms is not None:
            query = query.where(t.c.timestamp_ms >= since_ms)
        with translated("count trends"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _trend(row: object) -> Trend:
    mapping = dict(row)  # type: ignore[call-overload]

    def stats(metric: str) -> Stats | None:
        values = [mapping[f"{metric}_{part}"] for part in ("min", "max", "average")]
        return None if any(v is None for v in values) else Stats(*values)

    return Trend(
        box_id=mapping["box_id"],
        timestamp_ms=mapping["timestamp_ms"],
        location=mapping["location"],
        voltage=stats("voltage"),
        frequency=stats("frequency"),
        thd=stats("thd"),
        transient=stats("transient"),
    )


def _dialect_insert(engine: Engine):  # type: ignore[no-untyped-def]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
