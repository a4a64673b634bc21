"""The whole chain on a recording, without database or sockets: box metrics, triggering, capture, plugins."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from opq.box.measuring import MeasurementBuilder
from opq.box.source import SampleSource
from opq.config import MakaiSettings, MaukaSettings
from opq.makai.capture import CapturePlanner
from opq.makai.triggering import limits_of
from opq.mauka.frequency_incidents import stream_finding, stream_limits
from opq.mauka.frequency_stream import FrequencyStreamTracker, StreamLimits, same_variation
from opq.mauka.plugin import Finding, Plugin, Waveform
from opq.protocol import BoxMeasurement
from opq.protocol.internal import CaptureRequest
from opq.store.models import TriggerThresholds

logger = logging.getLogger(__name__)

BOX_ID = "1"
"""The recording plays the part of this box."""


@dataclass(frozen=True)
class Capture:
    """One capture window the triggering chose, and what every plugin found in its waveform."""

    request: CaptureRequest
    cycles: int
    findings: tuple[Finding, ...]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class OfflineAnalysis:
    """What the chain made of a recording."""

    start_ms: int
    """Time of the recording's first sample [ms since epoch; 0 if the recording has no start time]."""
    measurements: int
    abnormal_measurements: int
    captures: tuple[Capture, ...]
    stream_findings: tuple[Finding, ...] = ()
    """Frequency variations found in the measurements that no capture's plugins reported."""

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every capture and of the measurements, in time order."""
        found = [f for c in self.captures for f in c.findings] + list(self.stream_findings)
        return sorted(found, key=lambda f: (f.start_ms, f.end_ms))


def analyze_recording(
    source: SampleSource,
    plugins: Sequence[Plugin],
    *,
    thresholds: TriggerThresholds | None = None,
    settings: MakaiSettings | None = None,
    cycles_per_measurement: int = 10,
    mauka: MaukaSettings | None = None,
) -> OfflineAnalysis:
    """Run a recording (or any box source) through what a box, Makai and Mauka would do, in memory.

    The recording is measured as a box would (six measurements a second by default), the
    measurements go through Makai's triggering with `thresholds` (the store's defaults if None),
    each capture window is cut from the recording as a box would answer a `GetData`, and every
    plugin analyses each capture's waveform. A plugin that raises is recorded in the capture's
    `failures`; the others still run. Unless `mauka.frequency_from_measurements` is off, the
    measurements also go through Mauka's frequency tracker (with `mauka`'s limits); a variation
    it finds is kept unless a capture's plugin reported the same one, as Mauka's host keeps one
    incident per variation (`opq.mauka.frequency_incidents`).
    """
    settings = settings or MakaiSettings()
    limits = limits_of(thresholds or TriggerThresholds())
    planner = CapturePlanner(
        limits_for=lambda _box: limits,
        neighbours_of=lambda _box: (),
        pre_ms=settings.pre_trigger_ms,
        post_ms=settings.post_trigger_ms,
        max_piece_ms=settings.max_piece_ms,
        max_boxes=1,
    )
    calibration = source.calibration_constant
    builder = MeasurementBuilder(BOX_ID, calibration, cycles_per_measurement)
    cycles = list(source.cycles())
    timestamps_ms = np.array([c.timestamp_ms for c in cycles], dtype=np.int64)
    counts = np.stack([c.counts for c in cycles]) if cycles else np.empty((0, 200), np.int16)
    requests: list[CaptureRequest] = []
    measurements: list[BoxMeasurement] = []
    for cycle in cycles:
        m = builder.add(cycle)
        if m is not None:
            measurements.append(m)
    last = builder.flush()
    if last is not None:
        measurements.append(last)
    for m in measurements:
        requests.extend(planner.observe(m))
    if measurements:
        # The recording ends: an anomaly still open is closed as if the box fell silent.
        requests.extend(planner.tick(measurements[-1].timestamp_ms + planner.silence_ms))
    captures = [
        _capture(request, timestamps_ms, counts, calibration, plugins)
        for request in _whole_anomalies(requests)
    ]
    captured = [f for c in captures for f in c.findings if f.measurement_type == "FREQUENCY"]
    mauka = mauka or MaukaSettings()
    from_measurements = (
        _stream_findings(measurements, stream_limits(mauka)) if mauka.frequency_from_measurements else []
    )
    streamed = [f for f in from_measurements if not any(_same_variation(f, other) for other in captured)]
    start_ms = int(timestamps_ms[0]) if cycles else 0
    return OfflineAnalysis(
        start_ms, len(measurements), planner.abnormal_measurements, tuple(captures), tuple(streamed)
    )


def _stream_findings(measurements: Sequence[BoxMeasurement], limits: StreamLimits) -> list[Finding]:
    """The frequency variations Mauka's host would find in the measurements; the recording's end
    closes one still in progress, as Mauka's stop does."""
    tracker = FrequencyStreamTracker(limits)
    variations = [v for m in measurements for v in tracker.feed(m)] + tracker.close_all()
    return [stream_finding(v) for v in variations]


def _same_variation(a: Finding, b: Finding) -> bool:
    return any(
        same_variation(ka, (a.start_ms, a.end_ms), kb, (b.start_ms, b.end_ms))
        for ka in a.classifications
        for kb in b.classifications
    )


def _whole_anomalies(requests: list[CaptureRequest]) -> list[CaptureRequest]:
    """The pieces of each long anomaly joined into one request, as Mauka joins their events.

    Mauka joins a piece to the earlier ones up to `MAX_CHAIN_MS` back; offline the whole anomaly is
    at hand, so it is analysed at once, however long.
    """
    whole: list[CaptureRequest] = []
    for request in requests:
        previous = whole[-1] if whole else None
        if request.piece and previous is not None and previous.end_ms == request.start_ms:
            boxes = tuple(dict.fromkeys((*previous.box_ids, *request.box_ids)))
            triggered = tuple(dict.fromkeys((*previous.triggered_by, *request.triggered_by)))
            whole[-1] = dataclasses.replace(
                previous, box_ids=boxes, triggered_by=triggered, end_ms=request.end_ms, piece=request.piece
            )
        else:
            whole.append(request)
    return whole


def _capture(
    request: CaptureRequest,
    timestamps_ms: np.ndarray,
    counts: np.ndarray,
    calibration: float,
    plugins: Sequence[Plugin],
) -> Capture:
    # What a box answers to GetData(start, end): the cycles stamped strictly inside the window.
    inside = (timestamps_ms > request.start_ms) & (timestamps_ms < request.end_ms)
    chosen = np.flatnonzero(inside)
    if chosen.size == 0:
        return Capture(request, 0, ())
    waveform = Waveform(
        box_id=BOX_ID,
        start_ms=float(timestamps_ms[chosen[0]]),
        samples_v=counts[chosen].ravel() / calibration,
    )
    findings: list[Finding] = []
    failures: list[str] = []
    for plugin in plugins:
        try:
            findings.extend(plugin.analyze(waveform))
        except Exception as err:  # a plugin's bug must not hide the others' findings
            logger.exception("plugin %s failed on the capture at %d", plugin.name, request.start_ms)
            failures.append(f"{plugin.name}: {err}")
    return Capture(request, int(chosen.size), tuple(findings), tuple(failures))
