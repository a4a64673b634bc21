"""From a capture request to a stored event: commands out, each box's waveform in, the event finished.

An event is stored as soon as it is requested, with every box asked in `boxes_triggered`. When
part of the window has been sampled already, each box is asked for it at once and for the rest
after the window's end, so that after the end a box sends (and Makai decodes) only the rest; the
parts are joined into one waveform per box.

Box responses are taken as they come (`take`) and stored by `flush`: the answers of one event
that arrived since the last flush go in one transaction (box_events rows, waveform files, the
boxes and their arrival times in `boxes_received` and `latencies_ms`). The event is complete when
every box answered (with data or an error), or when the rest did not answer within the timeout
after the window's end; the flush that stores its last answer also marks it complete, in the same
transaction. No socket here: the caller sends the commands this returns, passes in the frames it
receives and announces the events completed.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from opq.errors import NotFound, OpqError, ProtocolError
from opq.protocol import Command, DataHeader, ErrorResponse, GetData, RawCycle, parse_data_response
from opq.protocol.internal import CaptureRequest
from opq.store import Store
from opq.store.events import BoxAnswer
from opq.store.files import WholeFile
from opq.store.models import Box, BoxEvent, Event

logger = logging.getLogger(__name__)

CYCLES_PER_WINDOW: Final = 10
"""`window_timestamps_ms` holds one timestamp per 2000 samples (10 cycles), as the seed says."""
_SEQ_LIMIT: Final = 2**32
_LATENCIES_KEPT: Final = 1_000
SAMPLED_MARGIN_MS: Final = 100
"""The part of a window asked for at once ends this long before the request [ms]: a box has
sampled and buffered it by then even with its clock a little off (and it waits if not)."""


@dataclass
class _Acquiring:
    """An event whose boxes may still answer, or whose last answers are not stored yet."""

    event: Event
    boxes: dict[str, Box]
    """The boxes asked, as registered when the event was requested (location, calibration)."""
    deadline_ms: int
    waiting: dict[str, int]
    """Asked boxes that have not answered every part nor run out of time: the parts to come."""
    parts: dict[str, dict[int, list[RawCycle]]] = field(default_factory=dict)
    """The cycles of each part that came, by box and part (0: the earliest)."""
    arrived: list[BoxAnswer] = field(default_factory=list)
    """Answers taken and not stored yet."""


@dataclass(frozen=True)
class _Outstanding:
    event_id: int
    box_id: str
    sent_ms: int
    part: int


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
        """Command to arrival of a box's whole data (its last part), per box (the newest 1,000)."""
        self.store_ms: list[int] = []
        """Time a flush took to store an event's answers, per flush that stored some (the newest 1,000)."""

    @property
    def in_progress(self) -> int:
        """Events whose boxes may still answer, or whose answers are not all stored."""
        return len(self._acquiring)

    @property
    def unstored(self) -> int:
        """Answers taken and not stored yet: `flush` stores them."""
        return sum(len(a.arrived) for a in self._acquiring.values())

    def start(self, request: CaptureRequest) -> tuple[int, list[Command]]:
        """Store a new event for the request, and the commands that ask its boxes for their data."""
        now_ms = self._clock_ms()
        # The boxes are read now, while the boxes' answers are still to come (they wait for the
        # window's end), so that storing the answers reads nothing.
        boxes = {box_id: box for box_id in request.box_ids if (box := self._registered(box_id))}
        unknown = [box_id for box_id in request.box_ids if box_id not in boxes]
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
        parts = _window_parts(request.start_ms, request.end_ms, now_ms)
        waiting = dict.fromkeys(request.box_ids, len(parts))
        self._acquiring[event_id] = _Acquiring(event, boxes, deadline_ms, waiting)
        commands = []
        for box_id in request.box_ids:
            for part, body in enumerate(parts):
                seq = next(self._seq) % _SEQ_LIMIT
                self._outstanding[seq] = _Outstanding(event_id, box_id, now_ms, part)
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
        """Take one box response and store it at once; the event id if that completed the event."""
        self.take(frames, sender)
        completed = self.flush()
        return completed[0] if completed else None

    def take(self, frames: Sequence[bytes], sender: str) -> None:
        """Take one box response from `sender` (its CURVE key's box), to be stored by `flush`.

        A response that is malformed, from a box posing as another, for no command waiting, or
        too late is dropped with a count and a log line; nothing stored changes.
        """
        try:
            response, cycles = parse_data_response(frames)
        except ProtocolError as err:
            self.counts["malformed_responses"] += 1
            logger.warning("dropped a malformed response from box %s: %s", sender, err)
            return
        if response.box_id != sender:
            self.counts["wrong_box_responses"] += 1
            logger.warning("box %s sent a response as box %s: dropped", sender, response.box_id)
            return
        outstanding = self._outstanding.get(response.seq)
        if outstanding is None or outstanding.box_id != sender:
            self.counts["unexpected_responses"] += 1
            logger.info("box %s answered seq %d, which is not waiting: dropped", sender, response.seq)
            return
        del self._outstanding[response.seq]
        acquiring = self._acquiring.get(outstanding.event_id)
        if acquiring is None or sender not in acquiring.waiting:  # the box ran out of time
            self.counts["late_responses"] += 1
            logger.info(
                "box %s answered event %d after its time ran out: dropped", sender, outstanding.event_id
            )
            return
        if isinstance(response.body, ErrorResponse):
            self.counts["error_responses"] += 1
            logger.warning(
                "box %s could not send event %d: %s", sender, outstanding.event_id, response.body.message
            )
        elif isinstance(response.body, DataHeader):
            acquiring.parts.setdefault(sender, {})[outstanding.part] = cycles
        acquiring.waiting[sender] -= 1
        if acquiring.waiting[sender] > 0:
            return
        del acquiring.waiting[sender]
        now_ms = self._clock_ms()
        if self._settle(acquiring, sender, now_ms):
            self.latencies_ms = [*self.latencies_ms[1 - _LATENCIES_KEPT :], now_ms - outstanding.sent_ms]

    def flush(self) -> list[int]:
        """Store the answers taken since the last flush, each event's in one transaction; the ids
        of the events completed (every asked box answered or ran out of time), to announce."""
        completed = []
        for acquiring in list(self._acquiring.values()):
            if (acquiring.arrived or not acquiring.waiting) and self._store_arrived(acquiring):
                completed.append(acquiring.event.event_id)
        return completed

    def expire(self) -> list[int]:
        """Give up on the boxes that ran out of time, then `flush`: the ids of the events completed."""
        now_ms = self._clock_ms()
        for acquiring in self._acquiring.values():
            if acquiring.waiting and now_ms >= acquiring.deadline_ms:
                missing = sorted(acquiring.waiting)
                self.counts["boxes_timed_out"] += len(missing)
                logger.warning("event %d: boxes %s did not answer in time", acquiring.event.event_id, missing)
                acquiring.waiting.clear()
                # A box that sent part of its window keeps that part: it is what the box had.
                for box_id in missing:
                    if self._settle(acquiring, box_id, now_ms):
                        self.counts["partial_answers"] += 1
        return self.flush()

    def _store_arrived(self, acquiring: _Acquiring) -> bool:
        """Store an event's arrived answers, completing it if no box is waiting; whether to announce it.

        An event that cannot be marked complete stays, to be tried again at the next flush; one
        gone from the store (deleted meanwhile) is given up.
        """
        event_id = acquiring.event.event_id
        answers, acquiring.arrived = acquiring.arrived, []
        finished = not acquiring.waiting
        began_ms = self._clock_ms()
        announce = finished
        try:
            self._store.events.record_box_answers(
                event_id, answers, self._store.files, completed_ms=began_ms if finished else None
            )
            self.counts["box_events"] += len(answers)
        except NotFound:
            self._give_up(event_id, answers)
            finished, announce = True, False
        except OpqError:
            # Nothing of the batch was written: store the answers one by one, so that one bad
            # answer (or a box already recorded) costs only itself.
            self.counts["batch_failures"] += 1
            logger.exception("event %d: could not store %d answers at once", event_id, len(answers))
            self._store_one_by_one(event_id, answers)
            if finished:
                try:
                    self._store.events.complete(event_id, self._clock_ms())
                except NotFound:
                    self._give_up(event_id, [])
                    announce = False
                except OpqError:
                    self.counts["completion_failures"] += 1
                    logger.exception("event %d: could not mark it complete; trying again", event_id)
                    return False
        if answers:
            self.store_ms = [*self.store_ms[1 - _LATENCIES_KEPT :], self._clock_ms() - began_ms]
        if not finished:
            return False
        del self._acquiring[event_id]
        for seq in [s for s, o in self._outstanding.items() if o.event_id == event_id]:
            del self._outstanding[seq]
        self.counts["events_completed" if announce else "events_vanished"] += 1
        return announce

    def _give_up(self, event_id: int, answers: list[BoxAnswer]) -> None:
        self.counts["storage_failures"] += len(answers)
        logger.error(
            "event %d is no longer in the store (deleted while acquiring?): %d answers dropped",
            event_id,
            len(answers),
        )

    def _store_one_by_one(self, event_id: int, answers: list[BoxAnswer]) -> None:
        for answer in answers:
            try:
                self._store.events.record_box_answers(event_id, [answer], self._store.files)
            except OpqError:
                self.counts["storage_failures"] += 1
                logger.exception(
                    "event %d: could not store the data of box %s", event_id, answer.box_event.box_id
                )
            else:
                self.counts["box_events"] += 1

    def _settle(self, acquiring: _Acquiring, box_id: str, received_ms: int) -> bool:
        """Queue a box's answer, made of the parts of its window that came; whether any did."""
        parts = acquiring.parts.pop(box_id, None)
        if parts is None:
            return False
        acquiring.arrived.append(self._answer(acquiring, box_id, _joined(parts), received_ms))
        return True

    def _answer(
        self, acquiring: _Acquiring, box_id: str, cycles: list[RawCycle], received_ms: int
    ) -> BoxAnswer:
        """A box's data as its box event and its waveform file (int16 little endian, as sent)."""
        event = acquiring.event
        filename = f"event_{event.event_id}_{box_id}"
        box = acquiring.boxes[box_id]
        timestamps = [cycle.timestamp_ms for cycle in cycles]
        first_ms = timestamps[0] if timestamps else event.target_event_start_timestamp_ms
        data = b"".join(np.ascontiguousarray(cycle.counts, dtype="<i2").tobytes() for cycle in cycles)
        return BoxAnswer(
            BoxEvent(
                event_id=event.event_id,
                box_id=box_id,
                event_start_timestamp_ms=first_ms,
                event_end_timestamp_ms=timestamps[-1] if timestamps else first_ms,
                window_timestamps_ms=tuple(timestamps[::CYCLES_PER_WINDOW]),
                location=box.location,
                data_fs_filename=filename,
            ),
            WholeFile(
                filename,
                data,
                event_id=event.event_id,
                box_id=box_id,
                metadata={
                    "format": "int16le",
                    "sample_rate_hz": 12_000,
                    "calibration_constant": box.calibration_constant,
                    "cycles": len(cycles),
                    "first_cycle_timestamp_ms": timestamps[0] if timestamps else None,
                },
            ),
            received_ms,
        )

    def _registered(self, box_id: str) -> Box | None:
        try:
            return self._store.boxes.get(box_id)
        except OpqError:
            return None


def _window_parts(start_ms: int, end_ms: int, now_ms: int) -> list[GetData]:
    """The requests for a window: what was sampled by now (less a margin), then the rest; or one."""
    split_ms = now_ms - SAMPLED_MARGIN_MS
    if not start_ms < split_ms < end_ms:
        return [GetData(start_ms=start_ms, end_ms=end_ms, wait=True)]
    # Both wait: a box whose clock lags still sends the whole of the first part, never a gap.
    return [
        GetData(start_ms=start_ms, end_ms=split_ms, wait=True),
        GetData(start_ms=split_ms, end_ms=end_ms, wait=True),
    ]


def _joined(parts: dict[int, list[RawCycle]]) -> list[RawCycle]:
    """The cycles of a box's parts in order, each once: the cycle spanning the split is in both."""
    cycles: list[RawCycle] = []
    for part in sorted(parts):
        for cycle in parts[part]:
            if not cycles or cycle.timestamp_ms > cycles[-1].timestamp_ms:
                cycles.append(cycle)
    return cycles
