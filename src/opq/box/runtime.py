"""A running box: a sampler thread (source → buffer → measurements) and a link thread (sockets, commands)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Final

import zmq

from opq.box.commands import BoxInfo, CommandHandler, Deferred, Reply
from opq.box.config import BoxConfig
from opq.box.link import Link, LinkSettings
from opq.box.measuring import MeasurementBuilder
from opq.box.ringbuffer import CYCLE_DURATION_MS, RingBuffer
from opq.box.source import SampleSource, SourceCycle
from opq.protocol import command_topic, encode_measurement, measurement_topic

logger = logging.getLogger(__name__)

MAX_DEFERRED: Final = 64
"""Most `GetData` requests held waiting at once; another one is answered at once with what there is."""

_IDLE_POLL_MS: Final = 200
_WAITING_POLL_MS: Final = 20


@dataclass(frozen=True)
class BoxCounters:
    """What a box has done so far, for tests, logs and health."""

    cycles: int
    cycles_failed: int
    measurements_built: int
    measurements_sent: int
    measurements_queued: int
    measurements_dropped: int
    commands_handled: int
    commands_ignored: int
    commands_malformed: int
    commands_failed: int
    responses_failed: int
    connections: int
    disconnections: int
    handshakes_refused: int
    subscribed: bool
    source_done: bool


def link_settings(config: BoxConfig) -> LinkSettings:
    """The link settings of a box configuration (reads the key files)."""
    return LinkSettings(
        measurement_endpoint=config.endpoint(config.measurement_port),
        command_endpoint=config.endpoint(config.command_port),
        response_endpoint=config.endpoint(config.response_port),
        keys=config.box_keys(),
        server_public_key=config.server_key(),
        measurement_topic=measurement_topic(config.box_id),
        command_topic=command_topic(config.box_id),
        queue_seconds=config.queue_seconds,
    )


class Box:
    """One box: `start()` runs it, `stop()` joins its threads and closes its sockets.

    With `realtime` (the configuration's by default) cycles are taken no faster than their timestamps
    advance, as a simulated or replayed supply must be; a device source blocks on its reads and needs
    no pacing. When the source ends, the last measurement is flushed and the box keeps answering
    commands until stopped.
    """

    def __init__(
        self,
        config: BoxConfig,
        source: SampleSource,
        *,
        realtime: bool | None = None,
        settings: LinkSettings | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        settings = settings or link_settings(config)
        calibration = source.calibration_constant
        if calibration != config.calibration_constant:
            logger.warning(
                "box %s: the source's calibration %g counts/V wins over the configuration's %g",
                config.box_id,
                calibration,
                config.calibration_constant,
            )
        self.config = config
        self.buffer = RingBuffer.for_duration(config.buffer_seconds)
        self.builder = MeasurementBuilder(config.box_id, calibration, config.cycles_per_measurement)
        info = BoxInfo(
            box_id=config.box_id,
            public_key=settings.keys.public,
            calibration_constant=calibration,
            ip=_local_address(config.cloud_host, config.measurement_port),
            mac_addr=_mac_address(),
        )
        self.handler = CommandHandler(info, self.buffer, self.builder, legacy_cycles=config.legacy_cycles)
        self._source = source
        self._realtime = config.realtime if realtime is None else realtime
        self._own_context = context is None
        self._context = context or zmq.Context()
        self.link = Link(settings, self._context)
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample, name=f"box-{config.box_id}-sampler", daemon=True),
            threading.Thread(target=self._serve, name=f"box-{config.box_id}-link", daemon=True),
        ]
        self._cycles = 0
        self._cycles_failed = 0
        self._built = 0
        self._commands_failed = 0

    def __enter__(self) -> Box:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start sampling and talking to the cloud."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop both threads, close the sockets (and the context if the box made it)."""
        self._stop.set()
        self.link.wake()
        if self._threads[1].ident is None:  # never started: the link thread would have closed the link
            self.link.close()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    logger.warning("box %s: thread %s did not stop in time", self.config.box_id, thread.name)
        if self._own_context and not self._threads[1].is_alive():
            self._context.term()

    def wait_source_done(self, timeout_s: float | None = None) -> bool:
        """Wait until the source has ended (a finite replay or test source); False on timeout."""
        return self._source_done.wait(timeout_s)

    @property
    def counters(self) -> BoxCounters:
        """A snapshot of the counters."""
        link, handler = self.link, self.handler
        return BoxCounters(
            cycles=self._cycles,
            cycles_failed=self._cycles_failed,
            measurements_built=self._built,
            measurements_sent=link.sent,
            measurements_queued=link.queued,
            measurements_dropped=link.dropped,
            commands_handled=handler.handled,
            commands_ignored=handler.ignored,
            commands_malformed=handler.malformed,
            commands_failed=self._commands_failed,
            responses_failed=link.responses_failed,
            connections=link.connections,
            disconnections=link.disconnections,
            handshakes_refused=link.refused,
            subscribed=link.subscribed,
            source_done=self._source_done.is_set(),
        )

    def _sample(self) -> None:
        anchor: tuple[float, float] | None = None  # (monotonic s, cycle end ms) of the first cycle
        try:
            for cycle in self._source.cycles():
                if self._stop.is_set():
                    return
                if self._realtime:
                    end_ms = cycle.timestamp_ms + CYCLE_DURATION_MS
                    if anchor is None:
                        anchor = (time.monotonic(), end_ms)
                    delay_s = anchor[0] + (end_ms - anchor[1]) / 1000 - time.monotonic()
                    if delay_s > 0 and self._stop.wait(delay_s):
                        return
                self._take(cycle)
        except Exception:
            logger.exception("box %s: the source failed; no more cycles", self.config.box_id)
        finally:
            last = self.builder.flush()
            if last is not None:
                self._built += 1
                self.link.publish(last.timestamp_ms, encode_measurement(last))
            self._source_done.set()

    def _take(self, cycle: SourceCycle) -> None:
        try:
            self.buffer.append(cycle)
            measurement = self.builder.add(cycle)
            if measurement is not None:
                self._built += 1
                self.link.publish(measurement.timestamp_ms, encode_measurement(measurement))
        except Exception:
            self._cycles_failed += 1
            logger.exception("box %s: cycle at %d ms failed", self.config.box_id, cycle.timestamp_ms)
        self._cycles += 1

    def _serve(self) -> None:
        deferred: list[Deferred] = []
        try:
            self.link.open()
            while not self._stop.is_set():
                try:
                    for frames in self.link.poll(_WAITING_POLL_MS if deferred else _IDLE_POLL_MS):
                        self._command(frames, deferred)
                    deferred = [d for d in deferred if not self._resumed(d)]
                except Exception:
                    self._commands_failed += 1
                    logger.exception("box %s: link loop failed; carrying on", self.config.box_id)
                    self._stop.wait(0.1)
        finally:
            self.link.close()

    def _command(self, frames: list[bytes], deferred: list[Deferred]) -> None:
        try:
            outcome = self.handler.handle(frames)
        except Exception:
            self._commands_failed += 1
            logger.exception("box %s: a command failed", self.config.box_id)
            return
        if isinstance(outcome, Reply):
            self.link.send_response(outcome.frames)
        elif isinstance(outcome, Deferred):
            deferred.append(outcome)
            if len(deferred) > MAX_DEFERRED:
                self._resumed(deferred.pop(0), force=True)

    def _resumed(self, waiting: Deferred, *, force: bool = False) -> bool:
        reply = self.handler.resume(waiting, force=force)
        if reply is None:
            return False
        self.link.send_response(reply.frames)
        return True


def _local_address(host: str, port: int) -> str:
    """The address this machine reaches `host` from (no packet is sent), or "" if unknown."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except OSError:
        return ""


def _mac_address() -> str:
    """This machine's MAC address as aa:bb:cc:dd:ee:ff, or "" if Python had to make one up."""
    node = uuid.getnode()
    if node >> 40 & 1:  # the multicast bit marks a random stand-in
        return ""
    return ":".join(f"{node >> shift & 0xFF:02x}" for shift in range(40, -1, -8))
