"""Local or grid-wide: linking the incidents of one event that several boxes saw at the same time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from opq.store.models import Incident

Scope = Literal["local", "location", "region", "grid", "unknown"]

SAME_TIME_TOLERANCE_MS: Final = 34
"""Two cycles [ms]: more than twice the boxes' NTP clock error (8 ± 5 ms, opq-original §12.1)."""

FAMILIES: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        (
            "VOLTAGE_SAG",
            "VOLTAGE_SWELL",
            "VOLTAGE_INTERRUPTION",
            "UNDERVOLTAGE",
            "OVERVOLTAGE",
            "ITIC_PROHIBITED",
            "ITIC_NO_DAMAGE",
            "SEMI_F47_VIOLATION",
        ),
        "voltage",
    ),
    **dict.fromkeys(("FREQUENCY_SAG", "FREQUENCY_SWELL", "FREQUENCY_INTERRUPTION"), "frequency"),
    "EXCESSIVE_THD": "thd",
    **dict.fromkeys(
        (
            "IMPULSIVE_TRANSIENT",
            "OSCILLATORY_TRANSIENT",
            "ARCING_TRANSIENT",
            "PERIODIC_NOTCHING",
            "MULTIPLE_ZERO_CROSSING_TRANSIENT",
        ),
        "transient",
    ),
    "OUTAGE": "outage",
}
"""Classification → family: incidents of one family at several boxes can be one disturbance."""


@dataclass(frozen=True)
class Place:
    """Where a box was when it captured the event: its location and every region holding it."""

    location: str | None
    regions: frozenset[str] = frozenset()


def families(incident: Incident) -> frozenset[str]:
    """The families of an incident's classifications (its measurement type if none is known)."""
    found = frozenset(FAMILIES[c] for c in incident.classifications if c in FAMILIES)
    return found or frozenset({incident.measurement_type.lower()})


def link_incidents(
    incidents: Sequence[Incident],
    windows_ms: Mapping[str, tuple[float, float]],
    places: Mapping[str, Place],
) -> list[Incident]:
    """The incidents, in the same order, with scope metadata added.

    `windows_ms` holds [first sample, last sample] times [ms] of the boxes whose waveforms were
    analysed without a plugin failing; `places` where each box was. The rule, applied after every
    plugin ran on every box of an event:

    1. Two incidents are *the same disturbance* when they are at different boxes, share a family
       (`FAMILIES`: RMS voltage variations with ITIC and SEMI F47, frequency, THD, transients, outage;
       an incident with no known classification falls back to its measurement type) and their windows
       [start, end] overlap, allowing `SAME_TIME_TOLERANCE_MS` for the boxes' clocks. A group is a
       connected set of such pairs; incidents at one box that no other box saw are a group of one.
    2. Each incident's metadata gets `boxes` (the boxes of its group), `related_incidents` (the other
       incidents of its group, which can include other plugins' incidents at its own box),
       `captured_boxes` (its group's boxes and every other box whose waveform covers the incident's
       window and was analysed without a plugin failing: the boxes that could have seen it) and
       `scope`:
       - `local`: only its box saw it, although at least one other captured box could have;
       - `unknown`: only its box saw it and no other box could have (a one-box event, or the other
         boxes' data is missing, does not cover the time, or a plugin failed on it), or a box that saw
         it has no known location;
       - `location`: several boxes saw it, all at one location;
       - `region`: several boxes at different locations saw it, and one region holds all of them
         (regions nest: a region holds the locations of the regions it includes);
       - `grid`: several boxes saw it and no region holds all of their locations.
       and `shared_places`: the location (scope `location`) or the regions holding every box (scope
       `region`), else [].
    """
    groups = _groups(incidents)
    linked = []
    for index, incident in enumerate(incidents):
        group = groups[index]
        boxes = sorted({incidents[j].box_id for j in group})
        window = (float(incident.start_timestamp_ms), float(incident.end_timestamp_ms))
        could_see = {box for box, span in windows_ms.items() if _overlap(span, window)}
        scope, shared = _scope(incident.box_id, boxes, could_see, places)
        metadata = {
            **incident.metadata,
            "scope": scope,
            "related_incidents": sorted(incidents[j].incident_id for j in group if j != index),
            "boxes": boxes,
            "captured_boxes": sorted(could_see | set(boxes)),
            "shared_places": shared,
        }
        linked.append(dataclasses.replace(incident, metadata=metadata))
    return linked


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] + SAME_TIME_TOLERANCE_MS and b[0] <= a[1] + SAME_TIME_TOLERANCE_MS


def _groups(incidents: Sequence[Incident]) -> list[frozenset[int]]:
    """For each incident, the indexes of its group (union-find over same-disturbance pairs)."""
    parent = list(range(len(incidents)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    kinds = [families(incident) for incident in incidents]
    spans = [(float(i.start_timestamp_ms), float(i.end_timestamp_ms)) for i in incidents]
    for a in range(len(incidents)):
        for b in range(a + 1, len(incidents)):
            if (
                incidents[a].box_id != incidents[b].box_id
                and kinds[a] & kinds[b]
                and _overlap(spans[a], spans[b])
            ):
                parent[root(a)] = root(b)
    members: dict[int, set[int]] = {}
    for i in range(len(incidents)):
        members.setdefault(root(i), set()).add(i)
    return [frozenset(members[root(i)]) for i in range(len(incidents))]


def _scope(
    box_id: str, boxes: Sequence[str], could_see: set[str], places: Mapping[str, Place]
) -> tuple[Scope, list[str]]:
    if len(boxes) == 1:
        return ("local" if could_see - {box_id} else "unknown"), []
    seen_at = [places.get(box, Place(None)) for box in boxes]
    if any(place.location is None for place in seen_at):
        return "unknown", []
    locations = {place.location for place in seen_at if place.location is not None}
    if len(locations) == 1:
        return "location", sorted(locations)
    common = frozenset.intersection(*(place.regions for place in seen_at))
    if common:
        return "region", sorted(common)
    return "grid", []
