"""From a plugin's finding to a stored incident: its id, place, measurements and trimmed waveform."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from opq.domain import SAMPLE_RATE_HZ
from opq.errors import InvalidValue, NotFound, OpqError
from opq.mauka.plugin import Finding, Waveform
from opq.store import Store
from opq.store.classifications import Classification, IeeeDuration, MeasurementType
from opq.store.files import WholeFile
from opq.store.models import BoxEvent, Incident

logger = logging.getLogger(__name__)

MEASUREMENT_MARGIN_MS: Final = 1_000
"""The box's measurements copied into an incident reach this far either side of it [ms]."""
WAVEFORM_MARGIN_MS: Final = 1
"""The trimmed waveform reaches this far either side of the incident [ms] (as the original's)."""
SAMPLES_PER_MS: Final = SAMPLE_RATE_HZ / 1000
OUTAGE_PRODUCER: Final = "outage"
"""metadata["plugin"] of outage incidents, which no analysis plugin produces."""


@dataclass(frozen=True, eq=False)
class BoxCapture:
    """One box's part of an event as analysis reads it: raw ADC counts and the volts built from them.

    Sample 0 was taken at `box_event.event_start_timestamp_ms` (the box's first cycle).
    """

    box_event: BoxEvent
    counts: npt.NDArray[np.int16]
    calibration_constant: float
    waveform: Waveform

    @property
    def window_ms(self) -> tuple[float, float]:
        """Times of the first and last sample [ms since epoch]."""
        start = float(self.box_event.event_start_timestamp_ms)
        return start, start + max(len(self.counts) - 1, 0) / SAMPLES_PER_MS


def read_capture(store: Store, box_event: BoxEvent) -> BoxCapture:
    """A box event's waveform in calibrated volts [V]; NotFound or InvalidValue if it cannot be had.

    The calibration constant [counts/V] is the one the waveform file recorded at capture time, else
    the box's current one; without either the volts are unknown and the box is refused (the
    original silently analysed raw counts as volts, opq-original §12.18).
    """
    where = f"event {box_event.event_id}, box {box_event.box_id!r}"
    if box_event.data_fs_filename is None:
        raise NotFound(f"{where}: no waveform file")
    with store.files.open_reader(box_event.data_fs_filename) as reader:
        data = reader.read()
        metadata = reader.info.metadata
    if len(data) % 2:
        raise InvalidValue(f"{where}: waveform {box_event.data_fs_filename!r} has an odd number of bytes")
    counts = np.frombuffer(data, dtype="<i2").astype(np.int16)
    calibration = _calibration(store, box_event.box_id, metadata, where)
    waveform = Waveform(
        box_id=box_event.box_id,
        start_ms=float(box_event.event_start_timestamp_ms),
        samples_v=counts.astype(np.float64) / calibration,
        event_id=box_event.event_id,
        location=box_event.location,
    )
    return BoxCapture(box_event, counts, calibration, waveform)


def _calibration(store: Store, box_id: str, metadata: Mapping[str, Any], where: str) -> float:
    recorded = metadata.get("calibration_constant")
    if isinstance(recorded, int | float) and math.isfinite(recorded) and recorded > 0:
        return float(recorded)
    try:
        return store.boxes.get(box_id).calibration_constant
    except NotFound as err:
        raise InvalidValue(f"{where}: the box is not registered and its waveform has no calibration") from err


def draft_incident(
    store: Store, finding: Finding, plugin_name: str, capture: BoxCapture, incident_id: int | None = None
) -> Incident:
    """The incident for a finding, with a new id (or `incident_id`) and copies of the box's
    measurements; not stored.

    InvalidValue (before any id is taken) if the finding is not one the store would accept.
    """
    check_finding(finding, plugin_name, capture)
    box_event = capture.box_event
    start_ms, end_ms = round(float(finding.start_ms)), round(float(finding.end_ms))
    metadata = {**json_value(dict(finding.metadata)), "plugin": plugin_name}
    incident_id = store.allocate_id("incident") if incident_id is None else incident_id
    trimmed, _ = trimmed_counts(capture, start_ms, end_ms)
    deviation = finding.deviation_from_nominal
    return Incident(
        incident_id=incident_id,
        box_id=box_event.box_id,
        start_timestamp_ms=start_ms,
        end_timestamp_ms=end_ms,
        measurement_type=str(finding.measurement_type),
        classifications=tuple(str(c) for c in finding.classifications),
        event_id=box_event.event_id,
        location=box_event.location,
        deviation_from_nominal=None if deviation is None else float(deviation),
        measurements=measurements_around(store, box_event.box_id, start_ms, end_ms),
        gridfs_filename=f"incident_{incident_id}" if len(trimmed) else None,
        ieee_duration=finding.ieee_duration,
        metadata=metadata,
    )


def check_finding(finding: Finding, plugin_name: str, capture: BoxCapture) -> None:
    """InvalidValue, naming the plugin, event and box, if the store would refuse the finding."""
    box_event = capture.box_event
    where = f"plugin {plugin_name}, event {box_event.event_id}, box {box_event.box_id!r}: finding"
    start_ms, end_ms = _whole_ms(finding.start_ms, where), _whole_ms(finding.end_ms, where)
    if finding.box_id != box_event.box_id:
        raise InvalidValue(f"{where} is for box {finding.box_id!r}")
    if start_ms > end_ms:
        raise InvalidValue(f"{where} starts at {start_ms} ms, after its end {end_ms} ms")
    _check_member(MeasurementType, finding.measurement_type, f"{where} measurement_type")
    for classification in finding.classifications:
        _check_member(Classification, classification, f"{where} classification")
    if finding.ieee_duration is not None:
        _check_member(IeeeDuration, finding.ieee_duration, f"{where} ieee_duration")
    deviation = finding.deviation_from_nominal
    if deviation is not None and not math.isfinite(deviation):
        raise InvalidValue(f"{where} has deviation_from_nominal {deviation}")


def measurements_around(store: Store, box_id: str, start_ms: int, end_ms: int) -> tuple[dict[str, Any], ...]:
    """Copies of a box's stored measurements within MEASUREMENT_MARGIN_MS of [start_ms, end_ms]."""
    found = store.measurements.for_box(
        box_id, start_ms - MEASUREMENT_MARGIN_MS, end_ms + MEASUREMENT_MARGIN_MS
    )
    return tuple(dataclasses.asdict(m) for m in found)


def trimmed_counts(capture: BoxCapture, start_ms: int, end_ms: int) -> tuple[npt.NDArray[np.int16], float]:
    """The raw counts of [start_ms − 1 ms, end_ms + 1 ms] and the time of their first sample [ms]."""
    origin = capture.box_event.event_start_timestamp_ms
    first = max(0, math.floor((start_ms - WAVEFORM_MARGIN_MS - origin) * SAMPLES_PER_MS))
    stop = min(len(capture.counts), math.ceil((end_ms + WAVEFORM_MARGIN_MS - origin) * SAMPLES_PER_MS))
    first = min(first, len(capture.counts))
    return capture.counts[first : max(first, stop)], origin + first / SAMPLES_PER_MS


def incident_file(incident: Incident, capture: BoxCapture | None) -> WholeFile | None:
    """The incident's trimmed waveform file, if it names one; InvalidValue if it has no capture."""
    filename = incident.gridfs_filename
    if filename is None:
        return None
    if capture is None:
        raise InvalidValue(f"incident {incident.incident_id} names a waveform but has no capture")
    counts, first_ms = trimmed_counts(capture, incident.start_timestamp_ms, incident.end_timestamp_ms)
    return WholeFile(
        filename,
        counts.astype("<i2").tobytes(),
        incident_id=incident.incident_id,
        event_id=incident.event_id,
        box_id=incident.box_id,
        metadata={
            "incident_id": incident.incident_id,
            "event_id": incident.event_id,
            "box_id": incident.box_id,
            "format": "int16le",
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "calibration_constant": capture.calibration_constant,
            "first_sample_timestamp_ms": first_ms,
        },
    )


def store_incident(store: Store, incident: Incident, capture: BoxCapture | None) -> None:
    """Store an incident and, if it names one, its trimmed waveform file (written first).

    If the incident cannot be stored, its file is deleted again: nothing is half-written.
    """
    filename = incident.gridfs_filename
    file = incident_file(incident, capture)
    if file is not None:
        store.files.put(
            file.filename,
            file.data,
            incident_id=file.incident_id,
            event_id=file.event_id,
            box_id=file.box_id,
            metadata=file.metadata,
        )
    try:
        store.incidents.add(incident)
    except BaseException:
        if filename is not None:
            with contextlib.suppress(OpqError):
                store.files.delete(filename)
        raise


def outage_incident(store: Store, box_id: str, start_ms: int, end_ms: int, location: str | None) -> Incident:
    """An open outage incident of a box silent since start_ms, with its last measurements copied."""
    return Incident(
        incident_id=store.allocate_id("incident"),
        box_id=box_id,
        start_timestamp_ms=start_ms,
        end_timestamp_ms=max(start_ms, end_ms),
        measurement_type="HEALTH",
        classifications=("OUTAGE",),
        location=location,
        measurements=measurements_around(store, box_id, start_ms, start_ms),
        ieee_duration="SUSTAINED",
        metadata={"plugin": OUTAGE_PRODUCER, "open": True},
    )


def json_value(value: Any) -> Any:
    """`value` with numpy scalars and arrays made plain Python, tuples made lists (for the store)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {
            str(key) if isinstance(key, np.str_) else key: json_value(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def _whole_ms(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidValue(f"{where} has a time {value!r} that is not a number of ms")
    if not math.isfinite(value):
        raise InvalidValue(f"{where} has a time {value}")
    return round(float(value))


def _check_member(
    vocabulary: type[Classification | MeasurementType | IeeeDuration], value: object, where: str
) -> None:
    if value not in {member.value for member in vocabulary}:
        raise InvalidValue(f"{where} {value!r} is not one of the store's {vocabulary.__name__} values")
