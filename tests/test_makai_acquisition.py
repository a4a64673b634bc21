"""From a capture request to a complete, stored event: boxes answering, failing, timing out."""

from __future__ import annotations

import numpy as np
import pytest

from opq.errors import ProtocolError
from opq.makai.acquisition import Acquisition
from opq.protocol import (
    Command,
    DataHeader,
    ErrorResponse,
    GetData,
    RawCycle,
    Response,
    data_response_frames,
    encode_response,
)
from opq.protocol.internal import CaptureRequest
from opq.store import Store
from opq.store.models import Box, Location

START_MS = 1_790_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now_ms = START_MS + 5_000

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def site(store: Store) -> Store:
    store.locations.add(Location("lab", -157.8, 21.3, "The lab"))
    for box_id in ("1", "2", "3"):
        store.boxes.add(Box(box_id, f"box {box_id}", 150.0, location="lab", location_start_time_ms=0))
    return store


def cycles(n: int, first_ms: int = START_MS) -> list[RawCycle]:
    t = np.arange(200) / 12_000
    counts = np.round(150 * 120 * np.sqrt(2) * np.sin(2 * np.pi * 60 * t)).astype(np.int16)
    return [RawCycle(first_ms + round(i * 1000 / 60), counts) for i in range(n)]


def answer(command: Command, data: list[RawCycle]) -> list[bytes]:
    header = DataHeader(data[0].timestamp_ms, data[-1].timestamp_ms) if data else DataHeader(0, 0)
    return data_response_frames(Response(command.box_id, command.seq, START_MS, header), data)


def test_an_event_is_stored_at_once_and_completes_when_every_box_answered(site: Store) -> None:
    clock = Clock()
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=clock)
    request = CaptureRequest(("1", "2"), START_MS, START_MS + 1_000, reason="rms min 60.0 V < 114.0 V")
    event_id, commands = acquisition.start(request)
    assert [c.box_id for c in commands] == ["1", "2"]
    assert all(c.body == GetData(START_MS, START_MS + 1_000, wait=True) for c in commands)
    assert len({c.seq for c in commands}) == 2
    stored = site.events.get(event_id)
    assert stored.boxes_triggered == ("1", "2") and stored.boxes_received == ()
    assert stored.completed_ms is None

    clock.now_ms += 250
    assert acquisition.receive(answer(commands[0], cycles(60)), "1") is None
    clock.now_ms += 250
    assert acquisition.receive(answer(commands[1], cycles(30)), "2") == event_id

    event = site.events.get(event_id)
    assert event.boxes_received == ("1", "2")
    assert event.latencies_ms == (START_MS + 5_250, START_MS + 5_500)
    assert event.completed_ms == START_MS + 5_500
    box_event = site.events.box_event(event_id, "1")
    assert box_event.data_fs_filename == f"event_{event_id}_1"
    assert box_event.location == "lab"
    assert box_event.window_timestamps_ms == tuple(c.timestamp_ms for c in cycles(60)[::10])
    data = site.files.read_bytes(f"event_{event_id}_1")
    assert np.array_equal(np.frombuffer(data, "<i2"), np.concatenate([c.counts for c in cycles(60)]))
    meta = site.files.get(f"event_{event_id}_1")
    assert (meta.event_id, meta.box_id) == (event_id, "1")
    assert meta.metadata["calibration_constant"] == 150.0


def test_a_silent_box_leaves_the_event_complete_with_what_arrived(site: Store) -> None:
    clock = Clock()
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1", "2", "3"), START_MS, START_MS + 1_000))
    acquisition.receive(answer(commands[0], cycles(60)), "1")
    error = Response("2", commands[1].seq, START_MS, ErrorResponse("no data in that window"))
    assert acquisition.receive([encode_response(error)], "2") is None
    # The window ended before the request: the boxes get the timeout from the request on.
    clock.now_ms = START_MS + 5_000 + 9_999
    assert acquisition.expire() == []
    clock.now_ms += 1
    assert acquisition.expire() == [event_id]
    event = site.events.get(event_id)
    assert event.boxes_triggered == ("1", "2", "3") and event.boxes_received == ("1",)
    assert acquisition.counts["boxes_timed_out"] == 1
    assert acquisition.counts["error_responses"] == 1
    # The straggler's answer after the timeout is dropped, not stored.
    assert acquisition.receive(answer(commands[2], cycles(10)), "3") is None
    assert site.events.get(event_id).boxes_received == ("1",)


def test_responses_that_do_not_match_a_request_are_dropped(site: Store) -> None:
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=Clock())
    event_id, commands = acquisition.start(CaptureRequest(("1",), START_MS, START_MS + 1_000))
    assert acquisition.receive(answer(commands[0], cycles(5)), "2") is None  # box 2 posing as box 1
    assert acquisition.receive([b"\xff\x00garbage"], "1") is None
    wrong_seq = Command(commands[0].seq + 1, "1", 0, "", commands[0].body)
    assert acquisition.receive(answer(wrong_seq, cycles(5)), "1") is None
    assert acquisition.counts["wrong_box_responses"] == 1
    assert acquisition.counts["malformed_responses"] == 1
    assert acquisition.counts["unexpected_responses"] == 1
    assert site.events.get(event_id).boxes_received == ()
    assert acquisition.receive(answer(commands[0], cycles(5)), "1") == event_id


def test_a_capture_of_an_unknown_box_is_refused_and_stores_nothing(site: Store) -> None:
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=Clock())
    with pytest.raises(ProtocolError, match=r"unknown boxes \['99'\]"):
        acquisition.start(CaptureRequest(("1", "99"), START_MS, START_MS + 1_000))
    assert site.events.count() == 0


def test_the_pieces_of_a_long_anomaly_are_linked_and_a_manual_capture_between_is_not(site: Store) -> None:
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=Clock())
    first, _ = acquisition.start(CaptureRequest(("1",), START_MS, START_MS + 10_000, triggered_by=("1",)))
    manual, _ = acquisition.start(CaptureRequest(("2",), START_MS, START_MS + 1_000))
    second, _ = acquisition.start(
        CaptureRequest(("1",), START_MS + 10_000, START_MS + 20_000, triggered_by=("1",), piece=1)
    )
    fresh, _ = acquisition.start(
        CaptureRequest(("1",), START_MS + 60_000, START_MS + 61_000, triggered_by=("1",))
    )
    assert site.events.get(first).continues_event_id is None
    assert site.events.get(manual).continues_event_id is None
    assert site.events.get(second).continues_event_id == first
    assert site.events.get(fresh).continues_event_id is None
    assert site.events.get(second).description.endswith("(piece 2)")


def test_answers_taken_together_are_stored_together_and_complete_the_event(site: Store) -> None:
    clock = Clock()
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1", "2", "3"), START_MS, START_MS + 1_000))
    acquisition.take(answer(commands[0], cycles(60)), "1")
    acquisition.take(answer(commands[1], cycles(60)), "2")
    assert acquisition.unstored == 2
    assert site.events.count_box_events() == 0  # nothing is written before the flush
    clock.now_ms += 10
    assert acquisition.flush() == []
    stored = site.events.get(event_id)
    assert stored.boxes_received == ("1", "2") and stored.completed_ms is None
    assert stored.latencies_ms == (START_MS + 5_000, START_MS + 5_000)  # arrival, not storage

    acquisition.take(answer(commands[2], cycles(30)), "3")
    clock.now_ms += 10
    assert acquisition.flush() == [event_id]
    assert acquisition.flush() == []
    event = site.events.get(event_id)
    assert event.boxes_received == ("1", "2", "3")
    assert event.completed_ms == START_MS + 5_020
    assert len(site.files.find(event_id=event_id)) == 3
    assert acquisition.in_progress == 0 and acquisition.counts["box_events"] == 3


def test_a_window_partly_sampled_is_asked_in_two_parts_and_stored_whole(site: Store) -> None:
    clock = Clock()
    clock.now_ms = START_MS + 600  # the window [START_MS, START_MS + 1 s] is partly sampled
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1", "2"), START_MS, START_MS + 1_000))
    split_ms = START_MS + 600 - 100
    assert [(c.box_id, c.body) for c in commands] == [
        ("1", GetData(START_MS, split_ms, wait=True)),
        ("1", GetData(split_ms, START_MS + 1_000, wait=True)),
        ("2", GetData(START_MS, split_ms, wait=True)),
        ("2", GetData(split_ms, START_MS + 1_000, wait=True)),
    ]
    whole = cycles(61)  # START_MS .. START_MS + 1 s; cycle 30 spans the split, so both parts hold it
    early, late = whole[:31], whole[30:]
    assert early[-1].timestamp_ms <= split_ms < early[-1].timestamp_ms + 17
    acquisition.take(answer(commands[0], early), "1")
    acquisition.take(answer(commands[3], late), "2")  # box 2's parts come in the other order
    assert acquisition.flush() == []
    assert site.events.count_box_events() == 0  # no box has sent its whole window yet
    clock.now_ms = START_MS + 1_050
    acquisition.take(answer(commands[1], late), "1")
    acquisition.take(answer(commands[2], early), "2")
    assert acquisition.flush() == [event_id]
    expected = np.concatenate([c.counts for c in whole])
    for box_id in ("1", "2"):
        data = site.files.read_bytes(f"event_{event_id}_{box_id}")
        assert np.array_equal(np.frombuffer(data, "<i2"), expected)
        box_event = site.events.box_event(event_id, box_id)
        assert (box_event.event_start_timestamp_ms, box_event.event_end_timestamp_ms) == (
            whole[0].timestamp_ms,
            whole[-1].timestamp_ms,
        )
        assert box_event.window_timestamps_ms == tuple(c.timestamp_ms for c in whole[::10])
    assert site.events.get(event_id).latencies_ms == (START_MS + 1_050, START_MS + 1_050)


def test_a_box_that_sent_only_the_first_part_keeps_it_when_it_times_out(site: Store) -> None:
    clock = Clock()
    clock.now_ms = START_MS + 600
    acquisition = Acquisition(site, timeout_ms=2_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1",), START_MS, START_MS + 1_000))
    acquisition.take(answer(commands[0], cycles(31)), "1")
    clock.now_ms = START_MS + 3_000
    assert acquisition.expire() == [event_id]
    assert acquisition.counts["boxes_timed_out"] == 1 and acquisition.counts["partial_answers"] == 1
    box_event = site.events.box_event(event_id, "1")
    assert box_event.event_end_timestamp_ms == cycles(31)[-1].timestamp_ms
    assert site.events.get(event_id).completed_ms == START_MS + 3_000


def test_a_failed_batch_writes_nothing_and_its_answers_are_stored_one_by_one(site: Store) -> None:
    clock = Clock()
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1", "2", "3"), START_MS, START_MS + 1_000))
    site.files.put(f"event_{event_id}_2", b"a file in the way")  # box 2's waveform cannot be stored
    for command in commands:
        acquisition.take(answer(command, cycles(20)), command.box_id)
    assert acquisition.flush() == [event_id]
    assert acquisition.counts["batch_failures"] == 1
    assert acquisition.counts["storage_failures"] == 1
    assert acquisition.counts["box_events"] == 2
    event = site.events.get(event_id)
    assert event.boxes_received == ("1", "3")
    assert event.completed_ms == START_MS + 5_000
    assert [b.box_id for b in site.events.box_events(event_id)] == ["1", "3"]
    assert site.files.read_bytes(f"event_{event_id}_2") == b"a file in the way"


def test_corrupt_and_truncated_responses_are_dropped_and_the_box_times_out(site: Store) -> None:
    clock = Clock()
    acquisition = Acquisition(site, timeout_ms=1_000, identity="test", clock_ms=clock)
    event_id, commands = acquisition.start(CaptureRequest(("1", "2"), START_MS, START_MS + 1_000))
    acquisition.take(answer(commands[0], cycles(10)), "1")
    frames = answer(commands[1], cycles(10))
    acquisition.take([*frames[:5], frames[5][:-7], *frames[6:]], "2")  # a cycle cut short
    acquisition.take([frames[0][:3]], "2")  # a header cut short
    assert acquisition.counts["malformed_responses"] == 2
    assert acquisition.flush() == []
    assert site.events.get(event_id).boxes_received == ("1",)
    clock.now_ms += 1_000
    assert acquisition.expire() == [event_id]
    event = site.events.get(event_id)
    assert event.boxes_received == ("1",) and event.completed_ms is not None
    assert acquisition.counts["boxes_timed_out"] == 1


def test_an_event_deleted_while_acquiring_is_given_up_not_announced(site: Store) -> None:
    acquisition = Acquisition(site, timeout_ms=10_000, identity="test", clock_ms=Clock())
    event_id, commands = acquisition.start(CaptureRequest(("1",), START_MS, START_MS + 1_000))
    site.events.delete(event_id)
    acquisition.take(answer(commands[0], cycles(10)), "1")
    assert acquisition.flush() == []
    assert acquisition.in_progress == 0
    assert acquisition.counts["events_vanished"] == 1 and acquisition.counts["storage_failures"] == 1
    assert site.files.find() == []
