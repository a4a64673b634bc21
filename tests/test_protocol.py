"""Tests of the OPQ Box v3 wire messages: round trips, compatibility with original boxes, malformed input."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain.constants import SAMPLES_PER_CYCLE
from opq.errors import ProtocolError
from opq.protocol import (
    CYCLE_SAMPLES,
    BoxMeasurement,
    Command,
    DataHeader,
    ErrorResponse,
    GetData,
    GetInfo,
    InfoResponse,
    MetricStats,
    PluginCommand,
    PluginResponse,
    RateResponse,
    RawCycle,
    Response,
    SetMeasurementRate,
    command_is_for,
    command_topic,
    data_response_frames,
    decode_command,
    decode_cycle,
    decode_measurement,
    decode_response,
    encode_command,
    encode_cycle,
    encode_measurement,
    encode_response,
    measurement_topic,
    parse_data_response,
)
from opq.protocol import opqbox3_pb2 as pb

FEW = settings(max_examples=25, deadline=None)

box_ids = st.integers(min_value=0, max_value=2**31 - 1).map(str)
timestamps_ms = st.integers(min_value=0, max_value=2**64 - 1)
float32s = st.floats(width=32, allow_nan=False)
metric_stats = st.builds(MetricStats, min=float32s, max=float32s, average=float32s)
count_arrays = st.lists(
    st.integers(min_value=-(2**15), max_value=2**15 - 1), min_size=CYCLE_SAMPLES, max_size=CYCLE_SAMPLES
).map(lambda values: np.array(values, dtype=np.int16))


def sine_counts(amplitude: float = 24_000.0) -> np.ndarray:
    phase = 2 * np.pi * np.arange(CYCLE_SAMPLES) / CYCLE_SAMPLES
    return np.round(amplitude * np.sin(phase)).astype(np.int16)


# --- round trips ------------------------------------------------------------------------------------


@FEW
@given(
    box_id=box_ids,
    timestamp_ms=timestamps_ms,
    metrics=st.dictionaries(st.text(max_size=8), metric_stats, max_size=5),
)
def test_measurement_round_trips(box_id: str, timestamp_ms: int, metrics: dict[str, MetricStats]) -> None:
    m = BoxMeasurement(box_id=box_id, timestamp_ms=timestamp_ms, metrics=metrics)
    assert decode_measurement(encode_measurement(m)) == m


def test_measurement_values_travel_as_float32_and_nan_and_unknown_keys_pass_through() -> None:
    m = BoxMeasurement(
        box_id="1001",
        timestamp_ms=1_600_000_000_000,
        metrics={"rms": MetricStats(119.9, 120.1, 0.1), "weird": MetricStats(math.nan, 1.0, 2.0)},
    )
    decoded = decode_measurement(encode_measurement(m))
    assert set(decoded.metrics) == {"rms", "weird"}
    assert decoded.metrics["rms"].average == float(np.float32(0.1))
    assert math.isnan(decoded.metrics["weird"].min)


COMMAND_BODIES = [
    pytest.param(GetInfo(), id="info"),
    pytest.param(GetData(start_ms=1_600_000_000_000, end_ms=1_600_000_000_500, wait=True), id="data"),
    pytest.param(GetData(start_ms=0, end_ms=0), id="data-zero"),
    pytest.param(SetMeasurementRate(cycles=60), id="rate"),
    pytest.param(SetMeasurementRate(cycles=0), id="rate-zero"),
    pytest.param(PluginCommand(plugin_name="print", message="héllo"), id="plugin"),
]


@pytest.mark.parametrize("body", COMMAND_BODIES)
def test_command_round_trips(body: GetInfo | GetData | SetMeasurementRate | PluginCommand) -> None:
    c = Command(seq=2**32 - 1, box_id="7", timestamp_ms=1_600_000_000_123, identity="makai-1", body=body)
    assert decode_command(encode_command(c)) == c


RESPONSE_BODIES = [
    pytest.param(
        InfoResponse(
            mac_addr="b8:27:eb:00:00:01",
            wifi_network="home",
            ip="10.0.0.7\nfe80::1",
            uptime_ms=86_400_000,
            calibration_constant=152.5,
            pub_key="x" * 40,
            measurement_rate=60,
        ),
        id="info",
    ),
    pytest.param(InfoResponse("", "", "", 0, None, "", 0), id="info-empty"),
    pytest.param(RateResponse(old_rate_cycles=60), id="rate"),
    pytest.param(RateResponse(old_rate_cycles=0), id="rate-zero"),
    pytest.param(DataHeader(start_ts_ms=5, end_ts_ms=10), id="data"),
    pytest.param(DataHeader(start_ts_ms=0, end_ts_ms=0), id="data-none"),
    pytest.param(PluginResponse(ok=True), id="plugin"),
    pytest.param(PluginResponse(ok=False), id="plugin-false"),
    pytest.param(ErrorResponse(message="unsupported command"), id="error"),
    pytest.param(ErrorResponse(message=""), id="error-empty"),
]


@pytest.mark.parametrize("body", RESPONSE_BODIES)
def test_response_round_trips(body: InfoResponse) -> None:
    r = Response(box_id="2147483647", seq=9, timestamp_ms=1_600_000_000_999, body=body)
    assert decode_response(encode_response(r)) == r


@FEW
@given(timestamp_ms=timestamps_ms, counts=count_arrays, legacy=st.booleans())
def test_cycle_round_trips(timestamp_ms: int, counts: np.ndarray, legacy: bool) -> None:
    cycle = RawCycle(timestamp_ms=timestamp_ms, counts=counts)
    decoded = decode_cycle(encode_cycle(cycle, legacy=legacy))
    assert decoded == cycle
    assert decoded.counts.dtype == np.int16


def test_cycle_compact_encoding_is_400_bytes_of_samples_and_legacy_is_larger() -> None:
    cycle = RawCycle(timestamp_ms=1, counts=sine_counts())
    compact, legacy = encode_cycle(cycle), encode_cycle(cycle, legacy=True)
    assert pb.Cycle.FromString(compact).samples_le == cycle.counts.astype("<i2").tobytes()
    assert list(pb.Cycle.FromString(legacy).datapoints) == cycle.counts.tolist()
    assert len(compact) < 410 < len(legacy)
    assert decode_cycle(legacy) == decode_cycle(compact) == cycle


def test_raw_cycle_keeps_a_read_only_copy() -> None:
    counts = sine_counts()
    cycle = RawCycle(timestamp_ms=1, counts=counts)
    counts[0] = 123
    assert cycle.counts[0] == 0
    with pytest.raises(ValueError):
        cycle.counts[0] = 1
    assert RawCycle(timestamp_ms=1, counts=counts.astype(np.int64)).counts.dtype == np.int16


def test_data_response_frames_round_trip() -> None:
    cycles = [RawCycle(timestamp_ms=1000 + 17 * i, counts=sine_counts(100.0 * i)) for i in range(3)]
    header = Response(box_id="1001", seq=4, timestamp_ms=2000, body=DataHeader(1000, 1034))
    for legacy in (False, True):
        frames = data_response_frames(header, cycles, legacy=legacy)
        assert len(frames) == 4
        assert parse_data_response(frames) == (header, cycles)


def test_parse_data_response_takes_any_lone_response() -> None:
    r = Response(box_id="3", seq=1, timestamp_ms=2, body=RateResponse(60))
    assert parse_data_response([encode_response(r)]) == (r, [])


def test_cycle_samples_match_the_domain() -> None:
    assert CYCLE_SAMPLES == SAMPLES_PER_CYCLE


# --- compatibility with original OPQ boxes -----------------------------------------------------------


def test_original_measurement_decodes() -> None:
    original = pb.Measurement(box_id=1001, timestamp_ms=1_589_000_000_000)
    for name, (low, high, avg) in {"rms": (119.5, 120.5, 120.0), "f": (59.98, 60.02, 60.0)}.items():
        original.metrics[name].min, original.metrics[name].max, original.metrics[name].average = (
            low,
            high,
            avg,
        )
    m = decode_measurement(original.SerializeToString())
    assert m.box_id == "1001"
    assert m.timestamp_ms == 1_589_000_000_000
    assert m.metrics["rms"] == MetricStats(119.5, 120.5, 120.0)
    assert m.metrics["f"].max == pytest.approx(60.02, rel=1e-6)


def test_original_data_response_decodes() -> None:
    counts = sine_counts()
    header = pb.Response(box_id=7, seq=12, timestamp_ms=3000)
    header.get_data_response.start_ts, header.get_data_response.end_ts = 1000, 1017
    cycles = [pb.Cycle(datapoints=counts.tolist(), timestamp_ms=t) for t in (1000, 1017)]
    response, decoded = parse_data_response(
        [header.SerializeToString(), *(c.SerializeToString() for c in cycles)]
    )
    assert response == Response(box_id="7", seq=12, timestamp_ms=3000, body=DataHeader(1000, 1017))
    assert [c.timestamp_ms for c in decoded] == [1000, 1017]
    assert all(np.array_equal(c.counts, counts) for c in decoded)


def test_original_info_response_decodes_with_unknown_calibration() -> None:
    original = pb.Response(box_id=7, seq=1, timestamp_ms=5)
    info = original.info_response
    info.ip, info.uptime, info.calibration_constant, info.pub_key, info.measurement_rate = (
        "10.0.0.7",
        3600,
        0,
        "k" * 40,
        60,
    )
    body = decode_response(original.SerializeToString()).body
    assert isinstance(body, InfoResponse)
    assert body.calibration_constant is None
    assert body.uptime_ms == 3600
    original.info_response.calibration_constant = 152
    body = decode_response(original.SerializeToString()).body
    assert isinstance(body, InfoResponse)
    assert body.calibration_constant == 152.0


def test_original_commands_decode() -> None:
    original = pb.Command(seq=3, box_id=10, timestamp_ms=7, identity="abc")
    original.data_command.start_ms, original.data_command.end_ms = 100, 200
    assert decode_command(original.SerializeToString()) == Command(3, "10", 7, "abc", GetData(100, 200))
    original = pb.Command(seq=4, box_id=10, timestamp_ms=7)
    original.sampling_rate_command.measurement_window_cycles = 30
    assert decode_command(original.SerializeToString()).body == SetMeasurementRate(30)


def _original_classes() -> dict[str, Any]:
    """The message classes of an original peer: our .proto without the fields opq added."""
    file_proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(file_proto)
    file_proto.name = "original/opqbox3.proto"
    added = {
        ("Cycle", "samples_le"),
        ("Response", "error"),
        ("GetInfoResponse", "calibration_counts_per_volt"),
    }
    for message in file_proto.message_type:
        keep = [f for f in message.field if (message.name, f.name) not in added]
        del message.field[:]
        message.field.extend(keep)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"opq.opqbox3.{name}"))
        for name in ("Cycle", "Response")
    }


def test_an_original_peer_reads_our_messages_and_skips_the_additions() -> None:
    original = _original_classes()
    info = InfoResponse("", "", "10.0.0.7", 1, 152.6, "", 60)
    data = encode_response(Response(box_id="7", seq=1, timestamp_ms=2, body=info))
    parsed = original["Response"].FromString(data)
    assert parsed.info_response.calibration_constant == 153
    assert parsed.info_response.ip == "10.0.0.7"

    cycle = RawCycle(timestamp_ms=5, counts=sine_counts())
    legacy = original["Cycle"].FromString(encode_cycle(cycle, legacy=True))
    assert list(legacy.datapoints) == cycle.counts.tolist()
    compact = original["Cycle"].FromString(encode_cycle(cycle))
    assert compact.timestamp_ms == 5
    assert list(compact.datapoints) == []


def test_unknown_fields_from_a_newer_peer_are_ignored() -> None:
    m = BoxMeasurement(box_id="1", timestamp_ms=2, metrics={"rms": MetricStats(1.0, 2.0, 1.5)})
    field_15_varint = bytes([15 << 3, 42])
    assert decode_measurement(encode_measurement(m) + field_15_varint) == m


# --- box ids and topics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box_id", "topic"), [("7", b"0007"), ("1001", b"1001"), ("0", b"0000"), ("12345", b"12345")]
)
def test_measurement_topic_pads_to_four_digits(box_id: str, topic: bytes) -> None:
    assert measurement_topic(box_id) == topic


def test_command_topic_is_the_decimal_id() -> None:
    assert command_topic("7") == b"7"
    assert command_topic("1001") == b"1001"


def test_command_is_for_checks_the_whole_box_id() -> None:
    command = Command(seq=1, box_id="10", timestamp_ms=0, identity="", body=GetInfo())
    assert command_topic("10").startswith(command_topic("1"))  # why the check is needed
    assert not command_is_for(command, "1")
    assert command_is_for(command, "10")
    assert command_is_for(decode_command(encode_command(command)), "10")


@pytest.mark.parametrize("box_id", ["2147483648", "-1", "0007", " 7", "+7", "abc", "", "7.0", "٣"], ids=repr)
def test_box_ids_that_cannot_go_on_the_wire(box_id: str) -> None:
    m = BoxMeasurement(box_id=box_id, timestamp_ms=0, metrics={})
    with pytest.raises(ProtocolError, match=re.escape(f"box id {box_id!r}")):
        encode_measurement(m)
    with pytest.raises(ProtocolError, match="box id"):
        measurement_topic(box_id)
    with pytest.raises(ProtocolError, match="box id"):
        encode_command(Command(seq=0, box_id=box_id, timestamp_ms=0, identity="", body=GetInfo()))


def test_box_id_outside_int32_on_the_wire_is_malformed() -> None:
    with pytest.raises(ProtocolError, match=r"malformed Measurement: box id 2147483648"):
        decode_measurement(pb.Measurement(box_id=2**31).SerializeToString())
    negative = pb.Command(seq=1, box_id=-1)
    negative.info_command.SetInParent()
    with pytest.raises(ProtocolError, match=r"malformed Command: box id -1"):
        decode_command(negative.SerializeToString())


# --- malformed input --------------------------------------------------------------------------------

DECODERS = [
    pytest.param(decode_measurement, "Measurement", id="measurement"),
    pytest.param(decode_command, "Command", id="command"),
    pytest.param(decode_response, "Response", id="response"),
    pytest.param(decode_cycle, "Cycle", id="cycle"),
]


@pytest.mark.parametrize(("decode", "name"), DECODERS)
@pytest.mark.parametrize(
    "garbage", [b"\xff\xff\xff\xff", b"\x00", b"\x0a\x05ab", b"\x07", "not bytes"], ids=repr
)
def test_garbage_is_a_protocol_error(decode: object, name: str, garbage: bytes) -> None:
    with pytest.raises(ProtocolError, match=f"malformed {name}"):
        decode(garbage)  # type: ignore[operator]


@FEW
@given(data=st.binary(max_size=64))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for decode in (decode_measurement, decode_command, decode_response, decode_cycle):
        with contextlib.suppress(ProtocolError):
            decode(data)


def test_truncated_cycle_is_a_protocol_error() -> None:
    data = encode_cycle(RawCycle(timestamp_ms=1, counts=sine_counts()))
    with pytest.raises(ProtocolError, match="malformed Cycle"):
        decode_cycle(data[:-5])


def test_another_message_type_is_detected_by_field_wire_types() -> None:
    measurement = encode_measurement(BoxMeasurement("7", 1, {"rms": MetricStats(1.0, 2.0, 1.5)}))
    with pytest.raises(
        ProtocolError, match=r"malformed Command: field 3 \(timestamp_ms\) has the wrong wire type"
    ):
        decode_command(measurement)
    cycle = encode_cycle(RawCycle(timestamp_ms=1, counts=sine_counts()), legacy=True)
    with pytest.raises(ProtocolError, match=r"malformed Measurement: field 1 \(box_id\)"):
        decode_measurement(cycle)


def test_missing_body_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="Command has no body"):
        decode_command(pb.Command(seq=1, box_id=2).SerializeToString())
    with pytest.raises(ProtocolError, match="Response has no body"):
        decode_response(pb.Response(seq=1, box_id=2).SerializeToString())
    with pytest.raises(ProtocolError, match="Command has no body"):
        decode_command(b"")


@pytest.mark.parametrize(
    ("cycle", "message"),
    [
        pytest.param(pb.Cycle(samples_le=bytes(398)), "Cycle has 199 samples, not 200", id="compact-199"),
        pytest.param(pb.Cycle(datapoints=[0] * 199), "Cycle has 199 samples, not 200", id="legacy-199"),
        pytest.param(pb.Cycle(datapoints=[0] * 201), "Cycle has 201 samples, not 200", id="legacy-201"),
        pytest.param(pb.Cycle(timestamp_ms=5), "Cycle has 0 samples, not 200", id="none"),
        pytest.param(pb.Cycle(samples_le=bytes(399)), "samples_le has 399 bytes", id="odd-bytes"),
        pytest.param(
            pb.Cycle(datapoints=[0] * 150 + [40_000] + [0] * 49),
            "sample 150 is 40000, outside int16",
            id="range",
        ),
        pytest.param(
            pb.Cycle(datapoints=[1] * 200, samples_le=bytes(400)),
            "samples_le and datapoints disagree",
            id="both",
        ),
    ],
)
def test_bad_cycles_are_protocol_errors(cycle: pb.Cycle, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_cycle(cycle.SerializeToString())


def test_both_sample_fields_agreeing_is_accepted() -> None:
    counts = sine_counts()
    both = pb.Cycle(datapoints=counts.tolist(), samples_le=counts.astype("<i2").tobytes(), timestamp_ms=3)
    assert decode_cycle(both.SerializeToString()) == RawCycle(timestamp_ms=3, counts=counts)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        pytest.param(np.zeros(199, dtype=np.int16), "Cycle has 199 samples, not 200", id="short"),
        pytest.param(np.zeros((2, 100), dtype=np.int16), "1-D", id="2d"),
        pytest.param(np.zeros(200), "integer ADC counts", id="float"),
        pytest.param(np.full(200, 40_000), "fit int16", id="range"),
    ],
)
def test_bad_raw_cycles_are_refused(counts: np.ndarray, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        RawCycle(timestamp_ms=0, counts=counts)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(Command(-1, "1", 0, "", GetInfo()), "seq -1 is outside", id="seq-negative"),
        pytest.param(Command(2**32, "1", 0, "", GetInfo()), "seq 4294967296 is outside", id="seq-big"),
        pytest.param(Command(True, "1", 0, "", GetInfo()), "seq must be an integer", id="seq-bool"),
        pytest.param(Command(0, "1", 2**64, "", GetInfo()), "timestamp_ms", id="timestamp"),
        pytest.param(Command(0, "1", 0, "\udc80", GetInfo()), "identity", id="surrogate"),
        pytest.param(Command(0, "1", 0, "", SetMeasurementRate(-1)), "cycles -1", id="rate"),
        pytest.param(Command(0, "1", 0, "", "info"), "cannot encode a command", id="body"),  # type: ignore[arg-type]
    ],
)
def test_unencodable_commands_are_protocol_errors(message: Command, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        encode_command(message)


@pytest.mark.parametrize("calibration", [math.nan, math.inf, -152.5, 0.0])
def test_unencodable_calibration_is_a_protocol_error(calibration: float) -> None:
    body = InfoResponse("", "", "", 0, calibration, "", 60)
    with pytest.raises(ProtocolError, match="calibration constant"):
        encode_response(Response(box_id="1", seq=0, timestamp_ms=0, body=body))


def test_unencodable_metric_value_is_a_protocol_error() -> None:
    m = BoxMeasurement("1", 0, {"rms": MetricStats("120", 1.0, 1.0)})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"rms\.min must be a number"):
        encode_measurement(m)


def test_data_response_frame_errors() -> None:
    info = Response(box_id="1", seq=0, timestamp_ms=0, body=PluginResponse(True))
    with pytest.raises(ProtocolError, match="starts with a DataHeader"):
        data_response_frames(info, [])
    with pytest.raises(ProtocolError, match="no frames"):
        parse_data_response([])
    cycle = encode_cycle(RawCycle(timestamp_ms=0, counts=sine_counts()))
    with pytest.raises(ProtocolError, match="PluginResponse came with 1 more frames"):
        parse_data_response([encode_response(info), cycle])
