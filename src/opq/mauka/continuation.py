"""Long anomalies captured in pieces: a piece is analysed joined to the pieces before it.

Makai captures an anomaly longer than `max_piece_ms` as consecutive events, each continuing the
one before (`Event.continues_event_id`), so the start never falls out of the boxes' buffers. Each
piece alone would make a one-minute undervoltage look like several temporary sags. So when a piece
arrives, each box's waveform is joined to its waveforms in the earlier pieces (up to
`MAX_CHAIN_MS` back) and the plugins see the anomaly whole; the incidents the earlier pieces
produced are then replaced by those of the whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from typing import Final

import numpy as np

from opq.domain import SAMPLES_PER_CYCLE
from opq.errors import InvalidValue, NotFound
from opq.mauka.incidents import BoxCapture
from opq.mauka.plugin import Waveform
from opq.store import Store
from opq.store.models import Event

logger = logging.getLogger(__name__)

MAX_CHAIN_MS: Final = 300_000
"""How far back a piece is joined to earlier ones [ms]: well past the 1 min that makes a variation
sustained, and a bound on the work a piece of a very long anomaly costs."""
CYCLE_MS: Final = 1000 / 60


def earlier_pieces(store: Store, event: Event) -> list[Event]:
    """The completed pieces `event` continues, oldest first, reaching back at most MAX_CHAIN_MS."""
    chain: list[Event] = []
    earliest_ms = event.target_event_end_timestamp_ms - MAX_CHAIN_MS
    previous_id = event.continues_event_id
    while previous_id is not None and len(chain) < 1_000:
        try:
            previous = store.events.get(previous_id)
        except NotFound:
            break
        if previous.completed_ms is None or previous.target_event_start_timestamp_ms < earliest_ms:
            break
        chain.append(previous)
        previous_id = previous.continues_event_id
    return chain[::-1]


def joined(pieces: Sequence[BoxCapture]) -> BoxCapture:
    """One box's consecutive captures (oldest first) as one, from the last contiguous run.

    Consecutive pieces share their boundary cycle (a box answers for [start, end] inclusive), which
    is kept once; a piece that does not follow on within a cycle (the box was silent) cuts the
    chain there, and only the pieces after the cut are joined.
    """
    run = [pieces[-1]]
    for earlier in reversed(pieces[:-1]):
        later = run[0]
        gap_ms = later.box_event.event_start_timestamp_ms - earlier.box_event.event_end_timestamp_ms
        if not -CYCLE_MS * 1.5 < gap_ms < CYCLE_MS * 1.5 or len(earlier.counts) % SAMPLES_PER_CYCLE:
            break
        run.insert(0, earlier)
    if len(run) == 1:
        return run[0]
    parts = [run[0].counts]
    for earlier, later in itertools.pairwise(run):
        overlap_ms = earlier.box_event.event_end_timestamp_ms - later.box_event.event_start_timestamp_ms
        shared = round(overlap_ms / CYCLE_MS) + 1 if overlap_ms >= -CYCLE_MS / 2 else 0
        parts.append(later.counts[shared * SAMPLES_PER_CYCLE :])
    counts = np.concatenate(parts)
    last = run[-1]
    first_box_event = run[0].box_event
    box_event = dataclasses.replace(
        last.box_event,
        event_start_timestamp_ms=first_box_event.event_start_timestamp_ms,
        window_timestamps_ms=tuple(t for c in run for t in c.box_event.window_timestamps_ms),
    )
    if len({c.calibration_constant for c in run}) != 1:
        raise InvalidValue(
            f"event {last.box_event.event_id}: box {last.box_event.box_id} changed calibration"
        )
    waveform = Waveform(
        box_id=box_event.box_id,
        start_ms=float(box_event.event_start_timestamp_ms),
        samples_v=counts.astype(np.float64) / last.calibration_constant,
        event_id=box_event.event_id,
        location=box_event.location,
    )
    logger.debug("box %s: joined %d pieces up to event %d", box_event.box_id, len(run), box_event.event_id)
    return BoxCapture(box_event, counts, last.calibration_constant, waveform)
