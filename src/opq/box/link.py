"""The box's sockets to the cloud: measurements out without loss, commands in, responses out, all CURVE.

ZeroMQ PUB drops what is sent before a subscriber's subscription has reached it (after start and
after every reconnect). So measurements go out on an XPUB socket, which is PUB on the wire but
hands the cloud's (un)subscriptions to the box: a measurement is sent only while a subscription
covering the box's topic is in place, and waits in a bounded queue otherwise. With ZMQ_IMMEDIATE
the XPUB has no pipe while disconnected, and a dropped connection arrives as an unsubscription, so
"subscribed" always means "connected, and the cloud listens". ZMQ_XPUB_NODROP turns a full pipe
into a retry instead of a silent drop. Measurements already written to the wire when the cloud
dies are lost: PUB/SUB has no acknowledgements.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from opq.protocol import KeyPair

logger = logging.getLogger(__name__)

_SUBSCRIBE: Final = 1
_UNSUBSCRIBE: Final = 0
_MONITORED: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass(frozen=True)
class LinkSettings:
    """Where and how a box connects; intervals and bounds in their units."""

    measurement_endpoint: str
    command_endpoint: str
    response_endpoint: str
    keys: KeyPair
    server_public_key: str
    measurement_topic: bytes
    command_topic: bytes
    queue_seconds: float = 600.0
    """Measurements kept while the cloud does not listen [s of measurement time]."""
    queue_max: int = 36_000
    """Most measurements kept while the cloud does not listen (10 min at one per cycle)."""
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 5_000
    heartbeat_ivl_ms: int = 2_000
    """ZMTP heartbeats find a dead peer on a silently dropped network [ms]: no answer in 3 intervals
    ends the connection (what was written to it in that time is lost) and the box reconnects."""
    handshake_retry_max_s: float = 60.0
    """Longest wait before connecting again after the cloud refused a handshake [s]."""
    send_hwm: int = 1_000
    linger_ms: int = 500


@dataclass
class _Channel:
    """One socket to the cloud, its monitor, and when to connect again after a refused handshake."""

    name: str
    endpoint: str
    socket: zmq.Socket[bytes]
    monitor: zmq.Socket[bytes]
    retry_at_s: float | None = None
    backoff_s: float = 0.0


class Link:
    """The box's three sockets, driven by one thread (`open`, `poll`, `send_response`, `close`).

    `publish` may be called from any thread. Counters: `sent`, `dropped`, `connections` and
    `disconnections` (of the measurement socket), `refused` (handshakes, any socket),
    `responses_failed`; `queued` and `subscribed` show the present state.
    """

    def __init__(self, settings: LinkSettings, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        if settings.keys.secret is None:
            raise ValueError("the box's key pair needs its secret key")
        self.settings = settings
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._channels: dict[zmq.Socket[bytes], _Channel] = {}  # by monitor socket
        self._poller = zmq.Poller()
        self._prefixes: set[bytes] = set()
        self.sent = 0
        self.dropped = 0
        self.connections = 0
        self.disconnections = 0
        self.responses_failed = 0
        self.refused = 0

    @property
    def subscribed(self) -> bool:
        """Whether the cloud is connected and subscribed to this box's measurements."""
        return bool(self._prefixes)

    @property
    def queued(self) -> int:
        """Measurements waiting to be sent."""
        with self._lock:
            return len(self._queue)

    def publish(self, timestamp_ms: int, payload: bytes) -> None:
        """Queue an encoded measurement for sending, from any thread; the oldest go when the queue is full."""
        with self._lock:
            self._queue.append((timestamp_ms, payload))
            horizon_ms = timestamp_ms - 1000 * self.settings.queue_seconds
            while len(self._queue) > self.settings.queue_max or self._queue[0][0] < horizon_ms:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning("measurement queue full: %d measurements dropped so far", self.dropped)
        self.wake()

    def wake(self) -> None:
        """Make a `poll` in progress return now (from any thread)."""
        with self._lock, contextlib.suppress(BlockingIOError):  # a full pipe wakes the link already
            if self._wake_write >= 0:
                os.write(self._wake_write, b"\0")

    def open(self) -> None:
        """Create and connect the sockets (in the thread that will drive the link)."""
        s = self.settings
        self._measurements = self._socket(zmq.XPUB, s.measurement_endpoint, "measurements")
        self._commands = self._socket(zmq.SUB, s.command_endpoint, "commands")
        self._commands.setsockopt(zmq.SUBSCRIBE, s.command_topic)
        self._responses = self._socket(zmq.PUSH, s.response_endpoint, "responses")
        self._poller.register(self._measurements, zmq.POLLIN)
        self._poller.register(self._commands, zmq.POLLIN)
        self._poller.register(self._wake_read, zmq.POLLIN)
        for channel in self._channels.values():
            channel.socket.connect(channel.endpoint)
        logger.info("box links to %s", ", ".join(c.endpoint for c in self._channels.values()))

    def poll(self, timeout_ms: int) -> list[list[bytes]]:
        """Wait up to `timeout_ms` for activity, send what may be sent, and return the commands received."""
        if self.subscribed and self.queued:
            timeout_ms = min(timeout_ms, 10)  # the pipe was full: retry soon
        retries = [c.retry_at_s for c in self._channels.values() if c.retry_at_s is not None]
        if retries:
            timeout_ms = max(0, min(timeout_ms, round(1000 * (min(retries) - time.monotonic()))))
        commands: list[list[bytes]] = []
        for sock, _ in self._poller.poll(timeout_ms):
            if sock == self._wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 4096)
            elif sock is self._measurements:
                self._read_subscriptions()
            elif sock is self._commands:
                while self._commands.poll(0):
                    commands.append(self._commands.recv_multipart())
            elif isinstance(sock, zmq.Socket) and sock in self._channels:
                self._read_events(self._channels[sock])
        self._reconnect_refused()
        self._send_queued()
        return commands

    def send_response(self, frames: list[bytes]) -> bool:
        """Push one multipart response; False (and logged) if the response socket cannot take it."""
        try:
            self._responses.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.responses_failed += 1
            logger.warning(
                "response socket full or not connected: a response of %d frames dropped", len(frames)
            )
            return False
        return True

    def close(self) -> None:
        """Close the sockets and the wake pipe; queued measurements are discarded."""
        for channel in self._channels.values():
            with contextlib.suppress(zmq.ZMQError):
                channel.socket.disable_monitor()
            channel.socket.close(linger=self.settings.linger_ms)
            channel.monitor.close(linger=0)
        self._channels.clear()
        with self._lock:  # a closed descriptor's number may be reused at once: never write to it
            for fd in (self._wake_read, self._wake_write):
                if fd >= 0:
                    os.close(fd)
            self._wake_read = self._wake_write = -1

    def _socket(self, kind: int, endpoint: str, name: str) -> zmq.Socket[bytes]:
        s = self.settings
        sock = self._context.socket(kind)
        sock.curve_secretkey = s.keys.secret.encode("ascii")  # type: ignore[union-attr]
        sock.curve_publickey = s.keys.public.encode("ascii")
        sock.curve_serverkey = s.server_public_key.encode("ascii")
        sock.setsockopt(zmq.LINGER, s.linger_ms)
        sock.setsockopt(zmq.RECONNECT_IVL, s.reconnect_ivl_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, s.reconnect_ivl_max_ms)
        sock.setsockopt(zmq.HEARTBEAT_IVL, s.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * s.heartbeat_ivl_ms)
        sock.setsockopt(zmq.SNDHWM, s.send_hwm)
        if kind == zmq.XPUB:
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.XPUB_NODROP, 1)
        monitor = sock.get_monitor_socket(_MONITORED)
        self._channels[monitor] = _Channel(name, endpoint, sock, monitor)
        self._poller.register(monitor, zmq.POLLIN)
        return sock

    def _read_subscriptions(self) -> None:
        topic = self.settings.measurement_topic
        while self._measurements.poll(0):
            message = self._measurements.recv()
            if not message or message[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
                continue
            prefix = message[1:]
            if not topic.startswith(prefix):
                continue
            was = self.subscribed
            if message[0] == _SUBSCRIBE:
                self._prefixes.add(prefix)
            else:
                self._prefixes.discard(prefix)
            if self.subscribed != was:
                logger.info(
                    "cloud %s measurements (%d queued)",
                    "subscribed to" if self.subscribed else "no longer listens to",
                    self.queued,
                )

    def _send_queued(self) -> None:
        if not self.subscribed:
            return
        topic = self.settings.measurement_topic
        while True:
            with self._lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
            try:
                self._measurements.send_multipart([topic, item[1]], zmq.NOBLOCK)
            except zmq.Again:  # the pipe is full (XPUB_NODROP): keep it for the next round
                with self._lock:
                    self._queue.appendleft(item)
                return
            self.sent += 1

    def _read_events(self, channel: _Channel) -> None:
        measurements = channel.socket is self._measurements
        while channel.monitor.poll(0):
            event = recv_monitor_message(channel.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                logger.info("connected: %s %s", channel.name, channel.endpoint)
                self.connections += measurements
                channel.backoff_s = 0.0
            elif event == zmq.EVENT_DISCONNECTED:
                logger.warning("disconnected: %s %s", channel.name, channel.endpoint)
                self.disconnections += measurements
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # a connection lost mid-handshake
                logger.warning("handshake interrupted: %s %s", channel.name, channel.endpoint)
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH):
                # libzmq gives up on an endpoint whose handshake was refused: connect again, backing off.
                self.refused += 1
                base_s = self.settings.reconnect_ivl_max_ms / 1000
                channel.backoff_s = min(
                    max(base_s, 2 * channel.backoff_s), self.settings.handshake_retry_max_s
                )
                channel.retry_at_s = time.monotonic() + channel.backoff_s
                logger.error(
                    "the cloud refused the handshake on %s %s (wrong server key, or this box's key not "
                    "allowed?); trying again in %.1f s",
                    channel.name,
                    channel.endpoint,
                    channel.backoff_s,
                )

    def _reconnect_refused(self) -> None:
        now_s = time.monotonic()
        for channel in self._channels.values():
            if channel.retry_at_s is not None and channel.retry_at_s <= now_s:
                channel.retry_at_s = None
                with contextlib.suppress(zmq.ZMQError):  # the failed connection may be gone already
                    channel.socket.disconnect(channel.endpoint)
                channel.socket.connect(channel.endpoint)
