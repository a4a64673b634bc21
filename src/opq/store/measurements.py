"""Measurements and trends: batched writes fast enough for thousands of boxes, and range reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import starmap
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from opq.errors import InvalidValue, StorageError
from opq.store import schema
from opq.store.engine import translated, write_transaction
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
_COPY_TYPES = ("text", "int8", "float8", "float8", "float8", "float8", "int8")
_METRICS = ("voltage", "frequency", "thd", "transient")
MeasurementRow = tuple[str, int, float, float | None, float | None, float | None]
"""A measurement as a row: box id, timestamp [ms], voltage, frequency, THD, transient."""
_ROW = attrgetter("box_id", "timestamp_ms", "voltage", "frequency", "thd", "transient")
_BOX_ID = itemgetter(0)
_TIMESTAMP_MS = itemgetter(1)
_READ_SQL = (
    "SELECT timestamp_ms, voltage, frequency, thd, transient FROM measurements "
    "WHERE box_id = {p} AND timestamp_ms BETWEEN {p} AND {p} ORDER BY timestamp_ms"
)

# A batch of one second from 1,000 boxes dirties two or three pages per box: SQLite's default
# 2 MB page cache cannot hold them between batches, and its default auto-checkpoint (1,000 pages)
# would copy the WAL into the database after every batch. At 40,000 pages (a WAL of about 160 MB)
# a checkpoint comes every dozen batches and copies a page rewritten by several batches once.
# Neither setting affects durability (WAL with synchronous=NORMAL, as set by the engine).
SQLITE_CACHE_KIB = 65_536
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 40_000
_SQLITE_TUNED = "opq.measurements.tuned"


@dataclass(frozen=True)
class InsertResult:
    """What a batched insert did: rows stored, and rows skipped as duplicates.

    A duplicate has the (box_id, timestamp_ms) of a stored row or of an earlier row of its batch.
    """

    inserted: int
    duplicates: int


class Measurements:
    """The measurements collection: one row per box and timestamp, kept for a limited time."""

    def __init__(self, engine: Engine, lifetime_ms: int | None) -> None:
        self._engine = engine
        self._lifetime_ms = None if lifetime_ms is None else int(lifetime_ms)
        self._postgres = engine.dialect.name == "postgresql"
        self._partition_days: set[int] = set()
        expire_at = "NULL" if self._lifetime_ms is None else f"?2 + {self._lifetime_ms}"
        # expire_at is computed by SQLite from the bound timestamp, not per row in Python. ON
        # CONFLICT on the key, not INSERT OR IGNORE, which would also skip a row breaking NOT NULL.
        self._sqlite_insert = (
            f"INSERT INTO measurements ({', '.join(_MEASUREMENT_COLUMNS)}) "
            f"VALUES (?1, ?2, ?3, ?4, ?5, ?6, {expire_at}) "
            "ON CONFLICT (box_id, timestamp_ms) DO NOTHING"
        )

    def insert_many(self, batch: Sequence[Measurement]) -> InsertResult:
        """Store a batch in one transaction; a duplicate (box_id, timestamp_ms) skips only itself.

        Of two measurements of a batch with the same key, the first one is kept.
        """
        return self.insert_rows(list(map(_ROW, batch)))

    def insert_rows(self, batch: Sequence[MeasurementRow]) -> InsertResult:
        """`insert_many` for measurements already as rows (what ingest builds, without an object a row)."""
        if not batch:
            return InsertResult(0, 0)
        # Grouped by box (a stable sort keeps each box's order, so the first duplicate still
        # wins): consecutive inserts then go to the same index page, and on PostgreSQL one box's
        # rows of a batch share heap pages, which a read of that box's hour touches fewer of.
        rows = sorted(batch, key=_BOX_ID)
        action = f"store {len(rows)} measurements"
        with (
            translated(action),
            _driver_errors(self._engine, action),
            write_transaction(self._engine) as conn,
        ):
            insert = self._copy_postgres if self._postgres else self._insert_sqlite
            inserted = insert(conn, rows)
        duplicates = len(rows) - inserted
        if duplicates:
            logger.debug("skipped %d duplicate measurements", duplicates)
        return InsertResult(inserted, duplicates)

    def _insert_sqlite(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        dbapi = _tuned_sqlite(conn)
        before = dbapi.total_changes
        dbapi.executemany(self._sqlite_insert, rows)
        return int(dbapi.total_changes - before)

    def _copy_postgres(self, conn: Connection, rows: list[tuple[Any, ...]], *, retry: bool = True) -> int:
        import psycopg

        self._ensure_partitions(conn, {ts // DAY_MS for ts in map(_TIMESTAMP_MS, rows)})
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        # COPY is the fast path; it is all or nothing, so a batch holding a duplicate goes
        # through a staging table and ON CONFLICT instead.
        try:
            with raw.transaction(), raw.cursor() as cur:
                self._copy_rows(cur, "measurements", rows)
                return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        except psycopg.errors.CheckViolation:
            if not retry:
                raise
            # A day's partition this process made was dropped since (by `opq db prune` elsewhere).
            self._partition_days.clear()
            return self._copy_postgres(conn, rows, retry=False)
        columns = ", ".join(_MEASUREMENT_COLUMNS)
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS measurements_staging "
                "(LIKE measurements INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            self._copy_rows(cur, "measurements_staging", rows)
            cur.execute(
                f"INSERT INTO measurements ({columns}) SELECT {columns} FROM measurements_staging "
                "ON CONFLICT (box_id, timestamp_ms) DO NOTHING"
            )
            inserted = cur.rowcount
            cur.execute("DELETE FROM measurements_staging")
        return inserted

    def _copy_rows(self, cur: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Binary COPY: the server parses no text, and the client formats no numbers."""
        lifetime = self._lifetime_ms
        columns = ", ".join(_MEASUREMENT_COLUMNS)
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            if lifetime is None:
                for row in rows:
                    write((*row, None))
            else:
                for row in rows:
                    write((*row, row[1] + lifetime))

    def _ensure_partitions(self, conn: Connection, days: set[int]) -> None:
        for day in sorted(days - self._partition_days):
            name = f"measurements_d{day}"
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF measurements "
                f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
            self._partition_days.add(day)

    def for_box(self, box_id: str, start_ms: int, end_ms: int) -> list[Measurement]:
        """One box's measurements with start_ms <= timestamp_ms <= end_ms, oldest first."""
        action = f"read measurements of box {box_id!r}"
        # The driver's own cursor: this read returns tens of thousands of rows, and on
        # PostgreSQL binary results spare parsing every number from text.
        with (
            translated(action),
            _driver_errors(self._engine, action),
            self._engine.connect() as conn,
        ):
            if self._postgres:
                raw = conn.connection.driver_connection
                assert raw is not None
                with raw.cursor(binary=True) as cur:
                    cur.execute(_READ_SQL.format(p="%s"), (box_id, start_ms, end_ms))
                    rows = cur.fetchall()
            else:
                sql = _READ_SQL.format(p="?")
                rows = _tuned_sqlite(conn).execute(sql, (box_id, start_ms, end_ms)).fetchall()
        return list(starmap(partial(Measurement, box_id), rows))

    def latest(self, box_id: str) -> Measurement | None:
        """The newest measurement of a box, if any is still stored."""
        m = schema.measurements
        query = (
            select(m.c.box_id, m.c.timestamp_ms, m.c.voltage, m.c.frequency, m.c.thd, m.c.transient)
            .where(m.c.box_id == box_id)
            .order_by(m.c.timestamp_ms.desc())
            .limit(1)
        )
        action = f"read the latest measurement of box {box_id!r}"
        with translated(action), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Measurement(*row)

    def first_after(self, box_id: str, timestamp_ms: int) -> Measurement | None:
        """A box's oldest stored measurement with a timestamp after timestamp_ms, if any."""
        m = schema.measurements
        query = (
            select(m.c.box_id, m.c.timestamp_ms, m.c.voltage, m.c.frequency, m.c.thd, m.c.transient)
            .where(m.c.box_id == box_id, m.c.timestamp_ms > timestamp_ms)
            .order_by(m.c.timestamp_ms)
            .limit(1)
        )
        action = f"read the first measurement of box {box_id!r} after {timestamp_ms}"
        with translated(action), self._engine.connect() as conn:
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


def _tuned_sqlite(conn: Connection) -> Any:
    """The sqlite3 connection under `conn`, with the page cache and checkpoint sized for batches."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    info = conn.connection.info  # lives as long as the sqlite3 connection
    if not info.get(_SQLITE_TUNED):
        dbapi.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        dbapi.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        info[_SQLITE_TUNED] = True
    return dbapi


@contextmanager
def _driver_errors(engine: Engine, action: str) -> Iterator[None]:
    """Translate errors of the driver used directly (not through SQLAlchemy) into opq's errors."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except dbapi.IntegrityError as err:
        raise InvalidValue(f"{action}: {_first_line(err)}") from err
    except dbapi.Error as err:
        raise StorageError(f"{action}: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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
        statement = insert.on_conflict_do_update(index_elements=[t.c.box_id, t.c.timestamp_ms], set_=updated)
        with translated(f"store {len(rows)} trends"), write_transaction(self._engine) as conn:
            conn.execute(statement, rows)

    def _row(self, trend: Trend) -> dict[str, object]:
        row: dict[str, object] = {
            "box_id": trend.box_id,
            "timestamp_ms": trend.timestamp_ms,
            "location": trend.location,
            "expire_at": None if self._lifetime_ms is None else trend.timestamp_ms + self._lifetime_ms,
        }
        for metric in _METRICS:
            stats: Stats | None = getattr(trend, metric)
            for part in ("min", "max", "average"):
                row[f"{metric}_{part}"] = None if stats is None else getattr(stats, part)
        return row

    def keep_until(self, box_id: str, start_ms: int, end_ms: int, expire_at: int | None) -> int:
        """Make one box's trends with start_ms <= timestamp_ms <= end_ms live at least until expire_at.

        None keeps them for ever; a lifetime is only ever lengthened. How many trends were extended.
        """
        t = schema.trends
        update = t.update().where(t.c.box_id == box_id, t.c.timestamp_ms.between(start_ms, end_ms))
        if expire_at is not None:
            update = update.where(t.c.expire_at < expire_at)
        else:
            update = update.where(t.c.expire_at.is_not(None))
        action = f"extend the lifetime of trends of box {box_id!r}"
        with translated(action), write_transaction(self._engine) as conn:
            return int(conn.execute(update.values(expire_at=expire_at)).rowcount)

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

    def per_box(self) -> list[tuple[str, int, int, int]]:
        """(box_id, first timestamp_ms, last timestamp_ms, count) of each box's trends, by box."""
        t = schema.trends
        query = (
            select(t.c.box_id, func.min(t.c.timestamp_ms), func.max(t.c.timestamp_ms), func.count())
            .group_by(t.c.box_id)
            .order_by(t.c.box_id)
        )
        with translated("summarize trends per box"), self._engine.connect() as conn:
            return [(str(box), int(first), int(last), int(n)) for box, first, last, n in conn.execute(query)]

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
