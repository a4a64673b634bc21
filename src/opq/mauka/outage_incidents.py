"""Outage incidents in the store: opened, kept running, and ended as the outage tracker decides."""

from __future__ import annotations

import logging

from opq.errors import NotFound
from opq.mauka.incidents import outage_incident, store_incident
from opq.mauka.lifecycle import keep_referenced
from opq.mauka.outage import OutageEnd, OutageTracker
from opq.store import Store

logger = logging.getLogger(__name__)


class OutageIncidents:
    """An OutageTracker whose outages are stored incidents (HEALTH, OUTAGE, metadata `open`).

    The live stream can drop messages (a busy or late subscriber), so the store is asked before an
    outage is declared (the box's newest stored measurement) and while it is open (its first
    measurement after the outage's start).
    """

    def __init__(self, store: Store, tracker: OutageTracker) -> None:
        self.store = store
        self.tracker = tracker
        self.incident_ids: dict[str, int] = {}
        """The open outage incident of each box in outage."""
        self._locations: dict[str, str | None] = {}

    def seed(self) -> None:
        """Seed each registered box with its newest stored measurement; pick up outages left open."""
        store = self.store
        for box in store.boxes.list():
            self._locations[box.box_id] = box.location
            latest = store.measurements.latest(box.box_id)
            if latest is not None:
                self.tracker.seen(box.box_id, latest.timestamp_ms)
            newest = store.incidents.list(box_id=box.box_id, classification="OUTAGE", limit=1)
            if not newest or not newest[0].metadata.get("open"):
                continue
            incident = newest[0]
            self.incident_ids[box.box_id] = incident.incident_id
            back = store.measurements.first_after(box.box_id, incident.start_timestamp_ms)
            if back is None:
                self.tracker.restore(box.box_id, incident.start_timestamp_ms)
            else:
                self.end(OutageEnd(box.box_id, back.timestamp_ms, "data"))

    def seen(self, box_id: str, timestamp_ms: int) -> None:
        """A measurement from the live stream: ends the box's outage if it is the return."""
        end = self.tracker.seen(box_id, timestamp_ms)
        if end is not None:
            self.end(end)

    def check(self, now_ms: int) -> None:
        """Start outages of boxes silent too long, end those that no longer are, extend the rest."""
        store, tracker = self.store, self.tracker
        boxes = store.boxes.list()
        self._locations = {box.box_id: box.location for box in boxes}
        unplugged = {box.box_id: box.unplugged for box in boxes}
        for box_id in tracker.silent(now_ms, unplugged):
            latest = store.measurements.latest(box_id)
            if latest is not None:
                tracker.seen(box_id, latest.timestamp_ms)
        for box_id, start_ms in list(tracker.open.items()):
            back = store.measurements.first_after(box_id, start_ms)
            if back is not None:
                self.seen(box_id, back.timestamp_ms)
        starts, ends = tracker.check(now_ms, unplugged)
        for end in ends:
            self.end(end)
        for box_id, incident_id in list(self.incident_ids.items()):
            try:
                store.incidents.set_end(incident_id, now_ms)  # an ongoing outage lasts until now
            except NotFound:
                logger.warning("the outage incident %d of box %s was deleted", incident_id, box_id)
                del self.incident_ids[box_id]
        for start in starts:
            location = self._locations.get(start.box_id)
            incident = outage_incident(store, start.box_id, start.start_ms, now_ms, location)
            store_incident(store, incident, None)
            keep_referenced(store, [incident])
            self.incident_ids[start.box_id] = incident.incident_id

    def end(self, end: OutageEnd) -> None:
        """Close the box's outage incident at end.end_ms."""
        incident_id = self.incident_ids.pop(end.box_id, None)
        if incident_id is None:
            return
        store = self.store
        try:
            store.incidents.set_end(incident_id, end.end_ms, metadata={"open": False, "ended_by": end.reason})
        except NotFound:
            logger.warning("the outage incident %d of box %s was deleted", incident_id, end.box_id)
            return
        keep_referenced(store, [store.incidents.get(incident_id)])
        logger.info("outage of box %s over at %d (%s)", end.box_id, end.end_ms, end.reason)
