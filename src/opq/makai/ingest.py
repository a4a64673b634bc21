"""Makai's measurement endpoint: receive, check, store, roll up, republish, and trigger captures.

One process owns the boxes' measurement socket (a binding socket holds a file descriptor per
connected box, so each of Makai's three box endpoints gets a process of its own). Receiving,
checking and triggering run in the socket's thread, on whatever arrived since the last look (up
to a thousand measurements) at once, as numpy columns: a measurement costs a few microseconds
of Python, not a hundred. The database writes run in their own thread (`MeasurementWriter`), so a
slow or absent database never holds up the socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Literal

import zmq

from opq.clock import wall_clock_ms
from opq.config import MakaiSettings
from opq.errors import OpqError
from opq.makai.auth import BoxKeys, curve_server, start_authenticator
from opq.makai.capture import CapturePlanner, neighbourhoods
from opq.makai.storage import MeasurementWriter
from opq.makai.trends import TrendRollup
from opq.makai.triggering import Limits, limits_of
from opq.makai.validation import check_columns, stored_rows
from opq.protocol.columns import decode_measurements
from opq.protocol.internal import LIVE_TOPIC, CaptureRequest, encode_capture_request
from opq.store import Store

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], None]

_DRAIN: Final = 1_000
"""Most messages handled between two looks at the clock."""
_NOBLOCK: Final = int(zmq.NOBLOCK)
"""As a plain int: pyzmq's flag enums cost a microsecond a call."""
_GATHER_S: Final = 0.01
"""After a batch short of `_DRAIN`, how long to let measurements gather before the next: a batch
costs about a hundred numpy calls whatever its size, so batches of a few messages are kept from
forming at low rates (10 ms is nothing beside the 250-ms writes)."""
_MAX_MEASUREMENTS_PER_BOX_S: Final = 60
"""A box measuring every cycle sends 60 a second; more is a broken or hostile box."""


class _BoxView:
    """What ingest knows of the registered boxes: locations, limits and neighbours, kept fresh."""

    def __init__(self, store: Store, scope: Literal["none", "location", "region"]) -> None:
        self._store = store
        self._scope = scope
        self._version = -1
        self._places: tuple[object, ...] = ()
        self.locations: dict[str, str | None] = {}
        self.neighbours: dict[str, tuple[str, ...]] = {}
        self._default_limits = limits_of(store.triggering.defaults())
        self._limits: dict[str, Limits] = {}

    def refresh(self) -> None:
        boxes = self._store.boxes.list()
        regions = self._store.regions.list()
        self.locations = {box.box_id: box.location for box in boxes}
        # Neighbourhoods change only with places: worked out again only then (thousands of boxes).
        places = (tuple((b.box_id, b.location, b.unplugged) for b in boxes), tuple(regions))
        if places != self._places:
            self.neighbours = neighbourhoods(boxes, regions, self._scope)
            self._places = places
        version = self._store.triggering.version()
        if version != self._version:
            triggering = self._store.triggering
            self._default_limits = limits_of(triggering.defaults())
            self._limits = {
                box_id: limits_of(triggering.for_box(box_id)) for box_id in triggering.overrides()
            }
            self._version = version
            logger.info("triggering thresholds (version %d) loaded", version)

    def limits_for(self, box_id: str) -> Limits:
        return self._limits.get(box_id, self._default_limits)

    def neighbours_of(self, box_id: str) -> tuple[str, ...]:
        return self.neighbours.get(box_id, ())


class Ingest:
    """The measurement socket and everything done with each measurement."""

    def __init__(
        self,
        settings: MakaiSettings,
        store: Store,
        secret_key: str,
        context: zmq.Context[zmq.Socket[bytes]],
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock_ms = clock_ms
        self.keys = BoxKeys(store)
        self.boxes = _BoxView(store, settings.neighbours)
        self.boxes.refresh()
        self._authenticator = start_authenticator(context, self.keys)
        self.socket = context.socket(zmq.SUB)
        curve_server(self.socket, secret_key)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.setsockopt(zmq.RCVHWM, 100_000)
        self.socket.setsockopt(zmq.BACKLOG, 4_096)
        self.socket.bind(f"tcp://{settings.box_host}:{settings.measurement_port}")
        self.live = context.socket(zmq.PUB)
        self.live.setsockopt(zmq.SNDHWM, 100_000)
        self.live.bind(f"tcp://{settings.service_host}:{settings.live_port}")
        self.captures = context.socket(zmq.DEALER)
        self.captures.setsockopt(zmq.LINGER, 1_000)
        self.captures.connect(f"tcp://{settings.service_host}:{settings.capture_port}")
        self.writer = MeasurementWriter(
            store,
            interval_s=settings.batch_interval_ms / 1000,
            max_buffered=settings.buffer_max_measurements,
            clock_ms=clock_ms,
        )
        self.trends = TrendRollup(interval_ms=settings.trend_interval_s * 1000)
        self.planner = CapturePlanner(
            limits_for=self.boxes.limits_for,
            neighbours_of=self.boxes.neighbours_of,
            pre_ms=settings.pre_trigger_ms,
            post_ms=settings.post_trigger_ms,
            max_piece_ms=settings.max_piece_ms,
            max_boxes=settings.max_boxes_per_event,
        )
        self.received = 0
        self.dropped: Counter[str] = Counter()
        self.captures_requested = 0
        self.last_seen: dict[str, tuple[int, int]] = {}
        """Per box: (timestamp of its newest measurement, measurements received)."""
        self._this_second: Counter[str] = Counter()
        self._second = 0

    def run(self, stop: threading.Event, report: Report, report_interval_s: float = 2.0) -> None:
        """Receive until `stop` is set; `report` gets a health snapshot every report_interval_s."""
        writer = threading.Thread(target=self.writer.run, args=(stop,), name="makai-writer", daemon=True)
        writer.start()
        next_second = next_refresh = next_report = time.monotonic()
        try:
            while not stop.is_set():
                if self.socket.poll(100) and self._receive() < _DRAIN:
                    stop.wait(_GATHER_S)
                self._discard_capture_replies()
                now = time.monotonic()
                if now >= next_second:
                    next_second = now + 1.0
                    self._every_second()
                if now >= next_refresh:
                    next_refresh = now + self._settings.refresh_s
                    self._refresh()
                if now >= next_report:
                    next_report = now + report_interval_s
                    report(self.snapshot())
        finally:
            stop.set()
            writer.join()
            report(self.snapshot())

    def _receive(self) -> int:
        """Take what the socket holds (up to `_DRAIN` messages) as one batch, republish what is kept;
        how many messages there were."""
        messages: list[list[zmq.Frame]] = []
        received = 0
        for _ in range(_DRAIN):
            try:
                frames = self.socket.recv_multipart(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            received += 1
            self.received += 1
            if len(frames) == 2:
                messages.append(frames)
            else:
                self.dropped["malformed"] += 1
        if not messages:
            return received
        try:
            kept = self.take([str(m[1].get("User-Id")) for m in messages], [m[1].bytes for m in messages])
        except Exception:  # a bug must never take the boxes' endpoint down
            logger.exception("failed on a batch of %d measurements; carrying on", len(messages))
            self.dropped["internal_error"] += len(messages)
            return received
        if kept:
            self.live.send_multipart([LIVE_TOPIC, *(messages[index][1] for index in kept)], copy=False)
        return received

    def take(self, senders: list[str], payloads: list[bytes]) -> list[int]:
        """Check, store, roll up and trigger on measurements (`payloads[i]` sent by the box `senders[i]`,
        whose CURVE key it is); the indexes of those kept, in order."""
        decoded = decode_measurements(payloads)
        if decoded.malformed:
            self.dropped["malformed"] += len(decoded.malformed)
            logger.debug(
                "malformed measurement from box %s: %s",
                senders[decoded.malformed[0][0]],
                decoded.malformed[0][1],
            )
        columns = decoded.columns
        row_senders = [senders[index] for index in decoded.sources]
        now_ms = self._clock_ms()
        settings = self._settings
        reasons = check_columns(
            columns,
            row_senders,
            now_ms,
            max_age_ms=int(settings.max_age_s * 1000),
            max_ahead_ms=int(settings.max_ahead_s * 1000),
        )
        second = now_ms // 1000
        if second != self._second:
            self._second = second
            self._this_second.clear()
        this_second, last_seen, dropped, allows = (
            self._this_second,
            self.last_seen,
            self.dropped,
            self.keys.allows,
        )
        timestamps = columns.timestamps_ms.tolist()
        rows: list[int] = []
        for row, sender in enumerate(row_senders):
            if not allows(sender):
                dropped["revoked"] += 1
                continue
            this_second[sender] += 1
            if this_second[sender] > _MAX_MEASUREMENTS_PER_BOX_S:
                dropped["too_fast"] += 1
                continue
            reason = reasons[row]
            if reason is not None:
                dropped[reason] += 1
                continue
            timestamp_ms = timestamps[row]
            previous = last_seen.get(sender)  # the sender is the measurement's box: checked
            if previous is not None and timestamp_ms <= previous[0]:
                dropped["duplicate" if timestamp_ms == previous[0] else "out_of_order"] += 1
                continue
            last_seen[sender] = (timestamp_ms, 1 if previous is None else previous[1] + 1)
            rows.append(row)
        kept = columns.take(rows)
        queued = self.writer.put_rows(stored_rows(kept))
        if queued < len(kept):
            dropped["buffer_full"] += len(kept) - queued
        locations = self.boxes.locations
        self.writer.put_trends(self.trends.add_batch(kept, [locations.get(b) for b in kept.box_ids]))
        self._request(self.planner.observe_batch(kept))
        return [decoded.sources[row] for row in rows]

    def _request(self, requests: list[CaptureRequest]) -> None:
        for request in requests:
            self.captures.send_multipart([b"", encode_capture_request(request)])
            self.captures_requested += 1

    def _discard_capture_replies(self) -> None:
        """Acquisition answers each capture request with its event id, which ingest does not need."""
        while True:
            try:
                self.captures.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _every_second(self) -> None:
        now_ms = self._clock_ms()
        self.writer.put_trends(self.trends.due(now_ms))
        self._request(self.planner.tick(now_ms))

    def _refresh(self) -> None:
        try:
            self.keys.refresh()
            self.boxes.refresh()
        except OpqError as err:
            logger.warning("cannot re-read boxes and thresholds, keeping the ones I have: %s", err)

    def snapshot(self) -> dict[str, Any]:
        """Health figures: counts, drops by reason, buffer, lag, and each box's newest measurement."""
        writer = self.writer
        return {
            "received": self.received,
            "stored": writer.stored,
            "duplicates_in_store": writer.duplicates,
            "trends_stored": writer.trends_stored,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "buffered": writer.buffered,
            "buffer_max": self._settings.buffer_max_measurements,
            "database_ok": writer.database_ok,
            "database_error": "" if writer.database_ok else writer.last_error,
            "lag_ms": writer.lag_percentiles_ms(),
            "captures_requested": self.captures_requested,
            "refused_keys": dict(self.keys.refused),
            "late_trend_measurements": self.trends.late_measurements,
            "boxes": {
                box: {"last_measurement_ms": ts, "received": n} for box, (ts, n) in self.last_seen.items()
            },
            "planner": {k: v for k, v in vars(self.planner).items() if isinstance(v, int)},
        }

    def close(self) -> None:
        """Close the sockets and stop ZAP (the context stays with its owner)."""
        for socket in (self.socket, self.live, self.captures):
            socket.close(linger=0 if socket is not self.captures else 1_000)
        self._authenticator.stop()
