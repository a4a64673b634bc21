"""The box's raw ring buffer: inclusive range queries, wrap-around, gaps, clock steps, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.box.ringbuffer import CYCLE_DURATION_MS, RingBuffer
from opq.box.source import SourceCycle

T0 = 1_700_000_000_000


def cycle_at(timestamp_ms: int) -> SourceCycle:
    """A cycle whose samples all carry its timestamp (mod 30,000), to check rows stay with their times."""
    return SourceCycle(timestamp_ms, np.full(200, timestamp_ms % 30_000, dtype=np.int16))


def stream_ms(n: int, start_ms: int = T0) -> list[int]:
    """Timestamps of n consecutive cycles [ms], as a source rounds them."""
    return [start_ms + round(i * CYCLE_DURATION_MS) for i in range(n)]


def filled(capacity: int, timestamps: list[int]) -> RingBuffer:
    buffer = RingBuffer(capacity)
    for t in timestamps:
        buffer.append(cycle_at(t))
    return buffer


def assert_rows_match(found_ms: np.ndarray, counts: np.ndarray) -> None:
    assert counts.shape == (len(found_ms), 200)
    assert np.array_equal(counts[:, 0], found_ms % 30_000)
    assert np.array_equal(counts[:, -1], found_ms % 30_000)


def test_an_empty_buffer_has_nothing() -> None:
    buffer = RingBuffer(10)
    assert len(buffer) == 0
    assert buffer.newest_timestamp_ms is None
    assert buffer.oldest_timestamp_ms is None
    assert len(buffer.cycles_between(0, 2**62)) == 0


def test_an_hour_is_216000_cycles() -> None:
    assert RingBuffer.for_duration(3600).capacity_cycles == 216_000


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(0, 0, [0], id="the cycle holding a point"),
        pytest.param(16, 16, [0], id="last ms of a cycle"),
        pytest.param(17, 17, [17], id="first ms of the next"),
        pytest.param(5, 33, [0, 17, 33], id="partly covered cycles at both ends"),
        pytest.param(17, 50, [17, 33, 50], id="exact cycle starts"),
        pytest.param(-100, -1, [], id="before everything"),
        pytest.param(-100, 0, [0], id="ends on the first cycle's start"),
        pytest.param(84, 500, [83], id="beyond the newest"),
        pytest.param(83, 83, [67, 83], id="a rounded start shares a ms"),
        pytest.param(90, 99, [83], id="inside the newest cycle"),
        pytest.param(100, 200, [], id="after the newest cycle ends"),
    ],
)
def test_a_range_includes_every_overlapping_cycle(start: int, end: int, expected: list[int]) -> None:
    buffer = filled(10, stream_ms(6, 0))  # 0, 17, 33, 50, 67, 83
    found = buffer.cycles_between(start, end)
    assert found.timestamps_ms.tolist() == expected
    assert_rows_match(found.timestamps_ms, found.counts)


def test_a_full_buffer_keeps_the_newest_and_answers_across_the_wrap() -> None:
    times = stream_ms(23)
    buffer = filled(8, times)
    assert len(buffer) == 8
    assert buffer.oldest_timestamp_ms == times[15]
    assert buffer.newest_timestamp_ms == times[22]
    found = buffer.cycles_between(times[0], times[22])
    assert found.timestamps_ms.tolist() == times[15:]
    assert_rows_match(found.timestamps_ms, found.counts)
    assert buffer.cycles_between(times[17] + 1, times[20]).timestamps_ms.tolist() == times[17:21]


def test_a_gap_holds_no_cycles() -> None:
    times = stream_ms(5) + stream_ms(5, T0 + 10_000)
    buffer = filled(20, times)
    assert len(buffer.cycles_between(T0 + 1_000, T0 + 9_000)) == 0
    assert buffer.cycles_between(T0 + 70, T0 + 10_000).timestamps_ms.tolist() == [times[4], times[5]]


def test_a_clock_step_back_discards_the_cycles_it_makes_future() -> None:
    buffer = filled(20, stream_ms(10))
    buffer.append(cycle_at(T0 + 50))  # the clock stepped back by ~100 ms
    assert buffer.discarded_on_clock_step == 7  # cycles at 50 ms and later
    assert buffer.newest_timestamp_ms == T0 + 50
    assert buffer.cycles_between(T0, T0 + 1000).timestamps_ms.tolist() == [T0, T0 + 17, T0 + 33, T0 + 50]


def test_a_cycle_must_have_200_samples() -> None:
    with pytest.raises(ValueError, match="200 samples"):
        RingBuffer(4).append(SourceCycle(T0, np.zeros(199, dtype=np.int16)))
    with pytest.raises(ValueError, match="at least 1"):
        RingBuffer(0)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(1, 40), min_size=0, max_size=60),
    capacity=st.integers(1, 25),
    start=st.integers(-50, 1500),
    length=st.integers(0, 400),
)
def test_a_range_query_matches_a_scan(steps: list[int], capacity: int, start: int, length: int) -> None:
    times = list(np.cumsum([0, *steps]))
    buffer = filled(capacity, times)
    kept = times[-capacity:]
    end = start + length
    expected = [t for t in kept if t <= end and t + CYCLE_DURATION_MS > start]
    found = buffer.cycles_between(start, end)
    assert found.timestamps_ms.tolist() == expected
    assert_rows_match(found.timestamps_ms, found.counts)


def test_readers_see_consistent_rows_while_a_writer_appends() -> None:
    buffer = RingBuffer(500)
    times = stream_ms(5000)
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            found = buffer.cycles_between(T0, times[-1])
            ms = found.timestamps_ms
            if not (np.all(np.diff(ms) > 0) and np.array_equal(found.counts[:, 0], ms % 30_000)):
                problems.append("inconsistent snapshot")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for t in times:
        buffer.append(cycle_at(t))
    done.set()
    for reader in readers:
        reader.join()
    assert problems == []
    assert len(buffer) == 500
