"""A real OPQ Box's raw frame stream (`/dev/opq0` or a FIFO) read as timestamped cycles of ADC counts."""

from __future__ import annotations

import logging
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from opq.box.source import SourceCycle
from opq.clock import wall_clock_ms
from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.errors import ConfigError

logger = logging.getLogger(__name__)

FRAME = struct.Struct(f"<{SAMPLES_PER_CYCLE}hHHI")
"""One cycle as the kernel driver delivers it: int16 samples, uint16 last_gps_counter,
uint16 current_counter, uint32 flags, little-endian and packed (opq-original §2.1)."""

FRAME_SIZE_BYTES = FRAME.size  # 408
GPS_THIS_FRAME = 0x1
"""`flags` bit: a GPS pulse-per-second edge arrived during this frame."""

DEFAULT_MAX_DRIFT_MS = 50.0
DEFAULT_WINDOW_FRAMES = 10
"""Frames the timeline looks ahead: the driver's ring holds 10, so a backlog never fills a window."""

_TRAILER = struct.Struct("<HHI")
_SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000  # 12: timeline arithmetic in samples stays in integers


@dataclass(frozen=True)
class DeviceFrame:
    """One frame from the box's DSP: the cycle and the DSP's GPS timing fields (OPQ never used them)."""

    cycle: SourceCycle
    last_gps_counter: int
    """TIM4 count (60 kHz, wraps each second) latched at the last GPS pulse-per-second edge."""
    current_counter: int
    """TIM4 count when the frame was completed."""
    flags: int

    @property
    def gps_this_frame(self) -> bool:
        """Whether a GPS pulse-per-second edge arrived during this frame."""
        return bool(self.flags & GPS_THIS_FRAME)


def decode_frame(data: bytes, timestamp_ms: int) -> DeviceFrame:
    """The frame in 408 raw bytes, its cycle stamped `timestamp_ms` [ms]."""
    if len(data) != FRAME_SIZE_BYTES:
        raise ValueError(f"a frame is {FRAME_SIZE_BYTES} bytes, got {len(data)}")
    counts = np.frombuffer(data, dtype="<i2", count=SAMPLES_PER_CYCLE).astype(np.int16, copy=False)
    last_gps_counter, current_counter, flags = _TRAILER.unpack_from(data, 2 * SAMPLES_PER_CYCLE)
    return DeviceFrame(SourceCycle(timestamp_ms, counts), last_gps_counter, current_counter, flags)


class CounterTimeline:
    """Cycle timestamps [ms] from a count of cycles, anchored to the wall clock, re-anchored on drift.

    OPQ stamped each cycle with the wall clock when it was read, jitter and all. Here frame k
    starts exactly k cycles (k·200/12 000 s) after an anchor, the first sample of frame 0. A frame
    cannot be read before it is complete, so its read time minus the end the anchor gives it (the
    drift) is its read latency. Each frame is stamped once the next `window_frames` - 1 are read
    (a delay of 10 frames, 167 ms, by default) and the anchor follows the smallest drift of that
    window, which keeps a backlog from skewing it:
    - smallest drift below 0: the anchor is late (it was taken from a frame read out of the
      driver's backlog, or the wall clock stepped back); move it earlier by that much.
    - smallest drift above `max_drift_ms`: every frame of the window was read late, so frames were
      lost (or the wall clock stepped forward); move the anchor later by that much.
    A reader catching up on the driver's 10-frame ring has a small drift somewhere in the window
    and changes nothing. Moves beyond `max_drift_ms` count as re-anchors and are logged.
    """

    def __init__(
        self, max_drift_ms: float = DEFAULT_MAX_DRIFT_MS, window_frames: int = DEFAULT_WINDOW_FRAMES
    ) -> None:
        if not (math.isfinite(max_drift_ms) and max_drift_ms > 0):
            raise ConfigError(f"max_drift_ms {max_drift_ms!r} is not a positive number of milliseconds")
        if window_frames < 1:
            raise ConfigError(f"window_frames {window_frames!r} is not at least 1")
        self._max_drift = round(max_drift_ms * _SAMPLES_PER_MS)
        self._window_frames = window_frames
        self._anchor: int | None = None  # first sample of frame 0 [samples since the epoch]
        self._pending: deque[tuple[int, int]] = deque()  # (frame number, end by the wall clock)
        self._frames = 0
        self.reanchor_count = 0

    def add(self, read_ms: int) -> list[int]:
        """Note that the next frame was read at `read_ms` [ms since the epoch]; return the
        timestamps [ms] of the frames, oldest first, whose time is now settled."""
        self._pending.append((self._frames, read_ms * _SAMPLES_PER_MS))
        self._frames += 1
        return [self._stamp_oldest()] if len(self._pending) >= self._window_frames else []

    def flush(self) -> list[int]:
        """Timestamps [ms] of every frame still waiting for its window, oldest first."""
        return [self._stamp_oldest() for _ in range(len(self._pending))]

    def _stamp_oldest(self) -> int:
        # A frame's end by the counter is anchor + (number + 1) cycles.
        earliest = min(read - (number + 1) * SAMPLES_PER_CYCLE for number, read in self._pending)
        if self._anchor is None:
            self._anchor = earliest
        drift = earliest - self._anchor
        if drift < 0 or drift > self._max_drift:
            self._anchor = earliest
            if abs(drift) > self._max_drift:
                self.reanchor_count += 1
                logger.warning(
                    "cycle counter and wall clock %.1f ms apart at frame %d: re-anchored",
                    drift / _SAMPLES_PER_MS,
                    self._pending[0][0],
                )
        number, _ = self._pending.popleft()
        start = self._anchor + number * SAMPLES_PER_CYCLE
        return (start + _SAMPLES_PER_MS // 2) // _SAMPLES_PER_MS


class DeviceSource:
    """The `SampleSource` of a real box: frames read one by one from the driver's character device.

    `frames()` opens the device, reads 408-byte frames until end of file (a FIFO whose writer
    closed) and closes it; a partial frame at the end is dropped with a warning. Timestamps come
    from a `CounterTimeline` fed by `clock_ms` [ms since the epoch] right after each read, so
    frames come out `window_frames` - 1 reads after they are read (all of them at the end).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        calibration_constant: float,
        clock_ms: Callable[[], int] = wall_clock_ms,
        max_drift_ms: float = DEFAULT_MAX_DRIFT_MS,
        window_frames: int = DEFAULT_WINDOW_FRAMES,
    ) -> None:
        if not (math.isfinite(calibration_constant) and calibration_constant > 0):
            raise ConfigError(f"calibration constant {calibration_constant!r} counts/V is not positive")
        CounterTimeline(max_drift_ms, window_frames)  # checks them now rather than at the first read
        self.path = Path(path)
        self._calibration = float(calibration_constant)
        self._clock_ms = clock_ms
        self._max_drift_ms = max_drift_ms
        self._window_frames = window_frames
        self.reanchor_count = 0
        """Times the timeline jumped by more than max_drift_ms (lost frames, clock steps), all reads."""

    @property
    def calibration_constant(self) -> float:
        """ADC counts per volt of this box [counts/V], from its configuration."""
        return self._calibration

    def frames(self) -> Iterator[DeviceFrame]:
        """Frames in the order read, until the device or FIFO reaches end of file."""
        try:
            device = self.path.open("rb", buffering=0)
        except OSError as err:
            raise ConfigError(f"device {self.path}: cannot open: {err.strerror or err}") from err
        timeline = CounterTimeline(self._max_drift_ms, self._window_frames)
        pending: deque[bytes] = deque()
        with device:
            while data := self._read_frame(device):
                pending.append(data)
                timestamps = timeline.add(self._clock_ms())
                self.reanchor_count += timeline.reanchor_count
                timeline.reanchor_count = 0
                for timestamp_ms in timestamps:
                    yield decode_frame(pending.popleft(), timestamp_ms)
        for timestamp_ms in timeline.flush():
            yield decode_frame(pending.popleft(), timestamp_ms)
        self.reanchor_count += timeline.reanchor_count

    def cycles(self) -> Iterator[SourceCycle]:
        """The cycles of `frames()`."""
        for frame in self.frames():
            yield frame.cycle

    def _read_frame(self, device: BinaryIO) -> bytes:
        """The next whole frame, or b"" at end of file (warning if part of a frame was left)."""
        data = b""
        while len(data) < FRAME_SIZE_BYTES:
            chunk = device.read(FRAME_SIZE_BYTES - len(data))
            if not chunk:
                if data:
                    logger.warning(
                        "device %s: stream ended mid-frame; %d of %d bytes left over and dropped",
                        self.path,
                        len(data),
                        FRAME_SIZE_BYTES,
                    )
                return b""
            data += chunk
        return data
