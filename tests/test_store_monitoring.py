"""Health records and system stats on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from opq.errors import InvalidValue
from opq.store import Store, schema
from opq.store.models import HealthRecord
from opq.store.monitoring import HealthRecords

RECORDS = [
    HealthRecord(1_000, "makai", "up"),
    HealthRecord(1_000, "box", "up", service_id="1000"),
    HealthRecord(1_000, "box", "up", service_id="1001"),
    HealthRecord(2_000, "makai", "down", info="no answer in 2 s"),
    HealthRecord(2_000, "box", "down", service_id="1000", info="silent for 60 s"),
    HealthRecord(3_000, "makai", "up"),
    HealthRecord(3_000, "mauka", "up"),
]


def test_history_reads_one_service_oldest_first(store: Store) -> None:
    store.health.record(RECORDS[::-1])
    makai = store.health.history("makai", since_ms=0, until_ms=10_000)
    assert makai == [RECORDS[0], RECORDS[3], RECORDS[5]]


def test_history_bounds_are_inclusive(store: Store) -> None:
    store.health.record(RECORDS)
    assert store.health.history("makai", since_ms=2_000, until_ms=3_000) == [RECORDS[3], RECORDS[5]]
    assert store.health.history("makai", since_ms=1_001, until_ms=1_999) == []


def test_history_of_one_box_or_of_every_box(store: Store) -> None:
    store.health.record(RECORDS)
    one = store.health.history("box", "1000", since_ms=0, until_ms=10_000)
    assert one == [RECORDS[1], RECORDS[4]]
    every = store.health.history("box", since_ms=0, until_ms=10_000)
    assert every == [RECORDS[1], RECORDS[2], RECORDS[4]]


def test_latest_is_the_newest_record_of_each_service_and_id(store: Store) -> None:
    store.health.record(RECORDS)
    assert store.health.latest() == [
        RECORDS[4],  # box 1000, down since 2 000 ms
        RECORDS[2],  # box 1001
        RECORDS[5],  # makai, up again
        RECORDS[6],  # mauka
    ]


def test_latest_of_records_with_equal_times_is_the_last_stored(store: Store) -> None:
    store.health.record([HealthRecord(1_000, "view", "up")])
    store.health.record([HealthRecord(1_000, "view", "down", info="later")])
    assert store.health.latest() == [HealthRecord(1_000, "view", "down", info="later")]


def test_latest_of_nothing_is_empty_and_an_empty_batch_stores_nothing(store: Store) -> None:
    store.health.record([])
    assert store.health.latest() == []


@pytest.mark.parametrize(
    ("record", "named"),
    [
        (HealthRecord(1_000, "makai", "UP"), "status"),  # type: ignore[arg-type]
        (HealthRecord(1_000, "makai", "unknown"), "status"),  # type: ignore[arg-type]
        (HealthRecord(1_000, "", "up"), "service"),
        (HealthRecord(1_000, "x" * 33, "up"), "service"),
        (HealthRecord(1_000, "box", "up", service_id=""), "service_id"),
        (HealthRecord(1_000, "box", "up", service_id="1" * 65), "service_id"),
    ],
    ids=["upper-case", "unknown-status", "empty-service", "long-service", "empty-id", "long-id"],
)
def test_a_bad_record_refuses_its_whole_batch(store: Store, record: HealthRecord, named: str) -> None:
    with pytest.raises(InvalidValue, match=named):
        store.health.record([RECORDS[0], record])
    assert store.row_counts()["health"] == 0


@pytest.mark.parametrize(
    ("lifetime_ms", "expire_at"), [(None, None), (60_000, 61_000)], ids=["forever", "a-minute"]
)
def test_expiry_follows_the_lifetime(store: Store, lifetime_ms: int | None, expire_at: int | None) -> None:
    HealthRecords(store.engine, lifetime_ms).record([RECORDS[0]])
    with store.engine.connect() as conn:
        assert conn.execute(select(schema.health.c.expire_at)).scalar_one() == expire_at


def test_system_stats_are_none_before_the_first_put(store: Store) -> None:
    assert store.system_stats.get() is None


def test_system_stats_put_overwrites_the_single_document(store: Store) -> None:
    first = {"events_count": 1, "box_trend_stats": [{"box_id": "1000", "total_trends": 5}]}
    second = {"events_count": 2, "users_count": 3}
    store.system_stats.put(10_000, first)
    assert store.system_stats.get() == (10_000, first)
    store.system_stats.put(20_000, second)
    assert store.system_stats.get() == (20_000, second)
    assert store.row_counts()["system_stats"] == 1


@pytest.mark.parametrize(
    ("document", "named"),
    [({"boxes": {"1000"}}, "JSON"), ({"ratio": float("inf")}, "JSON"), ([1, 2], "dict")],
    ids=["set", "infinity", "list"],
)
def test_bad_system_stats_are_refused_and_keep_the_old(store: Store, document: Any, named: str) -> None:
    store.system_stats.put(10_000, {"events_count": 1})
    with pytest.raises(InvalidValue, match=named):
        store.system_stats.put(20_000, document)
    assert store.system_stats.get() == (10_000, {"events_count": 1})
