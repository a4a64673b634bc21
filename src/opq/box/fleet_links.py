"""A fleet shard's sockets to the cloud: measurements without loss on many XPUBs, commands from many SUBs.

Thousands of sockets are waited on with an epoll set of their ZeroMQ descriptors (`zmq.Poller`
walks every socket on every call). A socket's descriptor signals that its commands changed, not
that a message waits, and any operation on the socket may consume that signal: so a socket is
read until `ZMQ_EVENTS` says nothing waits, its events are checked again after each send, and a
sweep over all of them every second catches anything missed.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Final, cast

import zmq

from opq.box.commands import CommandHandler, Deferred, Reply

logger = logging.getLogger(__name__)

_SUBSCRIBE: Final = 1
_UNSUBSCRIBE: Final = 0
SWEEP_S: Final = 1.0
"""How often every socket's events are checked, in case a descriptor's signal was missed [s]."""
_MAX_DEFERRED: Final = 64
# pyzmq's flags as plain ints: combining its flag enums costs more than the send itself (1.5 µs a
# message of two frames, measured), which ten thousand boxes pay 60,000 times a second.
_SEND_MORE: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
_SEND_LAST: Final = int(zmq.NOBLOCK)
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)


@dataclass(frozen=True)
class QueueBounds:
    """How much a box keeps while the cloud does not listen: the older end is dropped and counted."""

    seconds: float
    """Of measurement time [s]."""
    count: int


class PacedConnector:
    """Connects sockets a few at a time, `per_s` a second after a first `burst`.

    Thousands of boxes connecting at once overflow the cloud's accept backlog (ZMQ_BACKLOG is
    100 by default): refused SYNs are retried after 1, 3, 7, 15 s..., and handshakes that wait
    longer than ZMQ_HANDSHAKE_IVL (30 s) are dropped and begun again. Each thread connects its own
    sockets (ZeroMQ sockets are not thread-safe); until a box is connected it queues.
    """

    def __init__(self, sockets: list[tuple[zmq.Socket[bytes], str]], per_s: float, burst: int) -> None:
        self._sockets = sockets
        self._per_s, self._burst = per_s, burst
        self._started_s = time.monotonic()
        self.connected = 0

    @property
    def done(self) -> bool:
        """Whether every socket has been connected."""
        return self.connected >= len(self._sockets)

    def connect_due(self) -> None:
        """Connect the sockets whose turn has come."""
        if self.done:
            return
        due = self._burst + int((time.monotonic() - self._started_s) * self._per_s)
        for sock, endpoint in self._sockets[self.connected : min(due, len(self._sockets))]:
            sock.connect(endpoint)
        self.connected = max(self.connected, min(due, len(self._sockets)))


def _readable(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message waits (this also processes the socket's pending commands)."""
    return bool(cast(int, sock.getsockopt(_EVENTS)) & _POLLIN)


class Publisher:
    """The shard's measurement sockets: send while subscribed, queue otherwise (Link's no-loss rule)."""

    def __init__(
        self,
        sockets: list[zmq.Socket[bytes]],
        topics: list[bytes],
        bounds: QueueBounds,
        connector: PacedConnector,
    ) -> None:
        self.sockets = sockets
        self.connector = connector
        self._topics = topics
        self._bounds = bounds
        self._queues: list[deque[tuple[int, bytes]]] = [deque() for _ in sockets]
        self._prefixes: list[set[bytes]] = [set() for _ in sockets]
        self.subscribed = [False] * len(sockets)
        self._backlog: set[int] = set()
        self._epoll = select.epoll()
        self._by_fd: dict[int, int] = {}
        for box, sock in enumerate(sockets):
            fd = sock.fileno()
            self._by_fd[fd] = box
            self._epoll.register(fd, select.EPOLLIN)
        self.sent = 0
        self.dropped = 0
        self.queued = 0

    def close(self) -> None:
        """Close the epoll set (the sockets are the shard's to close)."""
        self._epoll.close()

    def publish(self, box: int, timestamp_ms: int, payload: bytes) -> bool:
        """Send a measurement now if the cloud listens and nothing older waits, else queue it."""
        if self.subscribed[box] and not self._queues[box]:
            sock = self.sockets[box]
            try:
                sock.send(self._topics[box], _SEND_MORE)
            except zmq.Again:  # the pipe is full (XPUB_NODROP): keep it for later
                pass
            else:
                sock.send(payload, _SEND_LAST)  # a message's later frames always go with the first
                self.sent += 1
                # A send processes the socket's pending commands and may reset its descriptor,
                # so an (un)subscription that arrived meanwhile is looked for here.
                if _readable(sock):
                    self._read_subscriptions(box)
                return True
        self._enqueue(box, timestamp_ms, payload)
        return False

    def poll(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for (un)subscriptions, then send what waits for a listening cloud."""
        self.connector.connect_due()
        if self._backlog:
            self._send_backlog()
        if self._backlog or not self.connector.done:  # a full pipe, or sockets to connect: come back soon
            timeout_s = min(timeout_s, 0.005)
        with contextlib.suppress(InterruptedError):
            for fd, _ in self._epoll.poll(timeout_s):
                self._read_subscriptions(self._by_fd[fd])
        if self._backlog:
            self._send_backlog()

    def sweep(self) -> None:
        """Read every socket's pending events (a safety net for a missed epoll edge)."""
        for box, sock in enumerate(self.sockets):
            if _readable(sock):
                self._read_subscriptions(box)

    def _enqueue(self, box: int, timestamp_ms: int, payload: bytes) -> None:
        queue = self._queues[box]
        queue.append((timestamp_ms, payload))
        self.queued += 1
        horizon_ms = timestamp_ms - 1000 * self._bounds.seconds
        while len(queue) > self._bounds.count or queue[0][0] < horizon_ms:
            queue.popleft()
            self.queued -= 1
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                logger.warning("fleet: %d measurements dropped from full queues so far", self.dropped)
        if self.subscribed[box]:
            self._backlog.add(box)

    def _read_subscriptions(self, box: int) -> None:
        sock, topic, prefixes = self.sockets[box], self._topics[box], self._prefixes[box]
        while _readable(sock):
            message = sock.recv(zmq.NOBLOCK)
            if (
                not message
                or message[0] not in (_SUBSCRIBE, _UNSUBSCRIBE)
                or not topic.startswith(message[1:])
            ):
                continue
            if message[0] == _SUBSCRIBE:
                prefixes.add(message[1:])
            else:
                prefixes.discard(message[1:])
        self.subscribed[box] = bool(prefixes)
        if self.subscribed[box] and self._queues[box]:
            self._backlog.add(box)

    def _send_backlog(self) -> None:
        for box in list(self._backlog):
            queue, sock = self._queues[box], self.sockets[box]
            while queue and self.subscribed[box]:
                try:
                    sock.send(self._topics[box], _SEND_MORE)
                except zmq.Again:
                    break
                sock.send(queue.popleft()[1], _SEND_LAST)
                self.queued -= 1
                self.sent += 1
            if not queue or not self.subscribed[box]:
                self._backlog.discard(box)
            if _readable(sock):
                self._read_subscriptions(box)


class CommandServer:
    """The shard's command loop: one thread, one epoll set over all the boxes' SUB sockets."""

    def __init__(
        self,
        subs: list[zmq.Socket[bytes]],
        pushes: list[zmq.Socket[bytes]],
        handlers: list[CommandHandler],
        connector: PacedConnector,
    ) -> None:
        self._subs, self._pushes, self._handlers = subs, pushes, handlers
        self._connector = connector
        self._by_fd = {sock.fileno(): box for box, sock in enumerate(subs)}
        self._deferred: list[tuple[int, Deferred]] = []
        self.failed = 0
        self.responses_failed = 0

    def run(self, stop: threading.Event) -> None:
        epoll = select.epoll()
        for fd in self._by_fd:
            epoll.register(fd, select.EPOLLIN)
        next_sweep = time.monotonic() + SWEEP_S
        try:
            while not stop.is_set():
                try:
                    self._connector.connect_due()
                    busy = self._deferred or not self._connector.done
                    for fd, _ in epoll.poll(0.01 if busy else 0.2):
                        self._drain(self._by_fd[fd])
                    if time.monotonic() >= next_sweep:
                        next_sweep += SWEEP_S
                        for box in range(len(self._subs)):
                            self._drain(box)
                    self._deferred = [(box, d) for box, d in self._deferred if not self._resumed(box, d)]
                except Exception:
                    self.failed += 1
                    logger.exception("fleet command loop failed; carrying on")
                    stop.wait(0.1)
        finally:
            epoll.close()

    def _drain(self, box: int) -> None:
        sock = self._subs[box]
        while _readable(sock):
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                outcome = self._handlers[box].handle(frames)
            except Exception:
                self.failed += 1
                logger.exception("box %s: a command failed", self._handlers[box].info.box_id)
                continue
            if isinstance(outcome, Reply):
                self._respond(box, outcome.frames)
            elif isinstance(outcome, Deferred):
                self._deferred.append((box, outcome))
                if len(self._deferred) > _MAX_DEFERRED:
                    self._resumed(*self._deferred.pop(0), force=True)

    def _resumed(self, box: int, deferred: Deferred, *, force: bool = False) -> bool:
        reply = self._handlers[box].resume(deferred, force=force)
        if reply is None:
            return False
        self._respond(box, reply.frames)
        return True

    def _respond(self, box: int, frames: list[bytes]) -> None:
        try:
            self._pushes[box].send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.responses_failed += 1
            box_id = self._handlers[box].info.box_id
            logger.warning("box %s: response socket full or not connected; a response dropped", box_id)
