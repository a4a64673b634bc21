"""Outages: the pure tracker, and moving an incident's end on every backend."""

from __future__ import annotations

import pytest

from opq.config import RetentionSettings
from opq.errors import InvalidValue, NotFound
from opq.mauka.incidents import outage_incident, store_incident
from opq.mauka.outage import OutageEnd, OutageStart, OutageTracker
from opq.store import Store, open_store
from tests.mauka_site import T0, add_measurements, add_site

AFTER_MS = 60_000
PLUGGED = {"1": False, "2": False}


def test_a_silent_box_is_an_outage_from_its_last_measurement_until_data_returns() -> None:
    tracker = OutageTracker(AFTER_MS)
    for t in range(T0, T0 + 1_000, 200):
        assert tracker.seen("1", t) is None
    tracker.seen("2", T0 + 50_000)
    last = T0 + 800
    assert tracker.check(last + AFTER_MS - 1, PLUGGED) == ([], [])
    assert tracker.silent(last + AFTER_MS, PLUGGED) == ["1"]
    assert tracker.check(last + AFTER_MS, PLUGGED) == ([OutageStart("1", last)], [])
    # Once open, it is not started again, and an old measurement arriving late does not end it.
    assert tracker.check(last + 5 * AFTER_MS, PLUGGED) == ([OutageStart("2", T0 + 50_000)], [])
    assert tracker.seen("1", last) is None
    assert "1" in tracker.open
    back = last + 10 * AFTER_MS
    assert tracker.seen("1", back) == OutageEnd("1", back, "data")
    assert tracker.open == {"2": T0 + 50_000} and tracker.seen("1", back + 200) is None


def test_an_outage_starts_once_and_only_for_boxes_that_count() -> None:
    tracker = OutageTracker(AFTER_MS)
    tracker.seen("1", T0)
    tracker.seen("2", T0)
    tracker.seen("9", T0)  # not registered: no outage
    now = T0 + AFTER_MS
    starts, ends = tracker.check(now, {"1": False, "2": True, "3": False})
    # 2 is unplugged (or in maintenance); 3 was never seen.
    assert (starts, ends) == ([OutageStart("1", T0)], [])
    assert tracker.check(now + AFTER_MS, {"1": False, "2": True, "3": False}) == ([], [])


def test_unplugging_or_removing_a_box_ends_its_outage() -> None:
    tracker = OutageTracker(AFTER_MS)
    tracker.seen("1", T0)
    tracker.seen("2", T0)
    now = T0 + AFTER_MS
    starts, _ = tracker.check(now, PLUGGED)
    assert [s.box_id for s in starts] == ["1", "2"]
    starts, ends = tracker.check(now + 1, {"1": True})
    assert (starts, ends) == ([], [OutageEnd("1", now + 1, "unplugged"), OutageEnd("2", now + 1, "removed")])
    # Plugged in again while still silent: a new outage from its last measurement.
    assert tracker.check(now + 2, {"1": False}) == ([OutageStart("1", T0)], [])


def test_an_outage_restored_from_an_earlier_run_ends_when_data_returns() -> None:
    tracker = OutageTracker(AFTER_MS)
    tracker.seen("1", T0 - 5)
    tracker.restore("1", T0)
    assert tracker.check(T0 + 10 * AFTER_MS, PLUGGED) == ([], [])
    assert tracker.seen("1", T0 + 1) == OutageEnd("1", T0 + 1, "data")


def test_the_tracker_refuses_a_silly_threshold() -> None:
    with pytest.raises(ValueError, match="positive"):
        OutageTracker(0)


def test_an_incidents_end_moves_with_its_lifetime_and_metadata(db_url: str) -> None:
    with open_store(db_url, RetentionSettings(incidents_s=60)) as store:
        add_site(store)
        add_measurements(store, "1", T0 - 2_000, T0 + 1)
        outage = outage_incident(store, "1", T0, T0 + 5_000, "lab-a")
        store_incident(store, outage, None)
        stored = store.incidents.get(outage.incident_id)
        assert (stored.measurement_type, stored.classifications, stored.event_id) == (
            "HEALTH",
            ("OUTAGE",),
            None,
        )
        assert stored.metadata == {"plugin": "outage", "open": True}
        assert [m["timestamp_ms"] for m in stored.measurements] == list(range(T0 - 1_000, T0 + 1, 100))

        store.incidents.set_end(outage.incident_id, T0 + 90_000, metadata={"open": False, "ended_by": "data"})
        ended = store.incidents.get(outage.incident_id)
        assert ended.end_timestamp_ms == T0 + 90_000
        assert ended.metadata == {"plugin": "outage", "open": False, "ended_by": "data"}
        # It lives a minute after its new end, not after its old one.
        assert store.incidents.delete_expired(T0 + 90_000 + 59_999) == 0
        assert store.incidents.delete_expired(T0 + 90_000 + 60_000) == 1


def test_an_incidents_end_cannot_precede_its_start_or_belong_to_nothing(store: Store) -> None:
    add_site(store)
    outage = outage_incident(store, "1", T0, T0, None)
    store_incident(store, outage, None)
    with pytest.raises(InvalidValue, match="before its start"):
        store.incidents.set_end(outage.incident_id, T0 - 1)
    with pytest.raises(NotFound):
        store.incidents.set_end(outage.incident_id + 1, T0)
    store.incidents.set_end(outage.incident_id, T0 + 1)
    assert store.incidents.get(outage.incident_id).end_timestamp_ms == T0 + 1
