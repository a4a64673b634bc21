"""The data lifecycle on every backend: what incidents reference lives as long as they do; the GC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from opq.config import RetentionSettings
from opq.errors import NotFound
from opq.mauka.analysis import analyze_event
from opq.mauka.incidents import outage_incident, store_incident
from opq.mauka.lifecycle import TREND_MARGIN_MS, collect_garbage, keep_referenced
from opq.store import Store, open_store, schema
from opq.store.models import Event, Stats, Trend
from tests.mauka_site import T0, SagPlugin, add_event, add_site, sine_counts

MINUTE_MS = 60_000
DAY_MS = 86_400_000
SAG = (1.0, 0.2, 0.5)


def expire_at(store: Store, table: str, **where: object) -> list[int | None]:
    t = schema.metadata.tables[table]
    query = select(t.c.expire_at).where(*(t.c[name] == value for name, value in where.items()))
    with store.engine.connect() as conn:
        return list(conn.execute(query.order_by(*t.primary_key.columns)).scalars())


def trends(store: Store, box_id: str, first_ms: int, count: int) -> None:
    stats = Stats(119.0, 121.0, 120.0)
    store.trends.upsert_many(
        [Trend(box_id, first_ms + n * MINUTE_MS, None, stats, stats, stats) for n in range(count)]
    )


@pytest.fixture
def short_lived(db_url: str) -> Iterator[Store]:
    """Trends and events live a minute, incidents a day."""
    lifetimes = RetentionSettings(trends_s=60, events_s=60, incidents_s=86_400)
    with open_store(db_url, lifetimes) as store:
        add_site(store)
        yield store


def test_an_events_lifetime_is_only_ever_lengthened(short_lived: Store) -> None:
    store = short_lived
    event_id = store.allocate_id("event")
    store.events.add(Event(event_id, T0, T0 + 1_000, ("1",)))
    assert expire_at(store, "events", event_id=event_id) == [T0 + 1_000 + MINUTE_MS]
    store.events.keep_until(event_id, T0 + DAY_MS)
    store.events.keep_until(event_id, T0 + 5)  # shorter: no change
    assert expire_at(store, "events", event_id=event_id) == [T0 + DAY_MS]
    store.events.keep_until(event_id, None)
    store.events.keep_until(event_id, T0 + 2 * DAY_MS)  # never is longer than any time
    assert expire_at(store, "events", event_id=event_id) == [None]
    with pytest.raises(NotFound):
        store.events.keep_until(event_id + 1, None)


def test_trends_lifetimes_are_lengthened_for_one_box_and_window(short_lived: Store) -> None:
    store = short_lived
    trends(store, "1", T0, 5)
    trends(store, "2", T0, 5)
    assert store.trends.keep_until("1", T0 + MINUTE_MS, T0 + 3 * MINUTE_MS, T0 + DAY_MS) == 3
    assert store.trends.keep_until("1", T0, T0 + 4 * MINUTE_MS, T0 + 1) == 0  # shorter: no change
    own = [T0 + (n + 1) * MINUTE_MS for n in range(5)]
    assert expire_at(store, "trends", box_id="1") == [own[0], T0 + DAY_MS, T0 + DAY_MS, T0 + DAY_MS, own[4]]
    assert expire_at(store, "trends", box_id="2") == own
    assert store.trends.keep_until("1", T0, T0 + MINUTE_MS, None) == 2
    assert expire_at(store, "trends", box_id="1")[:2] == [None, None]
    assert store.trends.keep_until("1", T0, T0 + MINUTE_MS, None) == 0


def test_an_incident_keeps_its_event_and_the_trends_around_it(short_lived: Store) -> None:
    store = short_lived
    trends(store, "1", T0 - 10 * MINUTE_MS, 20)  # stamped T0 − 10 min ... T0 + 9 min
    event_id = add_event(store, {"1": sine_counts(sags=[SAG])})
    analyze_event(store, event_id, [SagPlugin()], T0 + MINUTE_MS)
    [incident] = store.incidents.for_event(event_id)
    incident_expiry = incident.end_timestamp_ms + DAY_MS
    assert expire_at(store, "events", event_id=event_id) == [incident_expiry]
    kept = [
        T0 + n * MINUTE_MS
        for n in range(-10, 10)
        if incident.start_timestamp_ms - TREND_MARGIN_MS
        <= T0 + n * MINUTE_MS
        <= incident.end_timestamp_ms + TREND_MARGIN_MS
    ]
    assert len(kept) == 4  # T0 − 1 min ... T0 + 2 min
    stamps = range(T0 - 10 * MINUTE_MS, T0 + 10 * MINUTE_MS, MINUTE_MS)
    expiries = expire_at(store, "trends", box_id="1")
    assert [t for t, e in zip(stamps, expiries, strict=True) if e == incident_expiry] == kept

    # An hour on, the event's own lifetime is over, but the incident still needs it.
    deleted = collect_garbage(store, T0 + 60 * MINUTE_MS)
    assert deleted["events"] == 0 and deleted["trends"] == 20 - 4
    assert store.events.get(event_id).event_id == event_id
    assert store.files.exists(f"event_{event_id}_1") and store.files.exists(str(incident.gridfs_filename))
    assert [t.timestamp_ms for t in store.trends.for_box("1", 0, T0 + DAY_MS)] == kept

    # When the incident expires, it goes with its waveform, and so does what it kept.
    deleted = collect_garbage(store, incident_expiry)
    assert (deleted["incidents"], deleted["events"], deleted["trends"]) == (1, 1, 4)
    assert store.incidents.count() == 0
    assert store.row_counts()["files"] == 0 and store.row_counts()["chunks"] == 0


def test_incidents_that_never_expire_keep_what_they_reference_for_ever(db_url: str) -> None:
    with open_store(db_url, RetentionSettings(trends_s=60, events_s=60, incidents_s=None)) as store:
        add_site(store)
        trends(store, "1", T0, 3)
        event_id = add_event(store, {"1": sine_counts(sags=[SAG])})
        analyze_event(store, event_id, [SagPlugin()], T0 + MINUTE_MS)
        assert expire_at(store, "events", event_id=event_id) == [None]
        collect_garbage(store, T0 + 365 * DAY_MS)
        assert store.events.get(event_id).event_id == event_id
        assert store.incidents.count() == 1 and store.trends.count() == 3


def test_an_outage_keeps_the_trends_around_it(short_lived: Store) -> None:
    store = short_lived
    trends(store, "1", T0, 3)
    outage = outage_incident(store, "1", T0 + MINUTE_MS, T0 + MINUTE_MS + 5_000, "lab-a")
    store_incident(store, outage, None)
    keep_referenced(store, [outage])
    assert set(expire_at(store, "trends", box_id="1")) == {outage.end_timestamp_ms + DAY_MS}


def test_expired_incidents_go_with_their_waveform_files(short_lived: Store) -> None:
    store = short_lived
    event_id = add_event(store, {"1": sine_counts(sags=[SAG])})
    analyze_event(store, event_id, [SagPlugin()], T0)
    [incident] = store.incidents.for_event(event_id)
    assert store.incidents.delete_expired(incident.end_timestamp_ms + DAY_MS - 1) == 0
    assert store.incidents.delete_expired(incident.end_timestamp_ms + DAY_MS) == 1
    assert store.files.find(incident_id=incident.incident_id) == []
    assert store.files.exists(f"event_{event_id}_1")
