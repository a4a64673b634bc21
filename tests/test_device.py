"""Reading a box's raw 408-byte frames from a file or FIFO, and stamping them from the cycle count."""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from opq.box.device import FRAME_SIZE_BYTES, CounterTimeline, DeviceSource, decode_frame
from opq.box.source import SampleSource
from opq.errors import ConfigError

T0_MS = 1_700_000_000_000
CYCLE_MS = 200 / 12


def frame_bytes(index: int, *, last_gps: int = 0, counter: int = 0, flags: int = 0) -> bytes:
    """A frame whose samples are index, index + 1, ... (wrapping in int16), packed as the DSP does."""
    samples = ((np.arange(200) + index * 1000 + 32768) % 65536 - 32768).tolist()
    return struct.pack("<200hHHI", *samples, last_gps, counter, flags)


def regular_reads(n: int, *, latency_ms: float = 0.4, jitter_ms: float = 0.0, seed: int = 1) -> list[int]:
    """Read times [ms] of n frames completed at T0 + (k + 1) cycles, read a little later."""
    rng = np.random.default_rng(seed)
    ends = T0_MS + (np.arange(n) + 1) * CYCLE_MS
    return [int(t) for t in np.floor(ends + latency_ms + rng.uniform(0, jitter_ms, n))]


def stamps(reads: list[int], max_drift_ms: float = 50.0) -> tuple[list[int], CounterTimeline]:
    """Every frame's timestamp [ms] for frames read at `reads` [ms]."""
    timeline = CounterTimeline(max_drift_ms)
    out = [t for read in reads for t in timeline.add(read)]
    return out + timeline.flush(), timeline


def expected_stamps(reads: list[int], frames: range, since: int = 0) -> list[int]:
    """Frame k starts k cycles after the earliest start of frame 0 that reads `since`..k + 9 allow
    (a frame is read after it ends), rounded to ms; computed in 1/12 ms."""
    starts = [12 * read - 200 * (k + 1) for k, read in enumerate(reads)]
    return [(min(starts[since : k + 10]) + 200 * k + 6) // 12 for k in frames]


# --- frames --------------------------------------------------------------------------------------


def test_decode_frame_reads_samples_and_metadata() -> None:
    frame = decode_frame(frame_bytes(3, last_gps=12_345, counter=59_999, flags=1), 42)
    assert frame.cycle.timestamp_ms == 42
    assert frame.cycle.counts.dtype == np.int16
    assert frame.cycle.counts[:3].tolist() == [3000, 3001, 3002]
    assert (frame.last_gps_counter, frame.current_counter, frame.flags) == (12_345, 59_999, 1)
    assert frame.gps_this_frame
    assert not decode_frame(frame_bytes(0, flags=2), 0).gps_this_frame
    assert decode_frame(frame_bytes(40), 0).cycle.counts[0] == -25536  # 40 000 wraps to int16
    with pytest.raises(ValueError, match="408 bytes"):
        decode_frame(b"\0" * 400, 0)


def test_frames_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "opq0"
    path.write_bytes(b"".join(frame_bytes(k, counter=1000 * k, flags=k % 2) for k in range(4)))
    reads = regular_reads(4)
    clock = iter(reads)
    source = DeviceSource(path, calibration_constant=150.0, clock_ms=lambda: next(clock))

    frames = list(source.frames())
    assert [f.cycle.counts[0] for f in frames] == [0, 1000, 2000, 3000]
    assert [f.current_counter for f in frames] == [0, 1000, 2000, 3000]
    assert [f.gps_this_frame for f in frames] == [False, True, False, True]
    assert [f.cycle.timestamp_ms for f in frames] == expected_stamps(reads, range(4))
    assert source.calibration_constant == 150.0


def test_cycles_from_a_fifo_end_when_the_writer_closes(tmp_path: Path) -> None:
    path = tmp_path / "opq0.fifo"
    os.mkfifo(path)

    def write() -> None:
        with path.open("wb", buffering=0) as fifo:
            for k in range(25):
                fifo.write(frame_bytes(k))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    reads = regular_reads(25, jitter_ms=3)
    clock = iter(reads)
    source: SampleSource = DeviceSource(path, calibration_constant=152.5, clock_ms=lambda: next(clock))
    cycles = list(source.cycles())
    writer.join(timeout=5)

    assert [c.counts[0] for c in cycles] == [1000 * k for k in range(25)]
    assert [c.timestamp_ms for c in cycles] == expected_stamps(reads, range(25))


def test_truncated_tail_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "opq0"
    path.write_bytes(frame_bytes(0) + frame_bytes(1) + frame_bytes(2)[:100])
    source = DeviceSource(path, calibration_constant=152.5, clock_ms=lambda: T0_MS)
    with caplog.at_level(logging.WARNING):
        frames = list(source.frames())
    assert len(frames) == 2
    assert any("100 of 408 bytes left over" in m for m in caplog.messages)


def test_empty_device_ends_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "opq0"
    path.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert list(DeviceSource(path, calibration_constant=1.0).cycles()) == []
    assert caplog.messages == []


def test_missing_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"device .*opq0: cannot open"):
        list(DeviceSource(tmp_path / "opq0", calibration_constant=152.5).frames())


@pytest.mark.parametrize("calibration", [0.0, -1.0, float("inf"), float("nan")])
def test_calibration_must_be_positive(tmp_path: Path, calibration: float) -> None:
    with pytest.raises(ConfigError, match="calibration constant"):
        DeviceSource(tmp_path / "opq0", calibration_constant=calibration)


def test_frame_size() -> None:
    assert FRAME_SIZE_BYTES == 408


# --- timeline ------------------------------------------------------------------------------------


def test_timeline_ignores_read_jitter() -> None:
    reads = regular_reads(300, jitter_ms=8)
    out, timeline = stamps(reads)
    assert out == expected_stamps(reads, range(300))
    assert set(np.diff(out)) == {16, 17}  # whole cycles, not the jitter of the reads
    assert abs(out[0] - T0_MS) <= 2  # the earliest reads of the first window: little latency
    assert all(out[k] <= reads[k] - CYCLE_MS for k in range(300))
    assert timeline.reanchor_count == 0


def test_timeline_catching_up_on_the_driver_ring_changes_nothing() -> None:
    reads = regular_reads(100)
    # The reader stalls 130 ms: eight frames wait in the driver and are read at once.
    reads[40:48] = [reads[47]] * 8
    out, timeline = stamps(reads)
    assert out == expected_stamps(reads, range(100))
    assert set(np.diff(out)) == {16, 17}
    assert timeline.reanchor_count == 0


def test_timeline_backlog_at_start_is_not_taken_for_the_start() -> None:
    reads = regular_reads(60)
    reads[:6] = [reads[5]] * 6  # six frames were waiting when the device was opened
    out, timeline = stamps(reads)
    assert out == expected_stamps(reads, range(60))
    assert abs(out[0] - (T0_MS + 0.4)) <= 1  # not the first read minus a cycle, 83 ms later
    assert timeline.reanchor_count == 0


def test_timeline_lost_frames_reanchor() -> None:
    reads = regular_reads(60)
    # 12 frames were overwritten in the driver while the reader was away.
    reads[30:] = [int(r + 12 * CYCLE_MS) for r in reads[30:]]
    out, timeline = stamps(reads)
    assert out[:30] == expected_stamps(reads, range(30))
    assert out[30:] == expected_stamps(reads, range(30, 60), since=30)
    assert abs(out[30] - (T0_MS + 0.4 + 42 * CYCLE_MS)) <= 1  # frame 30 was the 42nd
    assert timeline.reanchor_count == 1


def test_timeline_small_loss_within_max_drift_is_kept() -> None:
    reads = regular_reads(60)
    reads[30:] = [int(r + 2 * CYCLE_MS) for r in reads[30:]]  # 33 ms < 50 ms
    out, timeline = stamps(reads)
    assert out == expected_stamps(reads, range(60))
    assert timeline.reanchor_count == 0
    out, timeline = stamps(reads, max_drift_ms=20.0)
    assert out[30:] == expected_stamps(reads, range(30, 60), since=30)
    assert timeline.reanchor_count == 1


def test_timeline_clock_stepping_back() -> None:
    reads = regular_reads(60)
    reads[30:] = [r - 1000 for r in reads[30:]]
    out, timeline = stamps(reads)
    # The frames within a window of the step already follow the new clock.
    assert out == expected_stamps(reads, range(60))
    assert out[21] - out[20] < -900
    assert timeline.reanchor_count == 1


def test_device_counts_reanchors(tmp_path: Path) -> None:
    path = tmp_path / "opq0"
    path.write_bytes(b"".join(frame_bytes(k) for k in range(40)))
    reads = regular_reads(40)
    reads[20:] = [r + 500 for r in reads[20:]]
    clock = iter(reads)
    source = DeviceSource(path, calibration_constant=152.5, clock_ms=lambda: next(clock))
    assert len(list(source.cycles())) == 40
    assert source.reanchor_count == 1


@pytest.mark.parametrize(("max_drift_ms", "window_frames"), [(0.0, 10), (float("nan"), 10), (50.0, 0)])
def test_timeline_settings_are_checked(tmp_path: Path, max_drift_ms: float, window_frames: int) -> None:
    with pytest.raises(ConfigError):
        DeviceSource(
            tmp_path / "opq0",
            calibration_constant=1.0,
            max_drift_ms=max_drift_ms,
            window_frames=window_frames,
        )
