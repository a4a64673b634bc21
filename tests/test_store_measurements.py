"""Measurements on every backend: batched inserts, duplicates, expiry, and reading one box's range."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from opq.errors import InvalidValue
from opq.store import InsertResult, Store, schema
from opq.store.measurements import DAY_MS, Measurements
from opq.store.models import Measurement

T0_MS = 1_795_305_600_000  # a midnight (UTC), so a batch can span two days (two partitions)


def measurement(box_id: str, timestamp_ms: int, voltage: float = 120.0) -> Measurement:
    return Measurement(box_id, timestamp_ms, voltage, 60.0, 0.02, 0.0)


def stored(store: Store) -> dict[tuple[str, int], float]:
    """Every stored measurement's voltage by (box_id, timestamp_ms)."""
    m = schema.measurements
    with store.engine.connect() as conn:
        rows = conn.execute(select(m.c.box_id, m.c.timestamp_ms, m.c.voltage)).all()
    return {(box_id, timestamp_ms): voltage for box_id, timestamp_ms, voltage in rows}


def test_an_empty_batch_stores_nothing(store: Store) -> None:
    assert store.measurements.insert_many([]) == InsertResult(0, 0)


def test_a_batch_is_read_back_per_box_in_time_order(store: Store) -> None:
    batch = [
        measurement(box_id, T0_MS - 1000 + 167 * i, 110.0 + i)
        for i in range(12)
        for box_id in ("1002", "1001")
    ]

    assert store.measurements.insert_many(batch) == InsertResult(24, 0)

    found = store.measurements.for_box("1001", T0_MS - 1000 + 167, T0_MS - 1000 + 167 * 10)
    assert [m.timestamp_ms for m in found] == [T0_MS - 1000 + 167 * i for i in range(1, 11)]
    assert [m.voltage for m in found] == [110.0 + i for i in range(1, 11)]
    assert {m.box_id for m in found} == {"1001"}
    assert store.measurements.for_box("1003", T0_MS - DAY_MS, T0_MS + DAY_MS) == []
    assert store.measurements.count() == 24


def test_duplicates_within_a_batch_skip_only_themselves(store: Store) -> None:
    batch = [
        measurement("1001", T0_MS, 121.0),
        measurement("1002", T0_MS, 122.0),
        measurement("1001", T0_MS, 99.0),  # the same key as the first: skipped
        measurement("1001", T0_MS + 167, 123.0),
        measurement("1002", T0_MS, 98.0),  # the same key as the second: skipped
        measurement("1003", T0_MS - 1, 124.0),
    ]

    assert store.measurements.insert_many(batch) == InsertResult(inserted=4, duplicates=2)

    assert stored(store) == {
        ("1001", T0_MS): 121.0,
        ("1002", T0_MS): 122.0,
        ("1001", T0_MS + 167): 123.0,
        ("1003", T0_MS - 1): 124.0,
    }


def test_duplicates_of_stored_measurements_skip_only_themselves(store: Store) -> None:
    first = [measurement("1001", T0_MS + 167 * i, 120.0) for i in range(3)]
    assert store.measurements.insert_many(first) == InsertResult(3, 0)

    second = [
        measurement("1001", T0_MS + 167, 99.0),  # stored already
        measurement("1001", T0_MS + 167 * 3, 121.0),
        measurement("1002", T0_MS + 167, 122.0),  # same time, other box: new
        measurement("1001", T0_MS, 98.0),  # stored already
    ]
    assert store.measurements.insert_many(second) == InsertResult(inserted=2, duplicates=2)

    # The stored rows keep their values; every new row of the batch is there.
    assert stored(store) == {
        ("1001", T0_MS): 120.0,
        ("1001", T0_MS + 167): 120.0,
        ("1001", T0_MS + 334): 120.0,
        ("1001", T0_MS + 501): 121.0,
        ("1002", T0_MS + 167): 122.0,
    }


def test_a_batch_of_only_duplicates_stores_nothing_and_later_batches_still_go_in(
    store: Store,
) -> None:
    batch = [measurement("1001", T0_MS + i, 120.0) for i in range(5)]
    assert store.measurements.insert_many(batch) == InsertResult(5, 0)
    assert store.measurements.insert_many(batch) == InsertResult(0, 5)
    assert store.measurements.insert_many([*batch[:2], measurement("1001", T0_MS + 5)]) == (
        InsertResult(1, 2)
    )
    assert store.measurements.insert_many([measurement("1001", T0_MS + 6)]) == InsertResult(1, 0)
    assert store.measurements.count() == 7


def test_expire_at_is_the_timestamp_plus_the_lifetime(store: Store) -> None:
    lifetime_ms = 3_600_000
    Measurements(store.engine, lifetime_ms).insert_many([measurement("1001", T0_MS)])
    Measurements(store.engine, None).insert_many([measurement("1002", T0_MS)])

    m = schema.measurements
    with store.engine.connect() as conn:
        expire_at = dict(conn.execute(select(m.c.box_id, m.c.expire_at)).all())
    assert expire_at == {"1001": T0_MS + lifetime_ms, "1002": None}


def test_a_batch_with_a_missing_value_is_refused_whole(store: Store) -> None:
    batch = [
        measurement("1001", T0_MS),
        Measurement("1001", T0_MS + 167, None, 60.0, 0.02, 0.0),  # type: ignore[arg-type]
    ]
    with pytest.raises(InvalidValue, match="store 2 measurements"):
        store.measurements.insert_many(batch)
    assert store.measurements.count() == 0
