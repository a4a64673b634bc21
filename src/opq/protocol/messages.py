"""Typed OPQ Box v3 messages (measurements, commands, responses) and their protobuf encoding.

The rest of opq uses these dataclasses and never the generated `opqbox3_pb2` classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opq.errors import ProtocolError
from opq.protocol import opqbox3_pb2 as pb
from opq.protocol._codec import parse_proto, real_value, text_value, uint_value
from opq.protocol.cycles import CYCLE_SAMPLES, RawCycle, decode_cycle, encode_cycle
from opq.protocol.topics import box_id_from_wire, wire_box_id

# The cycle codec is re-exported: a data response is a Response followed by cycles.
__all__ = [
    "CYCLE_SAMPLES",
    "BoxMeasurement",
    "Command",
    "CommandBody",
    "DataHeader",
    "ErrorResponse",
    "GetData",
    "GetInfo",
    "InfoResponse",
    "MetricStats",
    "PluginCommand",
    "PluginResponse",
    "RateResponse",
    "RawCycle",
    "Response",
    "ResponseBody",
    "SetMeasurementRate",
    "data_response_frames",
    "decode_command",
    "decode_cycle",
    "decode_measurement",
    "decode_response",
    "encode_command",
    "encode_cycle",
    "encode_measurement",
    "encode_response",
    "parse_data_response",
]

# --- measurements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricStats:
    """Minimum, maximum and average of one metric over a measurement window (float32 on the wire)."""

    min: float
    max: float
    average: float


@dataclass(frozen=True)
class BoxMeasurement:
    """One low-fidelity measurement from a box: metric name (`rms`, `f`, `thd`, `trans`) → stats."""

    box_id: str
    timestamp_ms: int
    metrics: Mapping[str, MetricStats]


def encode_measurement(m: BoxMeasurement) -> bytes:
    """Serialize a measurement as an `opq.opqbox3.Measurement`."""
    msg = pb.Measurement(
        box_id=wire_box_id(m.box_id), timestamp_ms=uint_value("timestamp_ms", m.timestamp_ms, 64)
    )
    for name, stats in m.metrics.items():
        entry = msg.metrics[text_value("metric name", name)]
        entry.min = real_value(f"{name}.min", stats.min)
        entry.max = real_value(f"{name}.max", stats.max)
        entry.average = real_value(f"{name}.average", stats.average)
    return msg.SerializeToString()


def decode_measurement(data: bytes) -> BoxMeasurement:
    """Parse an `opq.opqbox3.Measurement`; metric names and NaN values are kept as they are."""
    msg = parse_proto(pb.Measurement(), data, "Measurement")
    metrics = {
        name: MetricStats(min=stats.min, max=stats.max, average=stats.average)
        for name, stats in sorted(msg.metrics.items())
    }
    return BoxMeasurement(
        box_id=box_id_from_wire(msg.box_id, "Measurement"), timestamp_ms=msg.timestamp_ms, metrics=metrics
    )


# --- commands (cloud → box) -------------------------------------------------------------------------


@dataclass(frozen=True)
class GetInfo:
    """Ask a box for its addresses, uptime, calibration, key and measurement rate."""


@dataclass(frozen=True)
class GetData:
    """Ask a box for the raw cycles it holds with `start_ms < timestamp < end_ms` [ms since epoch]."""

    start_ms: int
    end_ms: int
    wait: bool = False


@dataclass(frozen=True)
class SetMeasurementRate:
    """Set how many cycles a box summarizes into one measurement [cycles]."""

    cycles: int


@dataclass(frozen=True)
class PluginCommand:
    """Pass a free-form message to the box plugin named `plugin_name`."""

    plugin_name: str
    message: str


CommandBody = GetInfo | GetData | SetMeasurementRate | PluginCommand


@dataclass(frozen=True)
class Command:
    """A command to one box: `seq` comes back in its `Response`; `identity` is the cloud's routing token."""

    seq: int
    box_id: str
    timestamp_ms: int
    identity: str
    body: CommandBody


def encode_command(c: Command) -> bytes:
    """Serialize a command as an `opq.opqbox3.Command`."""
    msg = pb.Command(
        seq=uint_value("seq", c.seq, 32),
        box_id=wire_box_id(c.box_id),
        timestamp_ms=uint_value("timestamp_ms", c.timestamp_ms, 64),
        identity=text_value("identity", c.identity),
    )
    body = c.body
    if isinstance(body, GetInfo):
        msg.info_command.SetInParent()
    elif isinstance(body, GetData):
        msg.data_command.SetInParent()
        msg.data_command.start_ms = uint_value("start_ms", body.start_ms, 64)
        msg.data_command.end_ms = uint_value("end_ms", body.end_ms, 64)
        msg.data_command.wait = bool(body.wait)
    elif isinstance(body, SetMeasurementRate):
        msg.sampling_rate_command.SetInParent()
        msg.sampling_rate_command.measurement_window_cycles = uint_value("cycles", body.cycles, 32)
    elif isinstance(body, PluginCommand):
        msg.send_command_to_plugin.SetInParent()
        msg.send_command_to_plugin.plugin_name = text_value("plugin_name", body.plugin_name)
        msg.send_command_to_plugin.message = text_value("message", body.message)
    else:
        raise ProtocolError(f"cannot encode a command with body {body!r}")
    return msg.SerializeToString()


def decode_command(data: bytes) -> Command:
    """Parse an `opq.opqbox3.Command`; one without a (known) body is malformed."""
    msg = parse_proto(pb.Command(), data, "Command")
    kind = msg.WhichOneof("command")
    body: CommandBody
    if kind == "info_command":
        body = GetInfo()
    elif kind == "data_command":
        d = msg.data_command
        body = GetData(start_ms=d.start_ms, end_ms=d.end_ms, wait=d.wait)
    elif kind == "sampling_rate_command":
        body = SetMeasurementRate(cycles=msg.sampling_rate_command.measurement_window_cycles)
    elif kind == "send_command_to_plugin":
        p = msg.send_command_to_plugin
        body = PluginCommand(plugin_name=p.plugin_name, message=p.message)
    else:
        raise ProtocolError("Command has no body (none of info, data, rate or plugin command is set)")
    return Command(
        seq=msg.seq,
        box_id=box_id_from_wire(msg.box_id, "Command"),
        timestamp_ms=msg.timestamp_ms,
        identity=msg.identity,
        body=body,
    )


# --- responses (box → cloud) ------------------------------------------------------------------------


@dataclass(frozen=True)
class InfoResponse:
    """What a box says about itself.

    `uptime_ms` is milliseconds as the proto documents, but an original OPQ Box sends seconds here.
    `calibration_constant` is ADC counts per volt, or None when the box does not say (an original box
    sends 0). The original field is an integer (uint64): it carries the value rounded, and the exact
    value travels in the added double field `calibration_counts_per_volt`, which decoding prefers.
    `measurement_rate` is the box's current cycles per measurement [cycles].
    """

    mac_addr: str
    wifi_network: str
    ip: str
    uptime_ms: int
    calibration_constant: float | None
    pub_key: str
    measurement_rate: int


@dataclass(frozen=True)
class RateResponse:
    """The measurement rate a box had before a `SetMeasurementRate` [cycles per measurement]."""

    old_rate_cycles: int


@dataclass(frozen=True)
class DataHeader:
    """First frame of a data response: timestamps of the first and last cycle sent (0, 0 if none) [ms]."""

    start_ts_ms: int
    end_ts_ms: int


@dataclass(frozen=True)
class PluginResponse:
    """Whether a box accepted a `PluginCommand`."""

    ok: bool


@dataclass(frozen=True)
class ErrorResponse:
    """A box could not carry out a command (malformed or unsupported); an opq addition to the protocol."""

    message: str


ResponseBody = InfoResponse | RateResponse | DataHeader | PluginResponse | ErrorResponse


@dataclass(frozen=True)
class Response:
    """A box's answer to the command with the same `seq`."""

    box_id: str
    seq: int
    timestamp_ms: int
    body: ResponseBody


def encode_response(r: Response) -> bytes:
    """Serialize a response as an `opq.opqbox3.Response`."""
    msg = pb.Response(
        box_id=wire_box_id(r.box_id),
        seq=uint_value("seq", r.seq, 32),
        timestamp_ms=uint_value("timestamp_ms", r.timestamp_ms, 64),
    )
    body = r.body
    if isinstance(body, InfoResponse):
        info = msg.info_response
        info.SetInParent()
        info.mac_addr = text_value("mac_addr", body.mac_addr)
        info.wifi_network = text_value("wifi_network", body.wifi_network)
        info.ip = text_value("ip", body.ip)
        info.uptime = uint_value("uptime_ms", body.uptime_ms, 64)
        info.pub_key = text_value("pub_key", body.pub_key)
        info.measurement_rate = uint_value("measurement_rate", body.measurement_rate, 32)
        calibration = body.calibration_constant
        if calibration is not None:
            if not (math.isfinite(calibration) and 0 < calibration < 2**63):
                raise ProtocolError(f"calibration constant {calibration} must be a positive number")
            info.calibration_constant = round(calibration)
            info.calibration_counts_per_volt = float(calibration)
    elif isinstance(body, RateResponse):
        msg.message_rate_reponse.SetInParent()
        msg.message_rate_reponse.old_rate_cycles = uint_value("old_rate_cycles", body.old_rate_cycles, 32)
    elif isinstance(body, DataHeader):
        msg.get_data_response.SetInParent()
        msg.get_data_response.start_ts = uint_value("start_ts_ms", body.start_ts_ms, 64)
        msg.get_data_response.end_ts = uint_value("end_ts_ms", body.end_ts_ms, 64)
    elif isinstance(body, PluginResponse):
        msg.command_to_plugin_response.SetInParent()
        msg.command_to_plugin_response.ok = bool(body.ok)
    elif isinstance(body, ErrorResponse):
        msg.error = text_value("error message", body.message)
    else:
        raise ProtocolError(f"cannot encode a response with body {body!r}")
    return msg.SerializeToString()


def decode_response(data: bytes) -> Response:
    """Parse an `opq.opqbox3.Response`; one without a (known) body is malformed."""
    msg = parse_proto(pb.Response(), data, "Response")
    kind = msg.WhichOneof("response")
    body: ResponseBody
    if kind == "info_response":
        body = _info_from_proto(msg.info_response)
    elif kind == "message_rate_reponse":
        body = RateResponse(old_rate_cycles=msg.message_rate_reponse.old_rate_cycles)
    elif kind == "get_data_response":
        h = msg.get_data_response
        body = DataHeader(start_ts_ms=h.start_ts, end_ts_ms=h.end_ts)
    elif kind == "command_to_plugin_response":
        body = PluginResponse(ok=msg.command_to_plugin_response.ok)
    elif kind == "error":
        body = ErrorResponse(message=msg.error)
    else:
        raise ProtocolError("Response has no body (none of info, rate, data, plugin or error is set)")
    return Response(
        box_id=box_id_from_wire(msg.box_id, "Response"), seq=msg.seq, timestamp_ms=msg.timestamp_ms, body=body
    )


def _info_from_proto(info: pb.GetInfoResponse) -> InfoResponse:
    exact = info.calibration_counts_per_volt
    calibration: float | None
    if exact != 0:
        if not (math.isfinite(exact) and exact > 0):
            raise ProtocolError(f"malformed Response: calibration constant {exact} is not a positive number")
        calibration = exact
    else:
        calibration = float(info.calibration_constant) if info.calibration_constant else None
    return InfoResponse(
        mac_addr=info.mac_addr,
        wifi_network=info.wifi_network,
        ip=info.ip,
        uptime_ms=info.uptime,
        calibration_constant=calibration,
        pub_key=info.pub_key,
        measurement_rate=info.measurement_rate,
    )


# --- multipart data response ------------------------------------------------------------------------


def data_response_frames(
    response: Response, cycles: Sequence[RawCycle], *, legacy: bool = False
) -> list[bytes]:
    """The frames a box pushes for a data command: the `DataHeader` response, then one frame per cycle."""
    if not isinstance(response.body, DataHeader):
        raise ProtocolError(f"a data response starts with a DataHeader, not {type(response.body).__name__}")
    return [encode_response(response), *(encode_cycle(c, legacy=legacy) for c in cycles)]


def parse_data_response(frames: Sequence[bytes]) -> tuple[Response, list[RawCycle]]:
    """Split a multipart response into the `Response` and its cycles.

    Any response may be given: one whose body is not a `DataHeader` must come alone (no cycles).
    """
    if not frames:
        raise ProtocolError("malformed Response: the message has no frames")
    response = decode_response(frames[0])
    if not isinstance(response.body, DataHeader) and len(frames) > 1:
        raise ProtocolError(
            f"malformed Response: a {type(response.body).__name__} came with {len(frames) - 1} more frames"
        )
    return response, [decode_cycle(frame) for frame in frames[1:]]
