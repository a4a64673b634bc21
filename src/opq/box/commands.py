"""The box's command processor: from the cloud's command frames to the response frames, no sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from opq.box.ringbuffer import CYCLE_DURATION_MS, RingBuffer
from opq.clock import wall_clock_ms
from opq.errors import ProtocolError
from opq.protocol import (
    Command,
    DataHeader,
    ErrorResponse,
    GetData,
    GetInfo,
    InfoResponse,
    PluginCommand,
    PluginResponse,
    RateResponse,
    RawCycle,
    Response,
    ResponseBody,
    SetMeasurementRate,
    command_is_for,
    command_topic,
    data_response_frames,
    decode_command,
    encode_response,
)
from opq.protocol import opqbox3_pb2 as pb

logger = logging.getLogger(__name__)

MAX_WAIT_S: Final = 60.0
"""Longest a `GetData` with `wait` is held for its end to arrive [s]; then what there is is sent."""

WAIT_GRACE_S: Final = 2.0
"""Time allowed beyond the requested end for the cycles to arrive [s]."""


class RateControl(Protocol):
    """What the command processor changes: `opq.box.measuring.MeasurementBuilder`."""

    @property
    def cycles_per_measurement(self) -> int: ...

    def set_rate(self, cycles: int) -> int: ...


@dataclass(frozen=True)
class BoxInfo:
    """What a box says about itself in a `GetInfo` response, besides its rate and uptime."""

    box_id: str
    public_key: str
    calibration_constant: float
    """ADC counts per volt [counts/V]."""
    ip: str = ""
    mac_addr: str = ""
    wifi_network: str = ""


@dataclass(frozen=True)
class Reply:
    """Frames to push to the cloud's response socket (one multipart message)."""

    frames: list[bytes]


@dataclass(frozen=True)
class Deferred:
    """A `GetData` with `wait` whose end has not been sampled yet: pass it to `resume` until it answers."""

    command: Command
    request: GetData
    deadline_s: float
    """When to answer with what there is anyway [s, on the handler's monotonic clock]."""


@dataclass(frozen=True)
class Ignored:
    """Frames that need no answer: another box's command, or one that cannot be read at all."""

    reason: str
    malformed: bool = False


Outcome = Reply | Deferred | Ignored


class CommandHandler:
    """Answers the cloud's commands for one box from its ring buffer and measurement builder.

    Only commands whose topic frame is exactly this box's and whose `box_id` is this box's are
    obeyed (a ZeroMQ prefix match also delivers box 10's commands to box 1). A command that cannot
    be carried out, or cannot be decoded but still shows this box's id and a `seq`, gets an
    `ErrorResponse`; one without a readable `seq` is only counted and logged. Counters:
    `handled`, `ignored`, `malformed`.
    """

    def __init__(
        self,
        info: BoxInfo,
        buffer: RingBuffer,
        rate: RateControl,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        monotonic_s: Callable[[], float] = time.monotonic,
        max_wait_s: float = MAX_WAIT_S,
        legacy_cycles: bool = False,
    ) -> None:
        self.info = info
        self.buffer = buffer
        self.rate = rate
        self._clock_ms = clock_ms
        self._monotonic_s = monotonic_s
        self._started_s = monotonic_s()
        self._max_wait_s = max_wait_s
        self._legacy_cycles = legacy_cycles
        self._topic = command_topic(info.box_id)
        self.handled = 0
        self.ignored = 0
        self.malformed = 0

    def handle(self, frames: Sequence[bytes]) -> Outcome:
        """What to do about one message received on the command socket: `[topic, Command]`."""
        if len(frames) != 2:
            return self._ignore(f"a command message has 2 frames, this one {len(frames)}", malformed=True)
        topic, payload = frames
        if topic != self._topic:
            return self._ignore(f"topic {topic[:20]!r} is another box's")
        try:
            command = decode_command(payload)
        except ProtocolError as err:
            return self._undecodable(payload, err)
        if not command_is_for(command, self.info.box_id):
            return self._ignore(f"command {command.seq} is for box {command.box_id}")
        self.handled += 1
        body = command.body
        if isinstance(body, GetData):
            return self._get_data(command, body)
        return Reply([encode_response(self._response(command, self._answer(command)))])

    def resume(self, deferred: Deferred, *, force: bool = False) -> Reply | None:
        """The answer to a deferred `GetData` once its end is buffered, its deadline passed, or `force`."""
        if force or self._reached(deferred.request.end_ms) or self._monotonic_s() >= deferred.deadline_s:
            return self._data_reply(deferred.command, deferred.request)
        return None

    def _answer(self, command: Command) -> ResponseBody:
        body = command.body
        if isinstance(body, GetInfo):
            return InfoResponse(
                mac_addr=self.info.mac_addr,
                wifi_network=self.info.wifi_network,
                ip=self.info.ip,
                uptime_ms=round(1000 * (self._monotonic_s() - self._started_s)),
                calibration_constant=self.info.calibration_constant,
                pub_key=self.info.public_key,
                measurement_rate=self.rate.cycles_per_measurement,
            )
        if isinstance(body, SetMeasurementRate):
            try:
                old = self.rate.set_rate(body.cycles)
            except ValueError as err:
                return self._error(command, str(err))
            logger.info("box %s: measurement rate %d → %d cycles", self.info.box_id, old, body.cycles)
            return RateResponse(old_rate_cycles=old)
        if isinstance(body, PluginCommand):
            # PluginResponse(ok=False) rather than an ErrorResponse: an original cloud can read it.
            logger.warning(
                "box %s has no plugin %r (command %d)", self.info.box_id, body.plugin_name, command.seq
            )
            return PluginResponse(ok=False)
        return self._error(command, f"unsupported command {type(body).__name__}")

    def _get_data(self, command: Command, request: GetData) -> Outcome:
        if request.end_ms < request.start_ms:
            error = self._error(
                command, f"GetData ends ({request.end_ms}) before it starts ({request.start_ms})"
            )
            return Reply([encode_response(self._response(command, error))])
        if request.wait and not self._reached(request.end_ms):
            newest_ms = self.buffer.newest_timestamp_ms
            ahead_s = (request.end_ms - (self._clock_ms() if newest_ms is None else newest_ms)) / 1000
            wait_s = min(self._max_wait_s, max(0.0, ahead_s) + WAIT_GRACE_S)
            return Deferred(command, request, self._monotonic_s() + wait_s)
        return self._data_reply(command, request)

    def _data_reply(self, command: Command, request: GetData) -> Reply:
        found = self.buffer.cycles_between(request.start_ms, request.end_ms)
        cycles = [
            RawCycle(timestamp_ms=int(t), counts=c)
            for t, c in zip(found.timestamps_ms, found.counts, strict=True)
        ]
        header = DataHeader(cycles[0].timestamp_ms, cycles[-1].timestamp_ms) if cycles else DataHeader(0, 0)
        response = self._response(command, header)
        return Reply(data_response_frames(response, cycles, legacy=self._legacy_cycles))

    def _reached(self, end_ms: int) -> bool:
        """Whether the buffer holds the cycle that contains `end_ms`, or a later one."""
        newest_ms = self.buffer.newest_timestamp_ms
        return newest_ms is not None and newest_ms + CYCLE_DURATION_MS > end_ms

    def _response(self, command: Command, body: ResponseBody) -> Response:
        return Response(box_id=self.info.box_id, seq=command.seq, timestamp_ms=self._clock_ms(), body=body)

    def _error(self, command: Command, message: str) -> ErrorResponse:
        logger.warning("box %s refuses command %d: %s", self.info.box_id, command.seq, message)
        return ErrorResponse(message)

    def _ignore(self, reason: str, *, malformed: bool = False) -> Ignored:
        if malformed:
            self.malformed += 1
            logger.warning("box %s: dropped a malformed command: %s", self.info.box_id, reason)
        else:
            self.ignored += 1
            logger.debug("box %s: ignored a command: %s", self.info.box_id, reason)
        return Ignored(reason, malformed)

    def _undecodable(self, payload: bytes, err: ProtocolError) -> Outcome:
        """An ErrorResponse if the bytes still show this box's id and a seq, else a logged drop."""
        header = _command_header(payload)
        if header is None:
            return self._ignore(str(err), malformed=True)
        seq, box_id = header
        if box_id != self.info.box_id:
            return self._ignore(f"undecodable command {seq} is for box {box_id}")
        self.malformed += 1
        logger.warning("box %s: malformed command %d: %s", self.info.box_id, seq, err)
        response = Response(
            self.info.box_id, seq, self._clock_ms(), ErrorResponse(f"malformed command: {err}")
        )
        return Reply([encode_response(response)])


def _command_header(payload: bytes) -> tuple[int, str] | None:
    """(seq, box id) of a Command that `decode_command` refused, if its header fields can be read.

    The protobuf parse of `opq.protocol` rejects a command without a known body (a newer cloud's
    command, say); its `seq` and `box_id` are still there to address an ErrorResponse to.
    """
    message = pb.Command()
    try:
        message.ParseFromString(payload)
    except (DecodeError, TypeError):
        return None
    if message.box_id < 0:
        return None
    return message.seq, str(message.box_id)
