"""Makai's measurement writer: batches, a database that goes away and comes back, a full buffer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from opq.errors import StorageError
from opq.makai.storage import MeasurementWriter
from opq.store import Store
from opq.store.measurements import InsertResult, MeasurementRow
from opq.store.models import Trend


class FlakyMeasurements:
    """A measurements repository whose database can be switched off."""

    def __init__(self) -> None:
        self.rows: list[MeasurementRow] = []
        self.available = True

    def insert_rows(self, batch: Sequence[MeasurementRow]) -> InsertResult:
        if not self.available:
            raise StorageError("cannot store measurements: connection refused")
        self.rows.extend(batch)
        return InsertResult(len(batch), 0)


class Trends:
    def __init__(self) -> None:
        self.rows: list[Trend] = []

    def upsert_many(self, batch: Sequence[Trend]) -> None:
        self.rows.extend(batch)


class FakeStore:
    def __init__(self) -> None:
        self.measurements = FlakyMeasurements()
        self.trends = Trends()


def writer_for(store: FakeStore, max_buffered: int = 100) -> MeasurementWriter:
    return MeasurementWriter(
        cast(Store, store), interval_s=0.01, max_buffered=max_buffered, clock_ms=lambda: 10_500
    )


def measurements(n: int, first_ms: int = 10_000) -> list[MeasurementRow]:
    return [("1", first_ms + i, 120.0, 60.0, 0.01, 0.5) for i in range(n)]


def test_measurements_wait_while_the_database_is_away_and_none_is_lost() -> None:
    store = FakeStore()
    writer = writer_for(store)
    assert writer.put_rows(measurements(10)) == 10
    store.measurements.available = False
    assert writer.flush() is False
    assert not writer.database_ok and "connection refused" in writer.last_error
    assert writer.buffered == 10
    writer.put_rows(measurements(5, first_ms=20_000))
    store.measurements.available = True
    assert writer.flush() is True
    assert writer.database_ok and writer.buffered == 0
    assert [row[1] for row in store.measurements.rows] == [
        *range(10_000, 10_010),
        *range(20_000, 20_005),
    ]
    assert writer.stored == 15 and writer.failed_writes == 1


def test_a_full_buffer_drops_new_measurements_and_counts_them() -> None:
    store = FakeStore()
    store.measurements.available = False
    writer = writer_for(store, max_buffered=3)
    assert writer.put_rows(measurements(2)) == 2
    assert writer.put_rows(measurements(3, first_ms=20_000)) == 1
    assert writer.dropped == 2 and writer.buffered == 3
    store.measurements.available = True
    assert writer.flush() is True
    assert [row[1] for row in store.measurements.rows] == [10_000, 10_001, 20_000]


def test_lag_is_measured_from_the_box_timestamp_to_the_write() -> None:
    store = FakeStore()
    writer = writer_for(store)
    writer.put_rows(measurements(100, first_ms=10_000))
    writer.flush()
    lag: dict[str, Any] = writer.lag_percentiles_ms()
    assert 450 <= lag["p50"] <= 451 and 400 <= lag["p99"] <= 500
