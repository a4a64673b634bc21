"""Analysing one event: every plugin on every box's waveform, findings into linked, stored incidents."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from opq.errors import InvalidValue, NotFound, StorageError
from opq.mauka.continuation import earlier_pieces, joined
from opq.mauka.frequency_incidents import stream_incident_for
from opq.mauka.incidents import BoxCapture, check_finding, draft_incident, incident_file, read_capture
from opq.mauka.lifecycle import lifetimes_kept
from opq.mauka.plugin import Finding, Plugin
from opq.mauka.scope import Place, link_incidents
from opq.store import Store
from opq.store.files import WholeFile
from opq.store.ids import allocate_ids
from opq.store.incidents import IncidentBatch
from opq.store.models import Incident

logger = logging.getLogger(__name__)

HOST_KEY: Final = "_host"
"""Key of the analysis record holding what is not one plugin's: boxes analysed or skipped, totals."""
MAX_ERRORS_KEPT: Final = 10
"""Error messages kept per plugin in one analysis record; the count is always complete."""


@dataclass
class PluginCounter:
    """What one plugin did over the life of a process."""

    waveforms: int = 0
    findings: int = 0
    incidents: int = 0
    failures: int = 0
    last_failure: str = ""


class PluginCounters:
    """Per-plugin counters, written by the analysis and read by health and stats from other threads."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        self._counters = {name: PluginCounter() for name in names}

    def add(self, name: str, *, waveforms: int = 0, findings: int = 0, incidents: int = 0) -> None:
        """Count work a plugin did."""
        with self._lock:
            counter = self._counters.setdefault(name, PluginCounter())
            counter.waveforms += waveforms
            counter.findings += findings
            counter.incidents += incidents

    def fail(self, name: str, message: str) -> None:
        """Count a failure of a plugin (an exception, or a finding that could not be stored)."""
        with self._lock:
            counter = self._counters.setdefault(name, PluginCounter())
            counter.failures += 1
            counter.last_failure = message

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each plugin's counters as plain data."""
        with self._lock:
            return {name: asdict(counter) for name, counter in sorted(self._counters.items())}


@dataclass(frozen=True)
class AnalysisResult:
    """What analysing one event did: the incidents stored and replaced, and the analysis record."""

    event_id: int
    incident_ids: tuple[int, ...]
    replaced: int
    failures: int
    """Plugin failures during this analysis."""
    record: dict[str, Any]


def analyze_event(
    store: Store,
    event_id: int,
    plugins: Sequence[Plugin],
    now_ms: int,
    *,
    counters: PluginCounters | None = None,
) -> AnalysisResult:
    """Run every plugin on every box of an event, store the incidents, and record the analysis.

    Each box's waveform is read once and its features shared by the plugins. A plugin that raises
    (or returns findings the store would refuse) is logged, counted and noted in the analysis
    record, and the others' incidents are still stored. Incidents these plugins produced for the
    event before (a re-analysis, or an attempt cut short) are replaced, so analysing twice never
    doubles them. A box whose waveform is missing or cannot be calibrated is skipped and noted.
    StorageError (the database is unavailable) propagates: the event stays unanalysed for later.
    The analysis record (`Events.record_analysis`) maps each plugin's name to its counts and
    errors, and `_host` to the boxes analysed and skipped and the totals; plugins that did not run
    keep their entries from an earlier analysis. A frequency finding that is the same variation as
    an incident the live measurements already gave (`opq.mauka.frequency_incidents`) is dropped:
    one variation, one incident.
    """
    started = time.perf_counter()
    counters = counters if counters is not None else PluginCounters()
    box_events = store.events.box_events(event_id)
    record: dict[str, dict[str, Any]] = {p.name: _entry() for p in plugins}
    skipped: dict[str, str] = {}
    captures: list[BoxCapture] = []
    for box_event in box_events:
        try:
            captures.append(read_capture(store, box_event))
        except (NotFound, InvalidValue) as err:
            skipped[box_event.box_id] = str(err)
            logger.warning("event %d: skipping box %s: %s", event_id, box_event.box_id, err)
        except StorageError as err:
            # A damaged file fails the same way as a lost database; only the first is the box's.
            if not _store_reachable(store, event_id):
                raise
            skipped[box_event.box_id] = str(err)
            logger.warning("event %d: skipping box %s: %s", event_id, box_event.box_id, err)

    joined_pieces = _join_earlier_pieces(store, event_id, captures)
    captures = [capture for capture, _ in joined_pieces]

    accepted: list[tuple[Finding, BoxCapture, str]] = []
    clean_windows: dict[str, tuple[float, float]] = {}
    measured_already: list[int] = []
    for capture in captures:
        clean = True
        for plugin in plugins:
            findings = _run(plugin, capture, record[plugin.name], counters)
            if findings is None:
                clean = False
                continue
            for finding in findings:
                try:
                    check_finding(finding, plugin.name, capture)
                except InvalidValue as err:
                    _failed(record[plugin.name], counters, plugin.name, str(err))
                    continue
                # One variation, one incident: the measurements reported this one first.
                if finding.measurement_type == "FREQUENCY":
                    stream_id = stream_incident_for(store, finding)
                    if stream_id is not None:
                        measured_already.append(stream_id)
                        continue
                accepted.append((finding, capture, plugin.name))
        if clean:
            clean_windows[capture.box_event.box_id] = capture.window_ms

    # One id allocation for the whole event, not one write transaction per incident.
    ids = allocate_ids(store.engine, "incident", len(accepted)) if accepted else range(0)
    drafts = [
        (draft_incident(store, finding, name, capture, incident_id), capture, name)
        for (finding, capture, name), incident_id in zip(accepted, ids, strict=True)
    ]

    places = _places(store, captures)
    linked = link_incidents([draft for draft, _, _ in drafts], clean_windows, places)
    names = [p.name for p in plugins]
    replaced = store.incidents.delete_for_event(event_id, produced_by=names)
    # What the earlier pieces found at a box is found again, whole, in its joined waveform.
    for capture, earlier_ids in joined_pieces:
        for earlier_id in earlier_ids:
            replaced += store.incidents.delete_for_event(
                earlier_id, produced_by=names, box_id=capture.box_event.box_id
            )
    stored: list[Incident] = []
    files: list[WholeFile] = []
    producers: list[str] = []
    for incident, (_, capture, name) in zip(linked, drafts, strict=True):
        try:
            store.incidents.check(incident)
            file = incident_file(incident, capture)
        except InvalidValue as err:
            _failed(record[name], counters, name, f"incident {incident.incident_id}: {err}")
            continue
        stored.append(incident)
        files += [] if file is None else [file]
        producers.append(name)
    # The incidents, their waveforms and the lifetimes they extend: one transaction, all or nothing.
    trends_kept, events_kept = lifetimes_kept(store, stored)
    store.incidents.add_batch(IncidentBatch(stored, files, trends_kept, events_kept), store.files)
    for name in producers:
        record[name]["incidents"] += 1
        counters.add(name, incidents=1)

    previous = store.events.analysis(event_id)
    merged: dict[str, Any] = {} if previous is None else dict(previous[1])
    merged.update(record)
    merged[HOST_KEY] = {
        "boxes": sorted(c.box_event.box_id for c in captures),
        "skipped_boxes": skipped,
        "incidents": len(stored),
        "replaced_incidents": replaced,
        "frequency_found_in_measurements": measured_already,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    store.events.record_analysis(event_id, now_ms, merged)
    logger.info(
        "event %d analysed: %d incidents from %d boxes (%d replaced, %d skipped boxes)",
        event_id,
        len(stored),
        len(captures),
        replaced,
        len(skipped),
    )
    failures = sum(entry["failures"] for entry in record.values())
    return AnalysisResult(event_id, tuple(i.incident_id for i in stored), replaced, failures, merged)


def reanalyze(
    store: Store,
    since_ms: int,
    until_ms: int,
    plugins: Sequence[Plugin],
    now_ms: int,
    *,
    counters: PluginCounters | None = None,
) -> list[AnalysisResult]:
    """Analyse again every completed event overlapping [since_ms, until_ms], oldest id first.

    The incidents these plugins produced for those events are replaced; other plugins' stay.
    """
    return [
        analyze_event(store, event_id, plugins, now_ms, counters=counters)
        for event_id in completed_events(store, since_ms, until_ms)
    ]


def completed_events(store: Store, since_ms: int, until_ms: int) -> list[int]:
    """Ids of the completed events whose target window overlaps [since_ms, until_ms], ascending."""
    found: list[int] = []
    before: int | None = None
    while True:
        page = store.events.list(start_ms=since_ms, end_ms=until_ms, limit=500, before_id=before)
        found.extend(e.event_id for e in page if e.completed_ms is not None)
        if len(page) < 500:
            return sorted(found)
        before = page[-1].event_id


def _entry() -> dict[str, Any]:
    return {"waveforms": 0, "findings": 0, "incidents": 0, "failures": 0, "errors": [], "duration_ms": 0.0}


def _run(
    plugin: Plugin, capture: BoxCapture, entry: dict[str, Any], counters: PluginCounters
) -> list[Finding] | None:
    """The plugin's findings on one waveform, or None if it failed (logged and counted)."""
    box_id = capture.box_event.box_id
    started = time.perf_counter()
    try:
        findings = list(plugin.analyze(capture.waveform))
        strays = [f for f in findings if not isinstance(f, Finding)]
        if strays:
            raise TypeError(f"analyze returned a {type(strays[0]).__name__}, not a Finding")
    except Exception as err:  # a plugin is third-party code: whatever it raises, the others run
        logger.exception(
            "plugin %s failed on event %s, box %s", plugin.name, capture.box_event.event_id, box_id
        )
        _failed(entry, counters, plugin.name, f"box {box_id}: {err!r}")
        return None
    finally:
        entry["duration_ms"] = round(entry["duration_ms"] + (time.perf_counter() - started) * 1000, 3)
    entry["waveforms"] += 1
    entry["findings"] += len(findings)
    counters.add(plugin.name, waveforms=1, findings=len(findings))
    return findings


def _failed(entry: dict[str, Any], counters: PluginCounters, name: str, message: str) -> None:
    entry["failures"] += 1
    if len(entry["errors"]) < MAX_ERRORS_KEPT:
        entry["errors"].append(message)
    counters.fail(name, message)


def _places(store: Store, captures: Sequence[BoxCapture]) -> dict[str, Place]:
    """Where each box was when it captured: its box event's location and the regions holding it."""
    regions: dict[str, frozenset[str]] = {}
    places = {}
    for capture in captures:
        location = capture.box_event.location
        if location is not None and location not in regions:
            regions[location] = frozenset(store.regions.regions_of(location))
        places[capture.box_event.box_id] = Place(
            location, frozenset() if location is None else regions[location]
        )
    return places


def _join_earlier_pieces(
    store: Store, event_id: int, captures: list[BoxCapture]
) -> list[tuple[BoxCapture, list[int]]]:
    """Each capture joined to the same box's captures in the pieces this event continues, and their ids."""
    event = store.events.get(event_id)
    pieces = earlier_pieces(store, event) if event.continues_event_id is not None else []
    if not pieces:
        return [(capture, []) for capture in captures]
    result = []
    for capture in captures:
        box_id = capture.box_event.box_id
        earlier: list[BoxCapture] = []
        for piece in pieces:
            try:
                earlier.append(read_capture(store, store.events.box_event(piece.event_id, box_id)))
            except (NotFound, InvalidValue):
                earlier.clear()  # a piece without this box's data breaks its run
        whole = joined([*earlier, capture])
        joined_ids = [
            c.box_event.event_id
            for c in earlier
            if c.box_event.event_start_timestamp_ms >= (whole.box_event.event_start_timestamp_ms)
        ]
        result.append((whole, joined_ids))
    return result


def _store_reachable(store: Store, event_id: int) -> bool:
    try:
        store.events.get(event_id)
    except StorageError:
        return False
    return True
