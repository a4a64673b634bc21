"""Events and box events on every backend: round trips, validation, listing, deletion."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import Store, schema
from opq.store.events import Events
from opq.store.files import Files
from opq.store.models import BoxEvent, Event

T0 = 1_700_000_000_000


def new_event(store: Store, start_ms: int = T0, *boxes: str, **changes: object) -> Event:
    """An event over [start_ms, start_ms + 1 s] that triggered `boxes`, stored."""
    event = Event(
        event_id=store.allocate_id("event"),
        target_event_start_timestamp_ms=start_ms,
        target_event_end_timestamp_ms=start_ms + 1_000,
        boxes_triggered=boxes or ("1", "2", "3"),
        description="test",
    )
    event = dataclasses.replace(event, **changes)  # type: ignore[arg-type]
    store.events.add(event)
    return event


def box_event(event: Event, box_id: str, **changes: object) -> BoxEvent:
    made = BoxEvent(
        event_id=event.event_id,
        box_id=box_id,
        event_start_timestamp_ms=event.target_event_start_timestamp_ms - 5,
        event_end_timestamp_ms=event.target_event_end_timestamp_ms + 5,
        window_timestamps_ms=(event.target_event_start_timestamp_ms,),
        location="kailua",
        data_fs_filename=f"event_{event.event_id}_{box_id}",
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def test_event_round_trip(store: Store) -> None:
    event = Event(
        event_id=store.allocate_id("event"),
        target_event_start_timestamp_ms=T0,
        target_event_end_timestamp_ms=T0 + 500,
        boxes_triggered=("1", "2"),
        boxes_received=("2",),
        latencies_ms=(T0 + 900,),
        description="Makai id abc",
    )
    store.events.add(event)
    assert store.events.get(event.event_id) == event


@pytest.mark.parametrize("lifetime_ms", [None, 30 * 86_400_000], ids=["forever", "30-days"])
def test_expire_at_follows_the_end_of_the_event(store: Store, lifetime_ms: int | None) -> None:
    event = Event(
        event_id=store.allocate_id("event"),
        target_event_start_timestamp_ms=T0,
        target_event_end_timestamp_ms=T0 + 700,
        boxes_triggered=("1",),
    )
    Events(store.engine, lifetime_ms).add(event)
    ev = schema.events
    with store.engine.connect() as conn:
        stored = conn.execute(select(ev.c.expire_at).where(ev.c.event_id == event.event_id)).scalar_one()
    assert stored == (None if lifetime_ms is None else T0 + 700 + lifetime_ms)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"target_event_start_timestamp_ms": T0 + 2_000, "target_event_end_timestamp_ms": T0},
            "is after end",
        ),
        ({"boxes_received": ("9",), "latencies_ms": (T0,)}, "never triggered"),
        ({"boxes_received": ("1",), "latencies_ms": ()}, "one to one"),
        ({"boxes_received": (), "latencies_ms": (T0,)}, "one to one"),
        ({"boxes_triggered": ("1", "1")}, "twice"),
        ({"boxes_triggered": ("1", "2"), "boxes_received": ("1", "1")}, "twice"),
        ({"boxes_triggered": ("",)}, "non-empty"),
        ({"boxes_received": ("1",), "latencies_ms": (1.5,)}, "integers"),
    ],
    ids=[
        "start-after-end",
        "received-not-triggered",
        "latency-missing",
        "latency-extra",
        "duplicate-triggered",
        "duplicate-received",
        "empty-box-id",
        "float-latency",
    ],
)
def test_add_refuses_an_inconsistent_event(store: Store, changes: dict[str, object], message: str) -> None:
    event = Event(
        event_id=store.allocate_id("event"),
        target_event_start_timestamp_ms=T0,
        target_event_end_timestamp_ms=T0 + 1_000,
        boxes_triggered=("1", "2"),
    )
    with pytest.raises(InvalidValue, match=message) as caught:
        store.events.add(dataclasses.replace(event, **changes))  # type: ignore[arg-type]
    assert f"event {event.event_id}" in str(caught.value)
    assert store.events.count() == 0


def test_add_refuses_a_duplicate_id(store: Store) -> None:
    event = new_event(store)
    with pytest.raises(Conflict, match=f"event {event.event_id}"):
        store.events.add(dataclasses.replace(event, description="again"))
    assert store.events.get(event.event_id).description == "test"


def test_record_box_event_keeps_received_and_latencies_one_to_one(store: Store) -> None:
    event = new_event(store, T0, "1", "2", "3")
    store.events.record_box_event(box_event(event, "3"), T0 + 300)
    store.events.record_box_event(box_event(event, "1"), T0 + 100)
    store.events.record_box_event(box_event(event, "2"), T0 + 200)
    stored = store.events.get(event.event_id)
    assert stored.boxes_received == ("3", "1", "2")
    assert stored.latencies_ms == (T0 + 300, T0 + 100, T0 + 200)
    assert [b.box_id for b in store.events.box_events(event.event_id)] == ["1", "2", "3"]
    assert store.events.box_event(event.event_id, "2") == box_event(event, "2")


def test_concurrent_box_events_of_one_event_are_all_kept(store: Store) -> None:
    boxes = [str(n) for n in range(8)]
    event = new_event(store, T0, *boxes)
    with ThreadPoolExecutor(max_workers=len(boxes)) as pool:
        list(
            pool.map(
                lambda box: store.events.record_box_event(box_event(event, box), T0 + int(box)),
                boxes,
            )
        )
    stored = store.events.get(event.event_id)
    assert sorted(stored.boxes_received) == boxes
    assert stored.latencies_ms == tuple(T0 + int(box) for box in stored.boxes_received)


def test_box_event_round_trip(store: Store) -> None:
    event = new_event(store)
    recorded = box_event(event, "1", window_timestamps_ms=(T0, T0 + 166, T0 + 333))
    store.events.record_box_event(recorded, T0 + 50)
    assert store.events.box_event(event.event_id, "1") == recorded
    assert store.events.box_events(event.event_id) == [recorded]


def test_record_box_event_for_an_untriggered_box_writes_nothing(store: Store) -> None:
    event = new_event(store, T0, "1", "2")
    with pytest.raises(InvalidValue, match="not among boxes_triggered"):
        store.events.record_box_event(box_event(event, "9"), T0)
    assert store.events.get(event.event_id) == event
    assert store.events.count_box_events() == 0


def test_record_box_event_twice_is_a_conflict_and_writes_nothing(store: Store) -> None:
    event = new_event(store)
    store.events.record_box_event(box_event(event, "1"), T0 + 10)
    with pytest.raises(Conflict, match="already recorded"):
        store.events.record_box_event(box_event(event, "1", location="elsewhere"), T0 + 20)
    stored = store.events.get(event.event_id)
    assert (stored.boxes_received, stored.latencies_ms) == (("1",), (T0 + 10,))
    assert store.events.box_event(event.event_id, "1").location == "kailua"
    assert store.events.count_box_events() == 1


def test_record_box_event_of_a_box_received_at_creation_is_a_conflict(store: Store) -> None:
    event = new_event(store, T0, "1", boxes_received=("1",), latencies_ms=(T0,))
    with pytest.raises(Conflict):
        store.events.record_box_event(box_event(event, "1"), T0 + 20)
    assert store.events.count_box_events() == 0


def test_record_box_event_for_an_unknown_event(store: Store) -> None:
    orphan = BoxEvent(event_id=404, box_id="1", event_start_timestamp_ms=T0, event_end_timestamp_ms=T0)
    with pytest.raises(NotFound, match="no event 404"):
        store.events.record_box_event(orphan, T0)
    assert store.events.count_box_events() == 0


@pytest.mark.parametrize(
    ("changes", "latency_ms", "message"),
    [
        ({"event_start_timestamp_ms": T0 + 5_000}, T0, "is after end"),
        ({"window_timestamps_ms": (T0, "later")}, T0, "window_timestamps_ms"),
        ({}, 12.5, "latency_ms"),
    ],
    ids=["start-after-end", "bad-window", "float-latency"],
)
def test_record_box_event_refuses_bad_values(
    store: Store, changes: dict[str, object], latency_ms: object, message: str
) -> None:
    event = new_event(store)
    with pytest.raises(InvalidValue, match=message):
        store.events.record_box_event(box_event(event, "1", **changes), latency_ms)  # type: ignore[arg-type]
    assert store.events.get(event.event_id) == event
    assert store.events.count_box_events() == 0


def test_reads_of_unknown_events(store: Store) -> None:
    event = new_event(store)
    with pytest.raises(NotFound):
        store.events.get(404)
    with pytest.raises(NotFound):
        store.events.box_events(404)
    with pytest.raises(NotFound, match="box '2'"):
        store.events.box_event(event.event_id, "2")
    assert store.events.box_events(event.event_id) == []


def test_list_is_newest_first_and_pages(store: Store) -> None:
    # Ids and start times in different orders, and two events starting together.
    starts = [T0 + 3_000, T0, T0 + 5_000, T0 + 3_000, T0 + 1_000]
    events = [new_event(store, start) for start in starts]
    expected = sorted(
        events,
        key=lambda e: (e.target_event_start_timestamp_ms, e.event_id),
        reverse=True,
    )
    assert store.events.list() == expected
    first = store.events.list(limit=2)
    second = store.events.list(limit=2, before_id=first[-1].event_id)
    third = store.events.list(limit=2, before_id=second[-1].event_id)
    assert first + second + third == expected
    assert len(third) == 1
    assert store.events.list(limit=2, before_id=third[-1].event_id) == []


def test_list_paging_from_an_unknown_event(store: Store) -> None:
    with pytest.raises(NotFound, match="no event 404"):
        store.events.list(before_id=404)


def test_list_refuses_an_empty_page(store: Store) -> None:
    with pytest.raises(InvalidValue, match="limit"):
        store.events.list(limit=0)


@pytest.mark.parametrize(
    ("window", "expected_starts"),
    [
        ((None, None), [T0 + 4_000, T0 + 2_000, T0]),
        ((T0 + 1_000, None), [T0 + 4_000, T0 + 2_000, T0]),  # T0's event ends at T0 + 1 s
        ((T0 + 1_001, None), [T0 + 4_000, T0 + 2_000]),
        ((None, T0 + 2_000), [T0 + 2_000, T0]),
        ((T0 + 2_500, T0 + 3_500), [T0 + 2_000]),
        ((T0 + 3_001, T0 + 3_999), []),
    ],
    ids=["all", "touching-end", "after-first", "until", "inside-one", "gap"],
)
def test_list_keeps_events_overlapping_the_window(
    store: Store, window: tuple[int | None, int | None], expected_starts: list[int]
) -> None:
    for start in (T0, T0 + 2_000, T0 + 4_000):
        new_event(store, start)
    start_ms, end_ms = window
    listed = store.events.list(start_ms=start_ms, end_ms=end_ms)
    assert [e.target_event_start_timestamp_ms for e in listed] == expected_starts


def test_list_by_box_keeps_events_that_triggered_it(store: Store) -> None:
    a = new_event(store, T0, "1", "2")
    b = new_event(store, T0 + 1, "2", "3")
    c = new_event(store, T0 + 2, "10")
    store.events.record_box_event(box_event(a, "1"), T0)
    assert store.events.list(box_id="2") == [b, store.events.get(a.event_id)]
    assert store.events.list(box_id="1") == [store.events.get(a.event_id)]
    assert store.events.list(box_id="10") == [c]
    assert store.events.list(box_id="0") == []
    assert store.events.list(box_id="2", limit=1, before_id=b.event_id) == [store.events.get(a.event_id)]


def test_ids_after(store: Store) -> None:
    ids = [new_event(store).event_id for _ in range(4)]
    assert store.events.ids_after(0) == ids
    assert store.events.ids_after(ids[1]) == ids[2:]
    assert store.events.ids_after(ids[-1]) == []


def test_counts(store: Store) -> None:
    first = new_event(store, T0)
    second = new_event(store, T0 + 10_000)
    store.events.record_box_event(box_event(first, "1"), T0)
    store.events.record_box_event(box_event(second, "1"), T0)
    store.events.record_box_event(box_event(second, "2"), T0)
    assert store.events.count() == 2
    assert store.events.count(since_ms=T0 + 1) == 1
    assert store.events.count(since_ms=T0 + 10_001) == 0
    assert store.events.count_box_events() == 3
    assert store.events.count_box_events(since_ms=T0 + 1) == 2


def file_rows(store: Store) -> tuple[list[str], int]:
    with store.engine.connect() as conn:
        names = conn.execute(select(schema.files.c.filename).order_by("filename")).scalars()
        chunks = conn.execute(select(func.count()).select_from(schema.chunks)).scalar_one()
        return list(names), int(chunks)


def test_delete_takes_box_events_and_unclaimed_files(store: Store) -> None:
    doomed = new_event(store, T0)
    kept = new_event(store, T0 + 1)
    for event in (doomed, kept):
        store.events.record_box_event(box_event(event, "1"), T0)
        store.events.record_box_event(box_event(event, "2"), T0)
        Files(store.engine, chunk_size=2).put(f"event_{event.event_id}_1", b"abcd", event_id=event.event_id)
    Files(store.engine, chunk_size=2).put("incident_7", b"abcd", event_id=doomed.event_id, incident_id=7)

    store.events.delete(doomed.event_id)

    with pytest.raises(NotFound):
        store.events.get(doomed.event_id)
    assert store.events.get(kept.event_id).boxes_received == ("1", "2")
    assert store.events.count_box_events() == 2
    assert [b.event_id for b in store.events.box_events(kept.event_id)] == [kept.event_id] * 2
    # The incident's file survives with its chunks; the kept event's file too.
    assert file_rows(store) == (sorted([f"event_{kept.event_id}_1", "incident_7"]), 4)


def test_delete_an_unknown_event(store: Store) -> None:
    new_event(store)
    with pytest.raises(NotFound, match="no event 404"):
        store.events.delete(404)
    assert store.events.count() == 1
