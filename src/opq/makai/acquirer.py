"""Makai's acquisition process: capture requests in, commands out via the relay, waveforms in, events out.

Sockets: ROUTER `capture_port` (requests from ingest, Mauka, View and the CLI; each gets the new
event id back), PULL `response_port` (boxes' responses, CURVE), PUSH to the command relay, and PUB
`event_port` (announcements, sent once an event's waveforms are stored).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import zmq

from opq.clock import wall_clock_ms
from opq.config import MakaiSettings
from opq.errors import OpqError, ProtocolError
from opq.makai.acquisition import Acquisition
from opq.makai.auth import BoxKeys, curve_server, start_authenticator
from opq.protocol import command_topic, decode_command, encode_command
from opq.protocol.internal import decode_capture_request, encode_capture_reply, event_announcement
from opq.store import Store

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], None]

RESPONSES_PER_FLUSH: Final = 200
"""Most box responses taken before what was taken is stored: a flood of them is stored as it goes."""


class Acquirer:
    """The sockets around `Acquisition`."""

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
        self.keys = BoxKeys(store)
        self._authenticator = start_authenticator(context, self.keys)
        self.acquisition = Acquisition(
            store,
            timeout_ms=int(settings.response_timeout_s * 1000),
            identity=f"makai-{uuid.uuid4().hex[:8]}",
            clock_ms=clock_ms,
        )
        service = settings.service_host
        self.requests = context.socket(zmq.ROUTER)
        self.requests.bind(f"tcp://{service}:{settings.capture_port}")
        self.responses = context.socket(zmq.PULL)
        curve_server(self.responses, secret_key)
        self.responses.setsockopt(zmq.BACKLOG, 4_096)
        self.responses.bind(f"tcp://{settings.box_host}:{settings.response_port}")
        self.commands = context.socket(zmq.PUSH)
        self.commands.setsockopt(zmq.SNDHWM, 100_000)
        self.commands.connect(f"tcp://{service}:{settings.relay_port}")
        self.events = context.socket(zmq.PUB)
        self.events.bind(f"tcp://{service}:{settings.event_port}")
        self.refused_requests = 0
        self.announced = 0

    def run(self, stop: threading.Event, report: Report, report_interval_s: float = 2.0) -> None:
        """Serve until `stop` is set; `report` gets a health snapshot every report_interval_s."""
        poller = zmq.Poller()
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self.responses, zmq.POLLIN)
        next_check = next_refresh = next_report = time.monotonic()
        try:
            while not stop.is_set():
                poller.poll(100)
                # Never trust readiness alone: receive without blocking until each socket is empty.
                while (request := _receive(self.requests)) is not None:
                    self._serve_request([frame.bytes for frame in request])
                self._take_responses()
                # Whatever arrived together is stored together: one transaction an event.
                completed = self.acquisition.flush()
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 0.1
                    completed += self.acquisition.expire()
                for event_id in completed:
                    self._announce(event_id)
                if now >= next_refresh:
                    next_refresh = now + self._settings.refresh_s
                    self.keys.refresh_or_keep()
                if now >= next_report:
                    next_report = now + report_interval_s
                    report(self.snapshot())
        finally:
            report(self.snapshot())

    def _take_responses(self) -> None:
        """Take the responses waiting on the socket, at most a batch, so storing is not put off."""
        for _ in range(RESPONSES_PER_FLUSH):
            frames = _receive(self.responses)
            if frames is None:
                return
            sender = str(frames[0].get("User-Id"))
            if self.keys.allows(sender):
                self.acquisition.take([f.bytes for f in frames], sender)

    def _serve_request(self, frames: list[bytes]) -> None:
        # ROUTER frames: [peer identity, b"" (from REQ and DEALER), request].
        envelope, payload = frames[:-1], frames[-1]
        try:
            request = decode_capture_request(payload)
            event_id, commands = self.acquisition.start(request)
        except (ProtocolError, OpqError) as err:
            self.refused_requests += 1
            logger.warning("refused a capture request: %s", err)
            self.requests.send_multipart([*envelope, encode_capture_reply(None, str(err))])
            return
        for command in commands:
            self.commands.send(encode_command(command))
        self.requests.send_multipart([*envelope, encode_capture_reply(event_id)])

    def _announce(self, event_id: int) -> None:
        self.events.send_multipart(event_announcement(event_id))
        self.announced += 1
        logger.info("event %d stored and announced", event_id)

    def snapshot(self) -> dict[str, Any]:
        """Health figures of acquisition."""
        latencies = sorted(self.acquisition.latencies_ms)
        store_ms = sorted(self.acquisition.store_ms)
        return {
            **dict(self.acquisition.counts),
            "in_progress": self.acquisition.in_progress,
            "unstored": self.acquisition.unstored,
            "announced": self.announced,
            "refused_requests": self.refused_requests,
            "refused_keys": dict(self.keys.refused),
            "response_latency_ms_p50": latencies[len(latencies) // 2] if latencies else None,
            "store_ms_p50": store_ms[len(store_ms) // 2] if store_ms else None,
            "store_ms_max": store_ms[-1] if store_ms else None,
        }

    def close(self) -> None:
        """Close the sockets and stop ZAP."""
        for socket in (self.requests, self.responses, self.commands, self.events):
            socket.close(linger=0)
        self._authenticator.stop()


def _receive(socket: zmq.Socket[bytes]) -> list[zmq.Frame] | None:
    try:
        return socket.recv_multipart(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None


class CommandRelay:
    """The command endpoint in a process of its own: PULL from acquisition, PUB to the boxes (CURVE).

    Each command goes out under its box's topic; a box subscribes to its own id.
    """

    def __init__(
        self, settings: MakaiSettings, store: Store, secret_key: str, context: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        self._settings = settings
        self.keys = BoxKeys(store)
        self._authenticator = start_authenticator(context, self.keys)
        self.inbound = context.socket(zmq.PULL)
        self.inbound.bind(f"tcp://{settings.service_host}:{settings.relay_port}")
        self.outbound = context.socket(zmq.PUB)
        curve_server(self.outbound, secret_key)
        self.outbound.setsockopt(zmq.BACKLOG, 4_096)
        self.outbound.bind(f"tcp://{settings.box_host}:{settings.command_port}")
        self.relayed = 0
        self.malformed = 0

    def run(self, stop: threading.Event, report: Report, report_interval_s: float = 2.0) -> None:
        """Relay until `stop` is set."""
        next_refresh = next_report = time.monotonic()
        try:
            while not stop.is_set():
                self.inbound.poll(100)
                while (frames := _receive(self.inbound)) is not None:
                    payload = frames[0].bytes
                    try:
                        box_id = decode_command(payload).box_id
                    except ProtocolError as err:
                        self.malformed += 1
                        logger.warning("dropped a malformed command from acquisition: %s", err)
                        continue
                    self.outbound.send_multipart([command_topic(box_id), payload])
                    self.relayed += 1
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + self._settings.refresh_s
                    self.keys.refresh_or_keep()
                if now >= next_report:
                    next_report = now + report_interval_s
                    report(
                        {
                            "relayed": self.relayed,
                            "malformed": self.malformed,
                            "refused_keys": dict(self.keys.refused),
                        }
                    )
        finally:
            report({"relayed": self.relayed, "malformed": self.malformed})

    def close(self) -> None:
        """Close the sockets and stop ZAP."""
        self.inbound.close(linger=0)
        self.outbound.close(linger=500)
        self._authenticator.stop()
