"""Checking incidents before they are stored: their table rows, vocabulary words and JSON values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from opq.errors import InvalidValue
from opq.store.classifications import Classification, IeeeDuration, MeasurementType
from opq.store.models import Annotation, Incident

Rows = list[dict[str, Any]]
_OWN_TYPES = frozenset({str, int, bool, type(None)})


def incident_rows(incidents: Sequence[Incident], lifetime_ms: int | None) -> tuple[Rows, Rows, Rows]:
    """The incident, classification and annotation rows of incidents, each incident expiring
    `lifetime_ms` after its end (None: never); InvalidValue if one is bad."""
    rows: Rows = []
    classification_rows: Rows = []
    annotation_rows: Rows = []
    for incident in incidents:
        iid = incident.incident_id
        row = incident_row(incident)
        row["expire_at"] = None if lifetime_ms is None else incident.end_timestamp_ms + lifetime_ms
        rows.append(row)
        where = f"incident {iid}: classification"
        # A classification listed twice is still one fact about the incident.
        classification_rows += [
            {"incident_id": iid, "classification": c}
            for c in sorted({vocabulary_member(Classification, c, where) for c in incident.classifications})
        ]
        annotation_rows += [annotation_row(iid, a) for a in incident.annotations]
    return rows, classification_rows, annotation_rows


def incident_row(incident: Incident) -> dict[str, Any]:
    """The incidents-table row of an incident (without `expire_at`); InvalidValue if a value is bad."""
    where = f"incident {incident.incident_id}"
    if not (isinstance(incident.box_id, str) and incident.box_id):
        raise InvalidValue(f"{where}: box_id {incident.box_id!r} must be a non-empty string")
    if incident.start_timestamp_ms > incident.end_timestamp_ms:
        raise InvalidValue(
            f"{where}: start {incident.start_timestamp_ms} ms is after end {incident.end_timestamp_ms} ms"
        )
    deviation = incident.deviation_from_nominal
    if deviation is not None:
        if not (isinstance(deviation, int | float) and math.isfinite(deviation)):
            raise InvalidValue(f"{where}: deviation_from_nominal {deviation!r} must be a finite number")
        deviation = float(deviation)
    if not isinstance(incident.metadata, dict):
        raise InvalidValue(f"{where}: metadata must be a dict, not {type(incident.metadata)}")
    if not all(isinstance(m, dict) for m in incident.measurements):
        raise InvalidValue(f"{where}: measurements must be dicts")
    ieee_duration = incident.ieee_duration
    return {
        "incident_id": incident.incident_id,
        "event_id": incident.event_id,
        "box_id": incident.box_id,
        "start_timestamp_ms": incident.start_timestamp_ms,
        "end_timestamp_ms": incident.end_timestamp_ms,
        "location": incident.location,
        "measurement_type": vocabulary_member(
            MeasurementType, incident.measurement_type, f"{where}: measurement_type"
        ),
        "deviation_from_nominal": deviation,
        "measurements": json_plain(list(incident.measurements), f"{where}: measurements"),
        "gridfs_filename": incident.gridfs_filename,
        "ieee_duration": None
        if ieee_duration is None
        else vocabulary_member(IeeeDuration, ieee_duration, f"{where}: ieee_duration"),
        "metadata": json_plain(incident.metadata, f"{where}: metadata"),
    }


def vocabulary_member(vocabulary: type[StrEnum], value: object, where: str) -> str:
    """`value` as a word of `vocabulary`; InvalidValue, naming `where` and the words allowed, if not one."""
    allowed = {member.value for member in vocabulary}
    if value not in allowed:
        raise InvalidValue(f"{where} {value!r} is not one of {', '.join(sorted(allowed))}")
    return str(vocabulary(value).value)


def json_plain(value: object, where: str) -> Any:
    """A copy of `value` made of JSON's own types only, so it reads back equal to what was given.

    Subclasses of Python's types (numpy.float64, a StrEnum member) become the plain type; anything
    else (numpy.float32, numpy.int64, arrays, datetimes) and NaN or infinity are refused.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(f"{where} is {value}: JSON holds only finite numbers")
        return float(value)
    if isinstance(value, list | tuple):
        # Items of Python's own types (nearly all) are taken as they are, without naming where they are.
        return [
            item if _is_plain(item) else json_plain(item, f"{where}[{i}]") for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue(f"{where} has the key {key!r}: JSON keys are strings")
            plain[str(key)] = item if _is_plain(item) else json_plain(item, f"{where}[{key!r}]")
        return plain
    raise InvalidValue(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__} ({value!r}), "
        "not a JSON value: convert it with float(), int(), str() or .tolist() first"
    )


def _is_plain(value: object) -> bool:
    """Whether `value` is already a JSON value of Python's own type (no subclass), to keep as it is."""
    kind = type(value)
    return kind in _OWN_TYPES or (kind is float and math.isfinite(value))  # type: ignore[arg-type]


def annotation_row(incident_id: int, annotation: Annotation) -> dict[str, Any]:
    """The row of a person's note on an incident; InvalidValue if it has no text or no user."""
    where = f"incident {incident_id}: annotation"
    if not (isinstance(annotation.text, str) and annotation.text.strip()):
        raise InvalidValue(f"{where} by {annotation.username!r} has no text")
    if not (isinstance(annotation.username, str) and annotation.username.strip()):
        raise InvalidValue(f"{where} {annotation.text!r} names no user")
    return {
        "incident_id": incident_id,
        "username": annotation.username,
        "text": annotation.text,
        "timestamp_ms": annotation.timestamp_ms,
    }
