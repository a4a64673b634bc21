"""The store benchmark: measurement insert rate, trend upsert rate, and one box's hour read back."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select, text

from opq.errors import StorageError
from opq.store import Store, open_store, schema
from opq.store.models import Measurement, Stats, Trend

MEASUREMENTS_PER_S = 6  # a box reports every 10 cycles at 60 Hz [1/s]
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_TREND_MINUTES = 60
FIRST_BOX_ID = 1000

# Called as work advances: (phase, done, total).
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InsertFigures:
    """Measurement inserts, timed around each `Measurements.insert_many` call only."""

    batches: int
    inserted: int
    duplicates: int
    seconds: float
    rows_per_s_median: float  # over batches
    rows_per_s_overall: float  # all rows / time spent in insert calls
    batch_ms_median: float
    batch_ms_p99: float
    batch_ms_max: float  # a batch slower than its interval makes ingest fall behind


@dataclass(frozen=True)
class TrendFigures:
    """Trend upserts: a pass of new trends, then a pass replacing every one of them."""

    rows: int
    batch_size: int
    insert_rows_per_s_median: float
    insert_rows_per_s_overall: float
    reupsert_rows_per_s_median: float
    reupsert_rows_per_s_overall: float


@dataclass(frozen=True)
class QueryFigures:
    """Latency of `Measurements.for_box` over one hour, for random boxes and hours."""

    measurements_present: int
    queries: int
    rows_returned_median: float
    ms_median: float
    ms_p95: float
    ms_max: float


@dataclass(frozen=True)
class StoreBenchResult:
    """Every figure of one run of the store benchmark."""

    backend: str
    url: str
    rows: int
    boxes: int
    batch_size: int
    measurements_before: int
    insert: InsertFigures
    trends: TrendFigures
    query: QueryFigures
    machine: dict[str, str | int | None]
    database_settings: dict[str, str] = field(default_factory=dict)


def run_store_bench(
    url: str,
    *,
    rows: int = 10_000_000,
    boxes: int = 1000,
    batch_size: int | None = None,
    queries: int = 50,
    allow_existing: bool = False,
    seed: int = 1159,
    progress: ProgressFn | None = None,
) -> StoreBenchResult:
    """Write `rows` measurements of `boxes` boxes into the migrated database at `url`, then time reads.

    A batch is by default one second of every box (6 measurements each), as ingest writes them.
    A database already holding measurements is refused unless `allow_existing`, so that figures of
    different runs do not mix; with it, the new data starts after the newest stored measurement.
    """
    if rows < 1 or boxes < 1 or queries < 1:
        raise ValueError("rows, boxes and queries must be at least 1")
    batch = batch_size if batch_size is not None else MEASUREMENTS_PER_S * boxes
    if batch < 1:
        raise ValueError("the batch size must be at least 1")
    report = progress or _no_progress
    rng = np.random.default_rng(seed)
    with open_store(url) as store:
        before, newest_ms = _existing(store)
        if before and not allow_existing:
            raise StorageError(
                f"database {store.url} already holds {before} measurements: bench an empty, "
                "migrated database (`opq db init --db URL`), or pass --allow-existing"
            )
        span_ms = _span_ms(rows, boxes)
        now_ms = int(time.time()) * 1000
        start_ms = now_ms - span_ms if newest_ms is None else newest_ms + 1000
        fleet = _Fleet(boxes, start_ms, rng)

        insert = _bench_inserts(store, fleet, rows, batch, rng, report)
        trends = _bench_trends(store, fleet, span_ms, rng, report)
        query = _bench_queries(store, fleet, span_ms, queries, rng, report)
        return StoreBenchResult(
            backend=store.backend,
            url=store.url,
            rows=rows,
            boxes=boxes,
            batch_size=batch,
            measurements_before=before,
            insert=insert,
            trends=trends,
            query=query,
            machine=_machine(store),
            database_settings=_database_settings(store),
        )


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    pass


def _existing(store: Store) -> tuple[int, int | None]:
    m = schema.measurements
    with store.engine.connect() as conn:
        count, newest = conn.execute(select(func.count(), func.max(m.c.timestamp_ms))).one()
    return int(count), None if newest is None else int(newest)


def _span_ms(rows: int, boxes: int) -> int:
    ticks = -(-rows // boxes)
    return max(1, ticks * 1000 // MEASUREMENTS_PER_S)


class _Fleet:
    """The simulated boxes: ids "1000", "1001", ..., each reporting at its own phase in the second."""

    def __init__(self, boxes: int, start_ms: int, rng: np.random.Generator) -> None:
        self.box_ids = np.array([str(FIRST_BOX_ID + i) for i in range(boxes)], dtype=object)
        self.start_ms = start_ms
        self.phase_ms = rng.integers(0, 1000 // MEASUREMENTS_PER_S, size=boxes)

    @property
    def boxes(self) -> int:
        return len(self.box_ids)

    def measurements(self, first: int, stop: int, rng: np.random.Generator) -> list[Measurement]:
        """Rows first..stop-1 of the stream ordered by report tick, then box."""
        index = np.arange(first, stop, dtype=np.int64)
        tick, box = np.divmod(index, self.boxes)
        timestamp_ms = self.start_ms + self.phase_ms[box] + tick * 1000 // MEASUREMENTS_PER_S
        n = len(index)
        voltage = 120.0 + rng.normal(0.0, 0.4, n)
        frequency = 60.0 + rng.normal(0.0, 0.005, n)
        thd = np.abs(0.02 + rng.normal(0.0, 0.003, n))
        transient = np.abs(rng.normal(0.0, 0.5, n))
        return list(
            map(
                Measurement,
                self.box_ids[box].tolist(),
                timestamp_ms.tolist(),
                voltage.tolist(),
                frequency.tolist(),
                thd.tolist(),
                transient.tolist(),
            )
        )


def _rates(counts: list[int], seconds: list[float]) -> tuple[float, float]:
    per_batch = np.array(counts, dtype=np.float64) / np.maximum(np.array(seconds), 1e-9)
    return float(np.median(per_batch)), sum(counts) / max(sum(seconds), 1e-9)


def _bench_inserts(
    store: Store,
    fleet: _Fleet,
    rows: int,
    batch: int,
    rng: np.random.Generator,
    report: ProgressFn,
) -> InsertFigures:
    counts: list[int] = []
    seconds: list[float] = []
    inserted = duplicates = 0
    report("insert measurements", 0, rows)
    for first in range(0, rows, batch):
        measurements = fleet.measurements(first, min(first + batch, rows), rng)
        started = time.perf_counter()
        result = store.measurements.insert_many(measurements)
        seconds.append(time.perf_counter() - started)
        counts.append(len(measurements))
        inserted += result.inserted
        duplicates += result.duplicates
        report("insert measurements", first + len(measurements), rows)
    median, overall = _rates(counts, seconds)
    batch_ms = np.array(seconds) * 1000
    return InsertFigures(
        batches=len(counts),
        inserted=inserted,
        duplicates=duplicates,
        seconds=sum(seconds),
        rows_per_s_median=median,
        rows_per_s_overall=overall,
        batch_ms_median=float(np.median(batch_ms)),
        batch_ms_p99=float(np.percentile(batch_ms, 99)),
        batch_ms_max=float(batch_ms.max()),
    )


def _trends(fleet: _Fleet, minute: int, rng: np.random.Generator) -> list[Trend]:
    timestamp_ms = fleet.start_ms + (minute + 1) * MINUTE_MS
    values = rng.normal(0.0, 1.0, (fleet.boxes, 3))
    trends = []
    for box_id, (dv, df, dt) in zip(fleet.box_ids.tolist(), values.tolist(), strict=True):
        trends.append(
            Trend(
                box_id=box_id,
                timestamp_ms=timestamp_ms,
                location=None,
                voltage=Stats(119.0 + dv * 0.1, 121.0 + dv * 0.1, 120.0 + dv * 0.1),
                frequency=Stats(59.98 + df * 0.001, 60.02 + df * 0.001, 60.0 + df * 0.001),
                thd=Stats(0.015, 0.025 + abs(dt) * 0.001, 0.02),
                transient=Stats(0.0, 2.0, 0.3),
            )
        )
    return trends


def _bench_trends(
    store: Store,
    fleet: _Fleet,
    span_ms: int,
    rng: np.random.Generator,
    report: ProgressFn,
) -> TrendFigures:
    # One batch is one minute of every box, as the roll-up writes them; the second pass replaces.
    minutes = max(1, min(span_ms // MINUTE_MS, MAX_TREND_MINUTES))
    passes: list[tuple[float, float]] = []
    for name in ("insert trends", "re-upsert trends"):
        counts: list[int] = []
        seconds: list[float] = []
        report(name, 0, minutes)
        for minute in range(minutes):
            trends = _trends(fleet, minute, rng)
            started = time.perf_counter()
            store.trends.upsert_many(trends)
            seconds.append(time.perf_counter() - started)
            counts.append(len(trends))
            report(name, minute + 1, minutes)
        passes.append(_rates(counts, seconds))
    (insert_median, insert_overall), (again_median, again_overall) = passes
    return TrendFigures(
        rows=minutes * fleet.boxes,
        batch_size=fleet.boxes,
        insert_rows_per_s_median=insert_median,
        insert_rows_per_s_overall=insert_overall,
        reupsert_rows_per_s_median=again_median,
        reupsert_rows_per_s_overall=again_overall,
    )


def _bench_queries(
    store: Store,
    fleet: _Fleet,
    span_ms: int,
    queries: int,
    rng: np.random.Generator,
    report: ProgressFn,
) -> QueryFigures:
    present = store.measurements.count()
    # Hours that lie within the data where it spans more than an hour; otherwise hours covering it.
    if span_ms > HOUR_MS:
        starts = fleet.start_ms + rng.integers(0, span_ms - HOUR_MS, size=queries)
    else:
        starts = fleet.start_ms + span_ms - HOUR_MS + rng.integers(0, HOUR_MS - span_ms + 1, size=queries)
    boxes = rng.integers(0, fleet.boxes, size=queries)
    latencies_ms: list[float] = []
    returned: list[int] = []
    report("query one box-hour", 0, queries)
    for i, (box, start_ms) in enumerate(zip(boxes.tolist(), starts.tolist(), strict=True)):
        box_id = str(fleet.box_ids[box])
        started = time.perf_counter()
        found = store.measurements.for_box(box_id, start_ms, start_ms + HOUR_MS)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        returned.append(len(found))
        report("query one box-hour", i + 1, queries)
    latencies = np.array(latencies_ms)
    return QueryFigures(
        measurements_present=present,
        queries=queries,
        rows_returned_median=float(np.median(returned)),
        ms_median=float(np.median(latencies)),
        ms_p95=float(np.percentile(latencies, 95)),
        ms_max=float(latencies.max()),
    )


def _machine(store: Store) -> dict[str, str | int | None]:
    with store.engine.connect() as conn:
        if store.backend == "postgresql":
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
        else:
            version = str(conn.execute(text("SELECT sqlite_version()")).scalar_one())
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "database_version": version,
    }


def _database_settings(store: Store) -> dict[str, str]:
    names: tuple[str, ...]
    if store.backend == "postgresql":
        names = (
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_level",
            "shared_buffers",
            "max_wal_size",
            "checkpoint_timeout",
        )
        statement = "SHOW {}"
    else:
        names = ("journal_mode", "synchronous", "page_size", "cache_size", "wal_autocheckpoint")
        statement = "PRAGMA {}"
    with store.engine.connect() as conn:
        return {name: str(conn.execute(text(statement.format(name))).scalar_one()) for name in names}
