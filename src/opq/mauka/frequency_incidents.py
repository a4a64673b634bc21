"""Frequency variations found in the live measurements, stored as incidents once no capture reported them.

One variation, one incident. A variation can be seen twice: by the stream tracker, from the box's
10-cycle frequency values, and by the frequency_variation plugin, from the waveform of an event that
captured it (when it left Makai's trigger band, or a voltage disturbance was captured meanwhile). The
rule, whichever comes first:

- the stream's copy waits `frequency_settle_s` after the variation ends, then is stored only if no
  FREQUENCY incident of the same side of nominal (swell; sag or interruption) at the box meets its
  span (`same_variation`): a captured variation is reported by the plugin, whose bounds are a cycle
  fine where the stream's are a 10-cycle window coarse;
- an event analysed after the stream's copy was stored (Mauka was busy, down, or re-analyses) drops
  the plugin's frequency findings that are the same variation as a stored stream incident
  (`stream_incident_for`), so the second path to arrive never adds a second incident;
- a variation still open when Mauka stops is stored, open-ended, up to its last measurement; if,
  after a restart, the same side resumes within `frequency_max_gap_s` of that end, the stored
  incident is replaced by one spanning both (the tracker carries a run across such a gap too).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from opq.config import MaukaSettings
from opq.domain.frequency_variations import FrequencyLimits, ieee_duration
from opq.errors import Conflict, InvalidValue, NotFound, StorageError
from opq.mauka.frequency_stream import (
    OVERLAP_MARGIN_MS,
    FrequencyStreamTracker,
    StreamLimits,
    StreamVariation,
    same_variation,
)
from opq.mauka.incidents import measurements_around, store_incident
from opq.mauka.lifecycle import keep_referenced
from opq.mauka.plugin import Finding
from opq.mauka.plugins.frequency import NAME as PLUGIN_NAME
from opq.mauka.plugins.frequency import FrequencyVariationSettings
from opq.protocol import BoxMeasurement
from opq.store import Store
from opq.store.models import Incident

logger = logging.getLogger(__name__)

STREAM_PRODUCER: Final = "frequency_stream"
"""metadata["plugin"] of the incidents the measurement stream produces."""


def stream_limits(settings: MaukaSettings) -> StreamLimits:
    """The stream's limits: the frequency_variation plugin's [Hz] and Mauka's durations."""
    plugin = FrequencyVariationSettings.model_validate(settings.plugins.get(PLUGIN_NAME, {}))
    return StreamLimits(
        frequency=FrequencyLimits(**plugin.model_dump()),
        min_duration_ms=settings.frequency_min_duration_ms,
        max_gap_ms=settings.frequency_max_gap_s * 1000,
    )


def stream_finding(variation: StreamVariation) -> Finding:
    """The variation as a finding, with the fields the frequency_variation plugin gives its own."""
    return Finding(
        box_id=variation.box_id,
        start_ms=variation.start_ms,
        end_ms=variation.end_ms,
        measurement_type="FREQUENCY",
        classifications=(variation.kind,),
        deviation_from_nominal=float(variation.deviation_hz),
        ieee_duration=ieee_duration(variation.duration_ms),
        metadata={
            "plugin": STREAM_PRODUCER,
            "extreme_hz": float(variation.extreme_hz),
            "deviation_hz": float(variation.deviation_hz),
            "duration_ms": float(variation.duration_ms),
            "measurements": int(variation.measurements),
            "open_end": bool(variation.open_end),
        },
    )


def stream_incident_for(store: Store, finding: Finding) -> int | None:
    """The id of a stored stream incident that is the same variation as a plugin's finding, if any."""
    span = (round(float(finding.start_ms)), round(float(finding.end_ms)))
    stored = store.incidents.list(
        box_id=finding.box_id,
        measurement_type="FREQUENCY",
        start_ms=span[0] - OVERLAP_MARGIN_MS,
        end_ms=span[1] + OVERLAP_MARGIN_MS,
    )
    for incident in stored:
        if incident.metadata.get("plugin") == STREAM_PRODUCER and any(
            same_variation(kind, span, c, (incident.start_timestamp_ms, incident.end_timestamp_ms))
            for kind in finding.classifications
            for c in incident.classifications
        ):
            return incident.incident_id
    return None


class FrequencyStreamIncidents:
    """A FrequencyStreamTracker whose variations become stored incidents (FREQUENCY, `frequency_stream`).

    Fed from the live stream by the service with its clock's time; `check` (every second or so)
    closes the runs of silent boxes and stores what has settled; `close` at stop stores everything
    still held or open, so nothing found is lost with the process (an open one is marked `open_end`).
    """

    def __init__(self, store: Store, tracker: FrequencyStreamTracker, settle_ms: int) -> None:
        self.store = store
        self.tracker = tracker
        self.settle_ms = settle_ms
        self._settling: list[tuple[int, StreamVariation]] = []
        """Closed variations and when [ms, the service's clock] each may be stored."""
        self.figures = {"variations": 0, "stored": 0, "captured": 0, "resumed": 0}
        """Variations closed; stored as stream incidents; dropped as already reported from a capture;
        merged into the open-ended incident they resume after a stop."""

    @property
    def settling(self) -> int:
        """Closed variations waiting to be stored."""
        return len(self._settling)

    def seen(self, measurement: BoxMeasurement, now_ms: int) -> None:
        """A measurement from the live stream."""
        self._hold(self.tracker.feed(measurement, now_ms), now_ms)

    def check(self, now_ms: int) -> None:
        """Close the runs of boxes gone silent, and store the variations that have settled."""
        self._hold(self.tracker.expire(now_ms), now_ms)
        due = [v for at_ms, v in self._settling if at_ms <= now_ms]
        self._settling = [(at_ms, v) for at_ms, v in self._settling if at_ms > now_ms]
        for variation in due:
            try:
                self._store(variation)
            except (InvalidValue, Conflict):
                logger.exception("box %s: the store refused a frequency variation", variation.box_id)
            except StorageError:  # the database is unavailable: try again at the next check
                logger.exception("box %s: frequency variation not stored yet", variation.box_id)
                self._settling.append((now_ms, variation))

    def close(self) -> None:
        """Store every variation held or still open (Mauka stops): none is lost silently."""
        held = [v for _, v in self._settling]
        self._settling = []
        still_open = self.tracker.close_all()
        for variation in still_open:
            logger.warning(
                "box %s: %s open since %d when Mauka stopped: stored up to %d as open-ended",
                variation.box_id,
                variation.kind,
                variation.start_ms,
                variation.end_ms,
            )
        self.figures["variations"] += len(still_open)
        for variation in [*held, *still_open]:
            self._store(variation)

    def _hold(self, variations: list[StreamVariation], now_ms: int) -> None:
        for variation in variations:
            self.figures["variations"] += 1
            self._settling.append((now_ms + self.settle_ms, variation))

    def _store(self, variation: StreamVariation) -> None:
        finding = stream_finding(variation)
        captured = self._captured_as(finding)
        if captured is not None:
            self.figures["captured"] += 1
            logger.info(
                "box %s: %s %d-%d was captured and is incident %d; not stored again",
                variation.box_id,
                variation.kind,
                variation.start_ms,
                variation.end_ms,
                captured.incident_id,
            )
            return
        store = self.store
        resumed = self._resumed(finding)
        if resumed is not None:
            self._extend(resumed, variation)
            return
        try:
            location = store.boxes.get(variation.box_id).location
        except NotFound:
            location = None  # a box removed since: its incident still says what its supply did
        incident = Incident(
            incident_id=store.allocate_id("incident"),
            box_id=variation.box_id,
            start_timestamp_ms=finding.start_ms,
            end_timestamp_ms=finding.end_ms,
            measurement_type="FREQUENCY",
            classifications=finding.classifications,
            location=location,
            deviation_from_nominal=finding.deviation_from_nominal,
            measurements=measurements_around(store, variation.box_id, finding.start_ms, finding.end_ms),
            ieee_duration=finding.ieee_duration,
            metadata=dict(finding.metadata),
        )
        store_incident(store, incident, None)
        keep_referenced(store, [incident])
        self.figures["stored"] += 1
        logger.info(
            "box %s: %s of %+.3f Hz over %d ms from the measurements: incident %d",
            variation.box_id,
            variation.kind,
            variation.deviation_hz,
            variation.duration_ms,
            incident.incident_id,
        )

    def _resumed(self, finding: Finding) -> Incident | None:
        """The open-ended stream incident this variation resumes (Mauka stopped during it), if any."""
        gap_ms = self.tracker.limits.max_gap_ms
        for incident in self.store.incidents.list(
            box_id=finding.box_id,
            measurement_type="FREQUENCY",
            start_ms=round(finding.start_ms - gap_ms),
            end_ms=finding.start_ms,
        ):
            if (
                incident.metadata.get("plugin") == STREAM_PRODUCER
                and incident.metadata.get("open_end")
                and 0 <= finding.start_ms - incident.end_timestamp_ms < gap_ms
                and same_variation(
                    finding.classifications[0],
                    (finding.start_ms, finding.end_ms),
                    incident.classifications[0],
                    (incident.start_timestamp_ms, finding.start_ms),  # the gap bridged: same side?
                )
            ):
                return incident
        return None

    def _extend(self, earlier: Incident, variation: StreamVariation) -> None:
        """Replace the stored part of a variation with one incident spanning it and its resumption."""
        swell = variation.kind == "FREQUENCY_SWELL"
        kinds = {variation.kind, *earlier.classifications}
        kind = variation.kind if swell or "FREQUENCY_INTERRUPTION" not in kinds else "FREQUENCY_INTERRUPTION"
        before = float(earlier.metadata.get("extreme_hz", variation.extreme_hz))
        extreme_hz = max(before, variation.extreme_hz) if swell else min(before, variation.extreme_hz)
        deviation_hz = extreme_hz - self.tracker.limits.frequency.nominal_hz
        end_ms = max(earlier.end_timestamp_ms, variation.end_ms)
        duration_ms = end_ms - earlier.start_timestamp_ms
        merged = dataclasses.replace(
            earlier,
            end_timestamp_ms=end_ms,
            classifications=(kind,),
            deviation_from_nominal=deviation_hz,
            ieee_duration=ieee_duration(duration_ms),
            measurements=measurements_around(self.store, earlier.box_id, earlier.start_timestamp_ms, end_ms),
            metadata={
                **earlier.metadata,
                "extreme_hz": extreme_hz,
                "deviation_hz": deviation_hz,
                "duration_ms": float(duration_ms),
                "measurements": int(earlier.metadata.get("measurements", 0)) + variation.measurements,
                "open_end": variation.open_end,
                "resumed_ms": [*earlier.metadata.get("resumed_ms", []), variation.start_ms],
            },
        )
        self.store.incidents.replace(merged)
        keep_referenced(self.store, [merged])
        self.figures["resumed"] += 1
        logger.info(
            "box %s: %s resumed at %d after a stop: incident %d now ends at %d",
            variation.box_id,
            kind,
            variation.start_ms,
            earlier.incident_id,
            end_ms,
        )

    def _captured_as(self, finding: Finding) -> Incident | None:
        """A FREQUENCY incident another producer stored for the same variation, if any."""
        span = (finding.start_ms, finding.end_ms)
        for incident in self.store.incidents.list(
            box_id=finding.box_id,
            measurement_type="FREQUENCY",
            start_ms=finding.start_ms - OVERLAP_MARGIN_MS,
            end_ms=finding.end_ms + OVERLAP_MARGIN_MS,
        ):
            if incident.metadata.get("plugin") != STREAM_PRODUCER and any(
                same_variation(
                    finding.classifications[0],
                    span,
                    c,
                    (incident.start_timestamp_ms, incident.end_timestamp_ms),
                )
                for c in incident.classifications
            ):
                return incident
        return None
