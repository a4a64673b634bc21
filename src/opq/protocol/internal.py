"""Messages between cloud services: capture requests to Makai, Makai's event announcements, and
its live measurement stream.

Capture requests and announcements are small and rare, so they travel as JSON (readable with any
ZeroMQ tool); each decoder checks every field and says which one is wrong. The live stream carries
the boxes' own `Measurement` payloads, many to a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from opq.errors import ProtocolError
from opq.protocol.topics import wire_box_id

EVENT_TOPIC: Final = b"event"
"""First frame of an event announcement; the second is the event id in decimal."""

LIVE_TOPIC: Final = b"measurements"
"""First frame of a live-stream message; each further frame is one box `Measurement` as the box
sent it (checked and stored by Makai). Thousands arrive a second, so Makai sends what it took in
one batch as one message: a frame costs its subscribers far less than a message."""

MAX_CAPTURE_MS: Final = 3_600_000
"""Longest window one capture may ask for [ms]: a box holds an hour of raw cycles by default."""


@dataclass(frozen=True)
class CaptureRequest:
    """Ask Makai to capture the raw waveform of `box_ids` over [start_ms, end_ms] [ms since epoch].

    `triggered_by` are the boxes whose measurements caused it (empty for a manual capture); `piece`
    numbers the parts of a long anomaly captured in pieces.
    """

    box_ids: tuple[str, ...]
    start_ms: int
    end_ms: int
    reason: str = ""
    triggered_by: tuple[str, ...] = ()
    piece: int = 0


def encode_capture_request(request: CaptureRequest) -> bytes:
    """The request as JSON bytes, checked as `decode_capture_request` would check it."""
    document = {
        "box_ids": list(request.box_ids),
        "start_ms": request.start_ms,
        "end_ms": request.end_ms,
        "reason": request.reason,
        "triggered_by": list(request.triggered_by),
        "piece": request.piece,
    }
    _check_capture(document)
    return json.dumps(document).encode()


def decode_capture_request(data: bytes) -> CaptureRequest:
    """Parse a capture request; a malformed one raises ProtocolError naming the field."""
    document = _json_object(data, "capture request")
    _check_capture(document)
    return CaptureRequest(
        box_ids=tuple(document["box_ids"]),
        start_ms=document["start_ms"],
        end_ms=document["end_ms"],
        reason=document.get("reason", ""),
        triggered_by=tuple(document.get("triggered_by", ())),
        piece=document.get("piece", 0),
    )


def encode_capture_reply(event_id: int | None, error: str | None = None) -> bytes:
    """Makai's answer to a capture request: the new event's id, or why there is none."""
    return json.dumps({"event_id": event_id, "error": error}).encode()


def decode_capture_reply(data: bytes) -> int:
    """The event id of a capture reply; ProtocolError carrying Makai's reason if it refused."""
    document = _json_object(data, "capture reply")
    if document.get("error"):
        raise ProtocolError(f"Makai refused the capture: {document['error']}")
    event_id = document.get("event_id")
    if not isinstance(event_id, int) or isinstance(event_id, bool):
        raise ProtocolError(f"malformed capture reply: event_id {event_id!r} is not an integer")
    return event_id


def event_announcement(event_id: int) -> list[bytes]:
    """The frames announcing a stored event (its waveforms are in the store when this is sent)."""
    return [EVENT_TOPIC, str(event_id).encode()]


def parse_event_announcement(frames: list[bytes]) -> int:
    """The event id of an announcement; ProtocolError for anything else."""
    if len(frames) != 2 or frames[0] != EVENT_TOPIC or not frames[1].isdigit():
        raise ProtocolError(f"malformed event announcement: {frames[:3]!r}")
    return int(frames[1])


def parse_live_measurements(frames: list[bytes]) -> list[bytes]:
    """The `Measurement` payloads of a live-stream message; ProtocolError for anything else."""
    if not frames or frames[0] != LIVE_TOPIC:
        raise ProtocolError(f"malformed live-stream message: {frames[:1]!r}")
    return frames[1:]


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"malformed {what}: not JSON ({err})") from err
    if not isinstance(document, dict):
        raise ProtocolError(f"malformed {what}: expected a JSON object, got {type(document).__name__}")
    return document


def _check_capture(document: dict[str, Any]) -> None:
    unknown = set(document) - {"box_ids", "start_ms", "end_ms", "reason", "triggered_by", "piece"}
    if unknown:
        raise ProtocolError(f"malformed capture request: unknown fields {sorted(unknown)}")
    for name in ("box_ids", "triggered_by"):
        boxes = document.get(name, [])
        if not isinstance(boxes, list | tuple) or not all(isinstance(box, str) for box in boxes):
            raise ProtocolError(f"malformed capture request: {name} must be a list of box id strings")
        for box in boxes:
            try:
                wire_box_id(box)
            except ProtocolError as err:
                raise ProtocolError(f"malformed capture request: {name}: {err}") from err
    if not document.get("box_ids"):
        raise ProtocolError("malformed capture request: box_ids names no box")
    if len(set(document["box_ids"])) != len(document["box_ids"]):
        raise ProtocolError(f"malformed capture request: box_ids {document['box_ids']} lists a box twice")
    for name in ("start_ms", "end_ms", "piece"):
        value = document.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProtocolError(f"malformed capture request: {name} {value!r} is not a whole number >= 0")
    start, end = document["start_ms"], document["end_ms"]
    if not start < end <= start + MAX_CAPTURE_MS:
        raise ProtocolError(
            f"malformed capture request: window {start}..{end} ms must end after it starts "
            f"and last at most {MAX_CAPTURE_MS} ms"
        )
    if not isinstance(document.get("reason", ""), str):
        raise ProtocolError("malformed capture request: reason must be a string")
