"""The data lifecycle ("use it or lose it"): what an incident references lives as long as it does."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from opq.store import Store
from opq.store.incidents import TrendsKept
from opq.store.models import Incident

logger = logging.getLogger(__name__)

TREND_MARGIN_MS: Final = 120_000
"""Trends kept with an incident are stamped within this of it [ms]: a trend is stamped at the end
of the minute it rolls up, so this spans the minute before the incident, its own, and the next."""


def incident_expire_at(store: Store, incident: Incident) -> int | None:
    """When an incident expires [ms since epoch]; None if incidents never do."""
    lifetime_s = store.retention.incidents_s
    return None if lifetime_s is None else incident.end_timestamp_ms + lifetime_s * 1000


def keep_referenced(store: Store, incidents: Iterable[Incident]) -> None:
    """Make each incident's event and the box's trends around it live at least as long as it does.

    Every level expires by its own lifetime (`Settings.retention`: measurements, trends, events,
    incidents; None keeps a level for ever). When incidents are stored, what they reference is
    promoted to live at least as long as they do, as the original's LahaGcPlugin did (opq-original
    §5.5.13):

    - the event the incident came from, with its box events and waveform files
      (`Events.keep_until`);
    - the box's trends of the minutes around the incident, `TREND_MARGIN_MS` either side
      (`Trends.keep_until`);
    - the trimmed waveform is the incident's own file and goes with the incident;
    - measurements are not promoted: the incident holds copies of the ones around it, and PostgreSQL
      drops whole daily partitions of measurements, which a few promoted rows would keep alive.

    `collect_garbage` is the GC: expired incidents go with their waveform files, then `Store.prune`
    deletes every other expired record. (`lifetimes_kept` gives the same as data, for
    `Incidents.add_batch` to write with the incidents.)
    """
    trends, events = lifetimes_kept(store, incidents)
    for kept in trends:
        store.trends.keep_until(kept.box_id, kept.start_ms, kept.end_ms, kept.expire_at)
    for event_id, expire_at in events.items():
        store.events.keep_until(event_id, expire_at)


def lifetimes_kept(
    store: Store, incidents: Iterable[Incident]
) -> tuple[list[TrendsKept], dict[int, int | None]]:
    """What `keep_referenced` lengthens for these incidents: trends by box and span, events by id."""
    trends: list[TrendsKept] = []
    events: dict[int, int | None] = {}
    for incident in incidents:
        expire_at = incident_expire_at(store, incident)
        if incident.event_id is not None:
            # One update per event: the latest expiry of its incidents, None (never) above all.
            known = events.get(incident.event_id, -1)
            events[incident.event_id] = None if expire_at is None or known is None else max(known, expire_at)
        trends.append(
            TrendsKept(
                incident.box_id,
                incident.start_timestamp_ms - TREND_MARGIN_MS,
                incident.end_timestamp_ms + TREND_MARGIN_MS,
                expire_at,
            )
        )
    return trends, events


def collect_garbage(store: Store, now_ms: int) -> dict[str, int]:
    """Delete whatever expired by now_ms; how much was deleted per collection."""
    # Store.prune deletes expired incident rows but not their waveform files: take them first.
    incidents = store.incidents.delete_expired(now_ms)
    deleted = store.prune(now_ms)
    deleted["incidents"] = deleted.get("incidents", 0) + incidents
    logger.info("garbage collected: %s", deleted)
    return deleted
