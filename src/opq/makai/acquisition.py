"""From a capture request to a stored event: commands out, each box's waveform in, the event finished.

An event is stored as soon as it is requested, with every box asked in `boxes_triggered`; each box
that answers adds its `box_events` row, its waveform file and its arrival time (`latencies_ms`).
The event is complete when every box answered, or when the rest did not answer within the timeout
after the window's end; then it is announced. No socket here: the caller sends the commands this
returns and passes in the frames it receives.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from opq.errors import OpqError, ProtocolError
from opq.protocol import Command, DataHeader, ErrorResponse, GetData, RawCycle, parse_data_response
from opq.protocol.internal import CaptureRequest
from opq.store import Store
from opq.store.models import BoxEvent, Event

logger = logging.getLogger(__name__)

CYCLES_PER_WINDOW: Final = 10
"""`window_timestamps_ms` holds one timestamp per 2000 samples (10 cycles), as the seed says."""
_SEQ_LIMIT: Final = 2**32


@dataclass
class _Acquiring:
    """An event whose boxes may still answer."""

    event: Event
    asked: frozenset[str]
    deadline_ms: int
    answered: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Outstanding:
    event_id: int
    box_id: str
    sent_ms: int


class Acquisition:
    """Turns capture requests into events and box responses into their waveforms.

    `clock_ms` is the wall clock [ms since epoch]; `timeout_ms` is how long after a window's end a
    box may take to answer.
    """

    def __init__(self, store: Store, *, timeout_ms: int, identity: str, clock_ms: Callable[[], int]) -> None:
        self._store = store
        self._timeout_ms = timeout_ms
        self._identity = identity
        self._clock_ms = clock_ms
        self._seq = itertools.count(int(clock_ms()) % _SEQ_LIMIT)
        self._acquiring: dict[int, _Acquiring] = {}
        self._outstanding: dict[int, _Outstanding] = {}
        self._last_triggered: int | None = None  # the planner's latest event: what a next piece continues
        self.counts: Counter[str] = Counter()
        self.latencies_ms: list[int] = []
        """Request to stored, per box response (the newest 1,000)."""

    @property
    def in_progress(self) -> int:
        """Events whose boxes may still answer."""
        return len(self._acquiring)

    def start(self, request: CaptureRequest) -> tuple[int, list[Command]]:
        """Store a new event for the request, and the commands that ask its boxes for their data."""
        now_ms = self._clock_ms()
        unknown = [box for box in request.box_ids if not self._known(box)]
        if unknown:
            raise ProtocolError(f"capture request names unknown boxes {unknown}")
        event_id = self._store.allocate_id("event")
        description = request.reason or "manual capture"
        if request.piece:
            description += f" (piece {request.piece + 1})"
        # The planner has one anomaly open at a time, so a piece continues its latest capture.
        continues = self._last_triggered if request.piece else None
        event = Event(
            event_id=event_id,
            target_event_start_timestamp_ms=request.start_ms,
            target_event_end_timestamp_ms=request.end_ms,
            boxes_triggered=request.box_ids,
            description=description,
            continues_event_id=continues,
        )
        self._store.events.add(event)
        if request.triggered_by:
            self._last_triggered = event_id
        deadline_ms = max(now_ms, request.end_ms) + self._timeout_ms
        self._acquiring[event_id] = _Acquiring(event, frozenset(request.box_ids), deadline_ms)
        commands = []
        for box_id in request.box_ids:
            seq = next(self._seq) % _SEQ_LIMIT
            self._outstanding[seq] = _Outstanding(event_id, box_id, now_ms)
            body = GetData(start_ms=request.start_ms, end_ms=request.end_ms, wait=True)
            commands.append(Command(seq, box_id, now_ms, f"{self._identity}_{event_id}", body))
        self.counts["events"] += 1
        self.counts["commands"] += len(commands)
        logger.info(
            "event %d: asking boxes %s for %d..%d",
            event_id,
            ", ".join(request.box_ids),
            request.start_ms,
            request.end_ms,
        )
        return event_id, commands

    def receive(self, frames: Sequence[bytes], sender: str) -> int | None:
        """Handle one box response from `sender` (its CURVE key's box); the event id if it completed."""
        try:
            response, cycles = parse_data_response(frames)
        except ProtocolError as err:
            self.counts["malformed_responses"] += 1
            logger.warning("dropped a malformed response from box %s: %s", sender, err)
            return None
        if response.box_id != sender:
            self.counts["wrong_box_responses"] += 1
            logger.warning("box %s sent a response as box %s: dropped", sender, response.box_id)
            return None
        outstanding = self._outstanding.get(response.seq)
        if outstanding is None or outstanding.box_id != sender:
            self.counts["unexpected_responses"] += 1
            logger.info("box %s answered seq %d, which is not waiting: dropped", sender, response.seq)
            return None
        del self._outstanding[response.seq]
        acquiring = self._acquiring.get(outstanding.event_id)
        if acquiring is None:  # the event timed out before this box answered
            self.counts["late_responses"] += 1
            return None
        if isinstance(response.body, ErrorResponse):
            self.counts["error_responses"] += 1
            logger.warning(
                "box %s could not send event %d: %s", sender, outstanding.event_id, response.body.message
            )
        elif isinstance(response.body, DataHeader):
            self._store_box_data(acquiring.event, sender, cycles)
            acquiring.answered.add(sender)
            latency = self._clock_ms() - outstanding.sent_ms
            self.latencies_ms = [*self.latencies_ms[-999:], latency]
        if acquiring.answered | self._failed(acquiring) >= acquiring.asked:
            return self._complete(acquiring)
        return None

    def expire(self) -> list[int]:
        """Complete the events whose remaining boxes ran out of time; their ids."""
        now_ms = self._clock_ms()
        overdue = [a for a in self._acquiring.values() if now_ms >= a.deadline_ms]
        for acquiring in overdue:
            missing = sorted(acquiring.asked - acquiring.answered - self._failed(acquiring))
            self.counts["boxes_timed_out"] += len(missing)
            logger.warning("event %d: boxes %s did not answer in time", acquiring.event.event_id, missing)
        return [self._complete(acquiring) for acquiring in overdue]

    def _failed(self, acquiring: _Acquiring) -> set[str]:
        """Boxes of the event with no command outstanding that did not answer with data."""
        waiting = {o.box_id for o in self._outstanding.values() if o.event_id == acquiring.event.event_id}
        return set(acquiring.asked) - waiting - acquiring.answered

    def _complete(self, acquiring: _Acquiring) -> int:
        event_id = acquiring.event.event_id
        del self._acquiring[event_id]
        for seq in [s for s, o in self._outstanding.items() if o.event_id == event_id]:
            del self._outstanding[seq]
        self._store.events.complete(event_id, self._clock_ms())
        self.counts["events_completed"] += 1
        return event_id

    def _store_box_data(self, event: Event, box_id: str, cycles: list[RawCycle]) -> None:
        event_id = event.event_id
        filename = f"event_{event_id}_{box_id}"
        timestamps = [cycle.timestamp_ms for cycle in cycles]
        try:
            box = self._store.boxes.get(box_id)
            self._store.files.put(
                filename,
                (np.ascontiguousarray(cycle.counts, dtype="<i2").tobytes() for cycle in cycles),
                event_id=event_id,
                box_id=box_id,
                metadata={
                    "format": "int16le",
                    "sample_rate_hz": 12_000,
                    "calibration_constant": box.calibration_constant,
                    "cycles": len(cycles),
                    "first_cycle_timestamp_ms": timestamps[0] if timestamps else None,
                },
            )
            self._store.events.record_box_event(
                BoxEvent(
                    event_id=event_id,
                    box_id=box_id,
                    event_start_timestamp_ms=timestamps[0]
                    if timestamps
                    else event.target_event_start_timestamp_ms,
                    event_end_timestamp_ms=timestamps[-1]
                    if timestamps
                    else event.target_event_start_timestamp_ms,
                    window_timestamps_ms=tuple(timestamps[::CYCLES_PER_WINDOW]),
                    location=box.location,
                    data_fs_filename=filename,
                ),
                latency_ms=self._clock_ms(),
            )
        except OpqError:
            self.counts["storage_failures"] += 1
            logger.exception("event %d: could not store the data of box %s", event_id, box_id)
            return
        self.counts["box_events"] += 1

    def _known(self, box_id: str) -> bool:
        try:
            self._store.boxes.get(box_id)
        except OpqError:
            return False
        return True
