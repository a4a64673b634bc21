"""Retention on every backend: `prune` deletes what expired, keeps the rest, drops whole partitions."""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from opq.config import RetentionSettings
from opq.store import Store, open_store, schema
from opq.store.measurements import DAY_MS
from opq.store.models import Event, Incident, Measurement, Stats, Trend, UserProfile
from opq.store.retention import UNFINISHED_UPLOAD_MS
from opq.store.users import Users

T0_MS = 1_795_305_600_000  # a midnight (UTC)
HOUR_MS = 3_600_000


def day_of_measurements(store: Store, day: int) -> None:
    start = T0_MS + day * DAY_MS
    store.measurements.insert_many(
        [Measurement("1000", start + n * HOUR_MS, 120.0, 60.0, 0.02) for n in range(24)]
    )


def test_measurements_expire_a_lifetime_after_their_timestamp(store: Store) -> None:
    day_of_measurements(store, 0)
    day_of_measurements(store, 1)
    # Measurements live one day (the default): at the start of day 2 the first day has expired.
    deleted = store.prune(T0_MS + 2 * DAY_MS)
    if store.backend == "postgresql":
        # Day 0 went as a whole partition; of day 1 only its first measurement had expired.
        assert (deleted["measurement_partitions"], deleted["measurements"]) == (1, 1)
    else:
        assert deleted["measurements"] == 25
    remaining = store.measurements.for_box("1000", 0, T0_MS + 3 * DAY_MS)
    # expire_at <= now is expired: the first of day 1 expires at exactly the start of day 2.
    assert [m.timestamp_ms for m in remaining] == [T0_MS + DAY_MS + n * HOUR_MS for n in range(1, 24)]
    assert store.prune(T0_MS + 2 * DAY_MS)["measurements"] == 0


def test_a_writer_recreates_a_partition_that_pruning_dropped(store: Store, db_url: str) -> None:
    day_of_measurements(store, 0)
    with open_store(db_url) as pruner:
        pruner.prune(T0_MS + 3 * DAY_MS)
    assert store.measurements.count() == 0
    # The writer made that day's partition before; on PostgreSQL it is gone now.
    day_of_measurements(store, 0)
    assert store.measurements.count() == 24


def test_other_collections_expire_only_when_given_a_lifetime(db_url: str) -> None:
    lifetimes = RetentionSettings(trends_s=60, events_s=60, notifications_s=60)
    with open_store(db_url, lifetimes) as store:
        stats = Stats(119.0, 121.0, 120.0)
        store.trends.upsert_many([Trend("1000", T0_MS, None, stats, stats, stats)])
        event_id = store.allocate_id("event")
        store.events.add(Event(event_id, T0_MS, T0_MS + 1_000, ("1000",)))
        store.files.put(f"event_{event_id}_1000", b"\x00\x01", event_id=event_id, box_id="1000")
        cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        Users(store.engine, hasher=cheap).add(UserProfile("ada@example.org"), "a long password")
        store.notifications.add("ada@example.org", "incident", {"summary": "sag"}, T0_MS)

        assert store.prune(T0_MS + 30_000)["trends"] == 0
        deleted = store.prune(T0_MS + 61_000 + 1_000)
        assert (deleted["trends"], deleted["events"], deleted["notifications"]) == (1, 1, 1)
        assert store.files.find(event_id=event_id) == []
        assert store.users.count() == 1


def test_unfinished_uploads_are_pruned_after_a_day(store: Store) -> None:
    writer = store.files.open_writer("event_9_1000")
    writer.write(b"half a waveform")
    with store.engine.connect() as conn:
        started_ms = int(conn.execute(select(schema.files.c.upload_date_ms)).scalar_one())
    assert store.prune(started_ms + UNFINISHED_UPLOAD_MS - 1)["unfinished_files"] == 0
    assert store.prune(started_ms + UNFINISHED_UPLOAD_MS + 1)["unfinished_files"] == 1
    assert store.row_counts()["chunks"] == 0


def test_an_expired_incident_goes_with_its_classifications_and_trimmed_waveform(db_url: str) -> None:
    with open_store(db_url, RetentionSettings(incidents_s=3_600)) as store:
        for incident_id, end_ms in ((1, T0_MS), (2, T0_MS + DAY_MS)):
            store.files.put(f"incident_{incident_id}", b"\x01\x00" * 100, incident_id=incident_id)
            store.incidents.add(
                Incident(
                    incident_id=incident_id,
                    box_id="1000",
                    start_timestamp_ms=end_ms - 200,
                    end_timestamp_ms=end_ms,
                    measurement_type="VOLTAGE",
                    classifications=("VOLTAGE_SAG",),
                    gridfs_filename=f"incident_{incident_id}",
                )
            )
        assert store.prune(T0_MS + 2 * HOUR_MS)["incidents"] == 1
        assert [i.incident_id for i in store.incidents.list()] == [2]
        assert not store.files.exists("incident_1") and store.files.exists("incident_2")
        with store.engine.connect() as conn:
            left = conn.execute(select(schema.incident_classifications.c.incident_id)).scalars().all()
        assert left == [2]
