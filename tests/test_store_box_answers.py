"""Several boxes' answers to an event stored at once, on every backend: all of a batch or none of it."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import Store
from opq.store.events import BoxAnswer
from opq.store.files import WholeFile
from opq.store.models import BoxEvent, Event

T0 = 1_700_000_000_000


def new_event(store: Store, *boxes: str) -> Event:
    event = Event(
        event_id=store.allocate_id("event"),
        target_event_start_timestamp_ms=T0,
        target_event_end_timestamp_ms=T0 + 1_000,
        boxes_triggered=boxes or ("1", "2", "3"),
        description="test",
    )
    store.events.add(event)
    return event


def answer(event: Event, box_id: str, received_ms: int | None = None, **changes: object) -> BoxAnswer:
    """Box `box_id`'s answer: a box event and a waveform of a few hundred bytes unique to the box."""
    filename = f"event_{event.event_id}_{box_id}"
    made = BoxAnswer(
        BoxEvent(
            event_id=event.event_id,
            box_id=box_id,
            event_start_timestamp_ms=T0 - 5,
            event_end_timestamp_ms=T0 + 1_005,
            window_timestamps_ms=(T0 - 5, T0 + 162),
            location="kailua",
            data_fs_filename=filename,
        ),
        WholeFile(
            filename,
            bytes(range(256)) * 2 + box_id.encode(),
            event_id=event.event_id,
            box_id=box_id,
            metadata={"format": "int16le"},
        ),
        T0 + 2_000 + int(box_id) if received_ms is None else received_ms,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def assert_untouched(store: Store, event: Event, box_events: int = 0, files: int = 0) -> None:
    assert store.events.get(event.event_id) == event
    assert store.events.count_box_events() == box_events
    assert len(store.files.find(event_id=event.event_id)) == files


def test_a_batch_stores_rows_files_and_arrivals_and_can_complete_the_event(store: Store) -> None:
    event = new_event(store, "1", "2", "3")
    first = [answer(event, "3"), answer(event, "1")]
    store.events.record_box_answers(event.event_id, first, store.files)
    stored = store.events.get(event.event_id)
    assert stored.boxes_received == ("3", "1")
    assert stored.latencies_ms == (T0 + 2_003, T0 + 2_001)
    assert stored.completed_ms is None

    store.events.record_box_answers(
        event.event_id, [answer(event, "2")], store.files, completed_ms=T0 + 2_010
    )
    stored = store.events.get(event.event_id)
    assert stored.boxes_received == ("3", "1", "2")
    assert stored.latencies_ms == (T0 + 2_003, T0 + 2_001, T0 + 2_002)
    assert stored.completed_ms == T0 + 2_010
    for box_id in ("1", "2", "3"):
        sent = answer(event, box_id)
        assert store.events.box_event(event.event_id, box_id) == sent.box_event
        assert store.files.read_bytes(sent.waveform.filename) == sent.waveform.data
        info = store.files.get(sent.waveform.filename)
        assert (info.event_id, info.box_id, info.metadata) == (event.event_id, box_id, {"format": "int16le"})


def test_a_waveform_longer_than_a_chunk_reads_back_whole(store: Store) -> None:
    event = new_event(store, "1")
    data = bytes(range(256)) * (store.files.chunk_size // 256 * 2 + 3)
    sent = answer(event, "1")
    sent = dataclasses.replace(sent, waveform=dataclasses.replace(sent.waveform, data=data))
    store.events.record_box_answers(event.event_id, [sent], store.files)
    assert store.files.read_bytes(sent.waveform.filename) == data


def test_no_answers_with_a_completion_only_completes(store: Store) -> None:
    event = new_event(store, "1")
    store.events.record_box_answers(event.event_id, [], store.files, completed_ms=T0 + 9)
    assert store.events.get(event.event_id) == dataclasses.replace(event, completed_ms=T0 + 9)


def test_a_batch_with_a_box_already_recorded_writes_none_of_it(store: Store) -> None:
    event = new_event(store, "1", "2")
    store.events.record_box_answers(event.event_id, [answer(event, "1")], store.files)
    before = store.events.get(event.event_id)
    again = answer(event, "1", received_ms=T0 + 5_000)
    with pytest.raises(Conflict, match=r"boxes \['1'\] was already recorded"):
        store.events.record_box_answers(
            event.event_id, [answer(event, "2"), again], store.files, completed_ms=T0
        )
    assert_untouched(store, before, box_events=1, files=1)
    assert not store.files.exists(f"event_{event.event_id}_2")


def test_a_batch_whose_file_name_is_taken_writes_none_of_it(store: Store) -> None:
    event = new_event(store, "1", "2")
    store.files.put(f"event_{event.event_id}_2", b"someone else's")
    with pytest.raises(Conflict, match="already exists"):
        store.events.record_box_answers(
            event.event_id, [answer(event, "1"), answer(event, "2")], store.files, completed_ms=T0
        )
    assert_untouched(store, event)
    assert store.files.read_bytes(f"event_{event.event_id}_2") == b"someone else's"


def test_a_batch_for_an_untriggered_box_writes_none_of_it(store: Store) -> None:
    event = new_event(store, "1", "2")
    with pytest.raises(InvalidValue, match=r"boxes \['9'\] are not among boxes_triggered"):
        store.events.record_box_answers(event.event_id, [answer(event, "1"), answer(event, "9")], store.files)
    assert_untouched(store, event)


def test_a_batch_for_an_unknown_event_writes_nothing(store: Store) -> None:
    event = new_event(store, "1")
    orphan = answer(dataclasses.replace(event, event_id=404), "1")
    with pytest.raises(NotFound, match="no event 404"):
        store.events.record_box_answers(404, [orphan], store.files)
    assert store.events.count_box_events() == 0
    assert store.files.find() == []


def _bad(event: Event, name: str) -> list[BoxAnswer]:
    good = answer(event, "1")
    if name == "box-twice":
        return [good, answer(event, "1", waveform=WholeFile("other", b""))]
    if name == "file-not-named-by-row":
        return [dataclasses.replace(good, waveform=dataclasses.replace(good.waveform, filename="other"))]
    if name == "other-event":
        return [dataclasses.replace(good, box_event=dataclasses.replace(good.box_event, event_id=404))]
    if name == "metadata-not-json":
        return [
            dataclasses.replace(good, waveform=dataclasses.replace(good.waveform, metadata={"x": object()}))
        ]
    if name == "start-after-end":
        return [
            dataclasses.replace(
                good, box_event=dataclasses.replace(good.box_event, event_start_timestamp_ms=T0 + 9_000)
            )
        ]
    if name == "bad-window":
        return [
            dataclasses.replace(
                good, box_event=dataclasses.replace(good.box_event, window_timestamps_ms=(T0, "later"))
            )
        ]
    return [dataclasses.replace(good, received_ms=12.5)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("box-twice", "answer more than once"),
        ("file-not-named-by-row", "is not the box event's data_fs_filename"),
        ("other-event", "the box event is of event 404"),
        ("metadata-not-json", "metadata is not JSON"),
        ("start-after-end", "is after end"),
        ("bad-window", "window_timestamps_ms"),
        ("float-arrival", "received_ms"),
    ],
)
def test_a_batch_with_a_bad_value_writes_nothing(store: Store, name: str, message: str) -> None:
    event = new_event(store, "1", "2")
    with pytest.raises(InvalidValue, match=message):
        store.events.record_box_answers(
            event.event_id, [answer(event, "2"), *_bad(event, name)], store.files, completed_ms=T0
        )
    assert_untouched(store, event)


def test_concurrent_batches_of_one_event_are_all_kept(store: Store) -> None:
    boxes = [str(n) for n in range(8)]
    event = new_event(store, *boxes)
    batches = [[answer(event, box) for box in boxes[n : n + 2]] for n in range(0, len(boxes), 2)]
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        list(
            pool.map(
                lambda batch: store.events.record_box_answers(event.event_id, batch, store.files), batches
            )
        )
    stored = store.events.get(event.event_id)
    assert sorted(stored.boxes_received) == boxes
    assert stored.latencies_ms == tuple(T0 + 2_000 + int(box) for box in stored.boxes_received)
    assert len(store.files.find(event_id=event.event_id)) == len(boxes)
