"""The capture planner: which boxes to ask for which window when boxes trigger, and their neighbourhoods."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from opq.makai.triggering import Limits, abnormal_metrics, abnormal_rows
from opq.protocol.columns import MeasurementColumns
from opq.protocol.internal import CaptureRequest
from opq.protocol.messages import BoxMeasurement
from opq.store.models import Box, Region

logger = logging.getLogger(__name__)

DEFAULT_SPAN_MS = 167
"""What a measurement spans when there is no earlier one to say so: 10 cycles at 60 Hz [ms]."""
REASON_BOXES = 3
"""Boxes whose reasons a request's one-line reason spells out; the rest are counted."""


@dataclass
class _Group:
    """The open anomaly: boxes abnormal together, and the piece of the window not yet requested."""

    start_ms: int
    piece: int = 0
    abnormal: dict[str, None] = field(default_factory=dict)
    # The boxes abnormal at some time during the current piece, in the order they turned abnormal.
    members: dict[str, None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)
    end_ms: int | None = None


class CapturePlanner:
    """Turns the measurements of all boxes into capture requests; pure, time comes from the measurements.

    A box is abnormal while `abnormal_metrics` finds anything (its limits are asked for with each
    measurement, so changed thresholds apply at once). Its anomaly's window runs from its last
    nominal measurement before it (the previous measurement's timestamp, or timestamp − 167 ms when
    there is none or it is more than `silence_ms` older) minus `pre_ms`, to its first nominal
    measurement after it plus `post_ms`. There is one open group at a time: a box turning abnormal
    while it is open joins it, and when every box of the group is nominal again (or silent, see
    `tick`) one request for the union of their windows is returned at once. The request's end lies
    `post_ms` after the measurement that closed it: the acquirer waits for it (`GetData.wait`).

    A group whose window, from its start to its newest abnormal measurement, grows past
    `max_piece_ms` is requested in pieces of exactly `max_piece_ms` as it goes, so the start is not
    lost from the boxes' buffers; the pieces tile [start, end) and the last one ends at the return to
    nominal + `post_ms` (so it may be up to that much longer). Each piece asks the boxes abnormal
    during it. A box joining after a piece was cut has its window clamped to the current piece.
    """

    def __init__(
        self,
        *,
        limits_for: Callable[[str], Limits],
        neighbours_of: Callable[[str], Sequence[str]],
        pre_ms: int,
        post_ms: int,
        max_piece_ms: int,
        max_boxes: int,
        silence_ms: int = 2_000,
    ) -> None:
        if min(pre_ms, post_ms) < 0 or max_piece_ms <= 0 or max_boxes <= 0 or silence_ms <= 0:
            raise ValueError(
                f"bad planner settings: pre_ms={pre_ms}, post_ms={post_ms}, max_piece_ms={max_piece_ms}, "
                f"max_boxes={max_boxes}, silence_ms={silence_ms}"
            )
        self._limits_for = limits_for
        self._neighbours_of = neighbours_of
        self.pre_ms = pre_ms
        self.post_ms = post_ms
        self.max_piece_ms = max_piece_ms
        self.max_boxes = max_boxes
        self.silence_ms = silence_ms
        self._last_ms: dict[str, int] = {}
        self._group: _Group | None = None
        # Health counters: measurements taken, ignored (not after their box's previous one) and
        # abnormal; times a box turned abnormal; abnormal boxes closed by `tick`; requests returned.
        self.measurements = 0
        self.out_of_order = 0
        self.abnormal_measurements = 0
        self.triggers = 0
        self.silent_boxes = 0
        self.requests = 0

    @property
    def abnormal_boxes(self) -> tuple[str, ...]:
        """The boxes of the open group that are abnormal now."""
        return tuple(self._group.abnormal) if self._group else ()

    def observe_batch(self, columns: MeasurementColumns) -> list[CaptureRequest]:
        """Take measurements in arrival order; return the requests they complete, in order.

        Rows are tested against their limits all at once; only a batch where some box is or turns
        abnormal is then taken a measurement at a time.
        """
        box_ids = columns.box_ids
        abnormal = abnormal_rows(columns, [self._limits_for(box_id) for box_id in box_ids])
        timestamps = columns.timestamps_ms.tolist()
        if self._group is None and not abnormal.any():
            for box_id, timestamp_ms in zip(box_ids, timestamps, strict=True):
                self._note(box_id, timestamp_ms)
            return []
        requests: list[CaptureRequest] = []
        for row in range(len(box_ids)):
            group = self._group
            if abnormal[row] or (group is not None and box_ids[row] in group.abnormal):
                requests += self.observe(columns.measurement(row))
            else:
                self._note(box_ids[row], timestamps[row])
        return requests

    def _note(self, box_id: str, timestamp_ms: int) -> bool:
        """Record a measurement's time; False (and counted) if it is not after the box's previous one."""
        previous_ms = self._last_ms.get(box_id)
        if previous_ms is not None and timestamp_ms <= previous_ms:
            self.out_of_order += 1
            logger.debug("box %s: measurement at %d not after %d, ignored", box_id, timestamp_ms, previous_ms)
            return False
        self.measurements += 1
        self._last_ms[box_id] = timestamp_ms
        return True

    def observe(self, m: BoxMeasurement) -> list[CaptureRequest]:
        """Take one measurement; return the requests (pieces, or the group's last one) it completes."""
        previous_ms = self._last_ms.get(m.box_id)
        if not self._note(m.box_id, m.timestamp_ms):
            return []
        reasons = abnormal_metrics(m, self._limits_for(m.box_id))
        group = self._group
        if reasons:
            self.abnormal_measurements += 1
            return self._abnormal(m, previous_ms, ", ".join(reasons))
        if group is None or m.box_id not in group.abnormal:
            return []
        del group.abnormal[m.box_id]
        return self._returned(group, m.timestamp_ms + self.post_ms)

    def tick(self, now_ms: int) -> list[CaptureRequest]:
        """Close the anomalies of abnormal boxes that sent nothing for `silence_ms` before `now_ms`."""
        group = self._group
        if group is None:
            return []
        requests: list[CaptureRequest] = []
        for box_id in list(group.abnormal):
            last_ms = self._last_ms[box_id]
            if now_ms - last_ms >= self.silence_ms:
                logger.info("box %s silent since %d in an anomaly", box_id, last_ms)
                self.silent_boxes += 1
                del group.abnormal[box_id]
                group.silent.append(box_id)
                requests.extend(self._returned(group, last_ms + self.post_ms))
        return requests

    def _abnormal(self, m: BoxMeasurement, previous_ms: int | None, reason: str) -> list[CaptureRequest]:
        if previous_ms is None or m.timestamp_ms - previous_ms > self.silence_ms:
            previous_ms = m.timestamp_ms - DEFAULT_SPAN_MS
        start_ms = previous_ms - self.pre_ms
        group = self._group
        if group is None:
            group = self._group = _Group(start_ms=start_ms)
        elif group.piece == 0:
            group.start_ms = min(group.start_ms, start_ms)
        if m.box_id not in group.abnormal:
            self.triggers += 1
            logger.info("box %s triggers at %d: %s", m.box_id, m.timestamp_ms, reason)
            group.abnormal[m.box_id] = None
            group.reasons.setdefault(m.box_id, reason)
        group.members[m.box_id] = None
        requests = []
        while m.timestamp_ms - group.start_ms > self.max_piece_ms:
            end_ms = group.start_ms + self.max_piece_ms
            requests.append(self._request(group, end_ms))
            group.start_ms = end_ms
            group.piece += 1
            group.members = dict.fromkeys(b for b in group.members if b in group.abnormal)
            group.silent = []
        return requests

    def _returned(self, group: _Group, end_ms: int) -> list[CaptureRequest]:
        """A box of `group` is nominal or silent again, its window ending at `end_ms`."""
        group.end_ms = end_ms if group.end_ms is None else max(group.end_ms, end_ms)
        if group.abnormal:
            return []
        self._group = None
        # end_ms > start_ms: the box whose measurement cut the last piece (or opened the group)
        # ends after that measurement, which lies after start_ms.
        return [self._request(group, group.end_ms)]

    def _request(self, group: _Group, end_ms: int) -> CaptureRequest:
        triggered = tuple(group.members)
        asked = dict.fromkeys(triggered)
        for box_id in triggered:
            for neighbour in self._neighbours_of(box_id):
                if len(asked) >= self.max_boxes:
                    break
                asked.setdefault(neighbour, None)
        reason = "; ".join(f"{b}: {group.reasons[b]}" for b in triggered[:REASON_BOXES])
        if len(triggered) > REASON_BOXES:
            reason += f"; and {len(triggered) - REASON_BOXES} more boxes"
        if group.silent:
            reason += "; silent: " + ", ".join(group.silent)
        self.requests += 1
        return CaptureRequest(
            box_ids=tuple(asked),
            triggered_by=triggered,
            start_ms=group.start_ms,
            end_ms=end_ms,
            reason=reason,
            piece=group.piece,
        )


def neighbourhoods(
    boxes: Sequence[Box], regions: Sequence[Region], scope: Literal["none", "location", "region"]
) -> dict[str, tuple[str, ...]]:
    """For each box, the other boxes to ask with it when it triggers.

    "none": nobody. "location": the boxes at the same location. "region": the boxes at the same
    location, then those at any location within the box's innermost regions. A region holds the
    locations it lists and those of its subregions, recursively; a region holding the box's location
    is innermost when no region nested inside it holds it too. So with oahu = {kailua-home} +
    subregion uh-manoa = {uh-post, uh-hamilton}, a box at uh-post gets the uh-manoa boxes but not
    kailua-home (a campus event does not ask the whole island), while a box at kailua-home, whose
    innermost region is oahu, gets them all. A location in no region falls back to "location".
    Boxes without a location have no neighbours and are nobody's; unplugged boxes are nobody's
    neighbours. Order follows `boxes` within each of the two tiers (same location, rest of region).
    """
    hoods: dict[str, tuple[str, ...]] = {}
    plugged = [b for b in boxes if not b.unplugged and b.location is not None]
    order = {b.box_id: n for n, b in enumerate(boxes)}
    by_slug = {r.slug: r for r in regions}
    inside = _regions_inside(by_slug)
    within = {
        slug: set(r.locations).union(*(by_slug[sub].locations for sub in inside[slug]))
        for slug, r in by_slug.items()
    }
    # Boxes by location once: looking them up per box keeps this linear in the number of boxes
    # (it runs every few seconds in ingest, with thousands of boxes).
    at: dict[str, list[str]] = {}
    for b in plugged:
        at.setdefault(str(b.location), []).append(b.box_id)
    # Every box at one location has the same neighbours but itself: worked out once a location.
    by_location: dict[str, tuple[str, ...]] = {}
    for box in boxes:
        location = box.location
        if scope == "none" or location is None:
            hoods[box.box_id] = ()
            continue
        if location not in by_location:
            by_location[location] = _around(location, scope, within, inside, at, order)
        hoods[box.box_id] = tuple(b for b in by_location[location] if b != box.box_id)
    return hoods


def _around(
    location: str,
    scope: str,
    within: Mapping[str, set[str]],
    inside: Mapping[str, set[str]],
    at: Mapping[str, list[str]],
    order: Mapping[str, int],
) -> tuple[str, ...]:
    """The boxes at `location`, then those at the other locations of its innermost regions."""
    near = {location}
    if scope == "region":
        for slug, held in within.items():
            # Regions in a cycle (which the store refuses) are not nested strictly inside each other.
            nested = (sub for sub in inside[slug] if slug not in inside[sub])
            if location in held and not any(location in within[sub] for sub in nested):
                near |= held
    rest = [b for place in near if place != location for b in at.get(place, ())]
    return (*at.get(location, ()), *_in_order(rest, order))


def _in_order(box_ids: list[str], order: Mapping[str, int]) -> list[str]:
    """Box ids in the order of the boxes given to `neighbourhoods`."""
    return sorted(box_ids, key=order.__getitem__)


def _regions_inside(by_slug: Mapping[str, Region]) -> dict[str, set[str]]:
    """Region slug → the slugs of the regions nested inside it at any depth (unknown slugs skipped)."""
    inside: dict[str, set[str]] = {}
    for slug, region in by_slug.items():
        found: set[str] = set()
        frontier = [region]
        while frontier:
            subs = {s for r in frontier for s in r.subregions if s in by_slug and s not in found}
            found |= subs
            frontier = [by_slug[s] for s in subs]
        inside[slug] = found
    return inside
