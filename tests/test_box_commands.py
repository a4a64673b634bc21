"""The box's command processor, without sockets: frames in, frames out."""

from __future__ import annotations

import numpy as np
import pytest

from opq.box.commands import BoxInfo, CommandHandler, Deferred, Ignored, Reply
from opq.box.measuring import MeasurementBuilder
from opq.box.ringbuffer import CYCLE_DURATION_MS, RingBuffer
from opq.box.source import SourceCycle
from opq.protocol import (
    Command,
    CommandBody,
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
    SetMeasurementRate,
    encode_command,
    generate_keypair,
    parse_data_response,
)
from opq.protocol import opqbox3_pb2 as pb

T0 = 1_700_000_000_000
NOW_MS = 1_800_000_000_000
PUBLIC_KEY = generate_keypair().public


class FakeClock:
    """Wall clock [ms] and monotonic clock [s] that move only when told."""

    def __init__(self) -> None:
        self.monotonic_s = 100.0

    def ms(self) -> int:
        return NOW_MS

    def mono(self) -> float:
        return self.monotonic_s


class Setup:
    def __init__(self, cycles: int = 30, *, legacy: bool = False) -> None:
        self.clock = FakeClock()
        self.buffer = RingBuffer(1000)
        self.builder = MeasurementBuilder("1", 147.25)
        self.times = [T0 + round(i * CYCLE_DURATION_MS) for i in range(cycles)]
        for i, t in enumerate(self.times):
            self.buffer.append(SourceCycle(t, np.full(200, i - 100, dtype=np.int16)))
        info = BoxInfo("1", PUBLIC_KEY, 147.25, ip="10.0.0.7", mac_addr="b8:27:eb:00:00:01")
        self.handler = CommandHandler(
            info,
            self.buffer,
            self.builder,
            clock_ms=self.clock.ms,
            monotonic_s=self.clock.mono,
            legacy_cycles=legacy,
        )

    def send(self, body: CommandBody, *, seq: int = 42, box_id: str = "1", topic: bytes = b"1") -> object:
        command = Command(seq=seq, box_id=box_id, timestamp_ms=NOW_MS, identity="makai", body=body)
        return self.handler.handle([topic, encode_command(command)])

    def reply(self, body: CommandBody, **kwargs: object) -> tuple[Response, list[RawCycle]]:
        outcome = self.send(body, **kwargs)  # type: ignore[arg-type]
        assert isinstance(outcome, Reply)
        return parse_data_response(outcome.frames)


def test_get_info_tells_the_real_calibration_rate_and_uptime() -> None:
    s = Setup()
    s.clock.monotonic_s += 12.5
    response, cycles = s.reply(GetInfo(), seq=9)
    assert (response.box_id, response.seq, response.timestamp_ms) == ("1", 9, NOW_MS)
    assert response.body == InfoResponse(
        mac_addr="b8:27:eb:00:00:01",
        wifi_network="",
        ip="10.0.0.7",
        uptime_ms=12_500,
        calibration_constant=147.25,
        pub_key=PUBLIC_KEY,
        measurement_rate=10,
    )
    assert cycles == []
    assert s.handler.handled == 1


def test_set_measurement_rate_answers_the_old_rate() -> None:
    s = Setup()
    response, _ = s.reply(SetMeasurementRate(60))
    assert response.body == RateResponse(old_rate_cycles=10)
    assert s.builder.cycles_per_measurement == 60
    response, _ = s.reply(GetInfo())
    assert isinstance(response.body, InfoResponse)
    assert response.body.measurement_rate == 60


@pytest.mark.parametrize("cycles", [0, 3601])
def test_a_rate_out_of_bounds_gets_an_error(cycles: int) -> None:
    s = Setup()
    response, _ = s.reply(SetMeasurementRate(cycles), seq=5)
    assert response.seq == 5
    assert isinstance(response.body, ErrorResponse)
    assert "1 to 3600" in response.body.message
    assert s.builder.cycles_per_measurement == 10


def test_a_plugin_command_is_refused_without_plugins() -> None:
    response, _ = Setup().reply(PluginCommand("sse", "reload"))
    assert response.body == PluginResponse(ok=False)


def test_get_data_returns_the_range_inclusively_in_time_order() -> None:
    s = Setup()
    start, end = s.times[3] + 5, s.times[8]  # mid-cycle 3 to the start of cycle 8
    response, cycles = s.reply(GetData(start, end), seq=77)
    assert response.seq == 77
    assert response.body == DataHeader(start_ts_ms=s.times[3], end_ts_ms=s.times[8])
    assert [c.timestamp_ms for c in cycles] == s.times[3:9]
    assert [int(c.counts[0]) for c in cycles] == list(range(-97, -91))


def test_get_data_outside_the_buffer_is_an_empty_answer() -> None:
    response, cycles = Setup().reply(GetData(T0 - 10_000, T0 - 5_000))
    assert response.body == DataHeader(0, 0)
    assert cycles == []


def test_get_data_ending_before_it_starts_is_an_error() -> None:
    response, cycles = Setup().reply(GetData(T0 + 100, T0))
    assert isinstance(response.body, ErrorResponse)
    assert cycles == []


def test_legacy_cycles_travel_as_varints() -> None:
    s = Setup(legacy=True)
    outcome = s.send(GetData(T0, T0))
    assert isinstance(outcome, Reply)
    raw = pb.Cycle.FromString(outcome.frames[1])
    assert list(raw.datapoints) == [-100] * 200
    assert raw.samples_le == b""


def test_get_data_with_wait_answers_once_the_end_is_sampled() -> None:
    s = Setup(cycles=10)
    end = s.times[-1] + 100  # six cycles in the future
    outcome = s.send(GetData(s.times[5] + 1, end, wait=True), seq=3)
    assert isinstance(outcome, Deferred)
    assert s.handler.resume(outcome) is None
    for i in range(10, 16):
        t = T0 + round(i * CYCLE_DURATION_MS)
        assert s.handler.resume(outcome) is None
        s.buffer.append(SourceCycle(t, np.zeros(200, dtype=np.int16)))
    reply = s.handler.resume(outcome)
    assert reply is not None
    response, cycles = parse_data_response(reply.frames)
    assert response.seq == 3
    assert [c.timestamp_ms for c in cycles] == [T0 + round(i * CYCLE_DURATION_MS) for i in range(5, 16)]
    assert cycles[-1].timestamp_ms <= end < cycles[-1].timestamp_ms + CYCLE_DURATION_MS


def test_get_data_with_wait_gives_up_after_its_deadline() -> None:
    s = Setup(cycles=10)
    outcome = s.send(GetData(s.times[5] + 1, s.times[-1] + 3_000, wait=True))
    assert isinstance(outcome, Deferred)
    assert outcome.deadline_s == pytest.approx(s.clock.monotonic_s + 3.0 + 2.0, abs=0.01)
    s.clock.monotonic_s = outcome.deadline_s
    reply = s.handler.resume(outcome)
    assert reply is not None
    _, cycles = parse_data_response(reply.frames)
    assert [c.timestamp_ms for c in cycles] == s.times[5:]


def test_get_data_with_wait_for_the_past_answers_at_once() -> None:
    s = Setup()
    assert isinstance(s.send(GetData(T0, s.times[-1], wait=True)), Reply)


def test_a_far_future_wait_is_bounded() -> None:
    s = Setup()
    outcome = s.send(GetData(T0, T0 + 10**9, wait=True))
    assert isinstance(outcome, Deferred)
    assert outcome.deadline_s == pytest.approx(s.clock.monotonic_s + 60)


@pytest.mark.parametrize(
    ("topic", "box_id"),
    [
        pytest.param(b"10", "10", id="box 10's topic"),
        pytest.param(b"1", "10", id="box 10's command on topic 1"),
    ],
)
def test_another_box_s_command_is_ignored(topic: bytes, box_id: str) -> None:
    s = Setup()
    outcome = s.send(SetMeasurementRate(60), topic=topic, box_id=box_id)
    assert isinstance(outcome, Ignored)
    assert not outcome.malformed
    assert s.builder.cycles_per_measurement == 10
    assert (s.handler.ignored, s.handler.handled, s.handler.malformed) == (1, 0, 0)


def test_a_command_without_a_body_gets_an_error_with_its_seq() -> None:
    s = Setup()
    outcome = s.handler.handle([b"1", pb.Command(seq=11, box_id=1).SerializeToString()])
    assert isinstance(outcome, Reply)
    response, _ = parse_data_response(outcome.frames)
    assert response.seq == 11
    assert isinstance(response.body, ErrorResponse)
    assert "malformed" in response.body.message
    assert s.handler.malformed == 1


def test_another_box_s_command_without_a_body_is_ignored() -> None:
    s = Setup()
    assert isinstance(s.handler.handle([b"1", pb.Command(seq=11, box_id=12).SerializeToString()]), Ignored)
    assert s.handler.ignored == 1


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([b"1", b"\xff\xfe garbage"], id="not protobuf"),
        pytest.param([b"1"], id="one frame"),
        pytest.param([b"1", b"", b""], id="three frames"),
    ],
)
def test_unreadable_messages_are_counted_and_dropped(frames: list[bytes]) -> None:
    s = Setup()
    outcome = s.handler.handle(frames)
    assert isinstance(outcome, Ignored)
    assert outcome.malformed
    assert s.handler.malformed == 1
