"""A box against a fake cloud over real ZeroMQ + CURVE on 127.0.0.1: no loss, commands, responses."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zmq

from opq.box.config import BoxConfig, box_config_from_dict
from opq.box.link import Link
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.runtime import Box, link_settings
from opq.box.source import SourceCycle
from opq.protocol import (
    BoxMeasurement,
    Command,
    CommandBody,
    DataHeader,
    ErrorResponse,
    GetData,
    GetInfo,
    InfoResponse,
    KeyPair,
    RateResponse,
    RawCycle,
    Response,
    SetMeasurementRate,
    decode_measurement,
    encode_command,
    encode_measurement,
    generate_keypair,
    parse_data_response,
    write_certificate,
)
from opq.protocol import opqbox3_pb2 as pb

T0 = 1_700_000_000_000
TIMEOUT_S = 5.0


def cycle_ms(i: int) -> int:
    return T0 + round(i * CYCLE_DURATION_MS)


def measurement_ms(k: int, rate: int = 10) -> int:
    """End of the k-th measurement of `rate` cycles from the first cycle."""
    return T0 + round((k + 1) * rate * CYCLE_DURATION_MS)


class GatedSine:
    """A 120 V, 60 Hz source that yields only the cycles the test has released (unpaced)."""

    def __init__(self, calibration_constant: float = 152.5) -> None:
        self.calibration_constant = calibration_constant
        self._released = threading.Semaphore(0)
        self._closed = threading.Event()

    def release(self, n: int) -> None:
        self._released.release(n)

    def close(self) -> None:
        self._closed.set()

    def cycles(self) -> Iterator[SourceCycle]:
        i = 0
        while not self._closed.is_set():
            if self._released.acquire(timeout=0.02):
                t_s = (np.arange(200) + 200 * i) / 12_000
                counts = np.rint(170 * self.calibration_constant * np.sin(2 * np.pi * 60 * t_s))
                yield SourceCycle(cycle_ms(i), counts.astype(np.int16))
                i += 1


class FakeCloud:
    """The cloud's three box-facing sockets, CURVE servers; a thread drains measurements and responses.

    The command socket is an XPUB (a PUB on the wire) so the test can wait for the box's subscription.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], ports: list[int], keys: KeyPair) -> None:
        self.measurements: list[BoxMeasurement] = []
        self.responses: list[list[bytes]] = []
        self._context, self._ports, self._keys = context, ports, keys
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._drain)
        self._thread.start()
        assert self._bound.wait(TIMEOUT_S)
        self.commands = self._server(zmq.XPUB, ports[1])
        self._subscribers: set[bytes] = set()

    def _server(self, kind: int, port: int) -> zmq.Socket[bytes]:
        sock = self._context.socket(kind)
        sock.curve_server = True
        sock.curve_secretkey = self._keys.secret.encode()  # type: ignore[union-attr]
        sock.curve_publickey = self._keys.public.encode()
        sock.linger = 0
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # the previous cloud's port may take a moment to free
            try:
                sock.bind(f"tcp://127.0.0.1:{port}")
                return sock
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    sock.close()
                    raise
                time.sleep(0.02)

    def _drain(self) -> None:
        sub = self._server(zmq.SUB, self._ports[0])
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pull = self._server(zmq.PULL, self._ports[2])
        self._bound.set()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(10):
                    if sock is sub:
                        topic, payload = sub.recv_multipart()
                        measurement = decode_measurement(payload)
                        assert topic == b"%04d" % int(measurement.box_id)
                        self.measurements.append(measurement)
                    else:
                        self.responses.append(pull.recv_multipart())
        finally:
            sub.close()
            pull.close()

    def wait_for_subscriber(self, topic: bytes) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(topic.startswith(prefix) for prefix in self._subscribers):
            assert time.monotonic() < deadline, f"no subscription to {topic!r}"
            if self.commands.poll(20):
                message = self.commands.recv()
                if message[:1] == b"\x01":
                    self._subscribers.add(message[1:])

    def send(self, body: CommandBody, *, seq: int, box_id: str = "1", topic: bytes | None = None) -> None:
        command = Command(seq=seq, box_id=box_id, timestamp_ms=T0, identity="test", body=body)
        self.send_raw([topic or box_id.encode(), encode_command(command)])

    def send_raw(self, frames: list[bytes]) -> None:
        self.wait_for_subscriber(frames[0])
        self.commands.send_multipart(frames)

    def response(self, index: int = 0) -> tuple[Response, list[RawCycle]]:
        wait_until(lambda: len(self.responses) > index)
        return parse_data_response(self.responses[index])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.commands.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair, Path]:
    box, server = generate_keypair(), generate_keypair()
    directory = tmp_path_factory.mktemp("keys")
    write_certificate(directory, "box", box)
    return box, server, directory / "box.key_secret"


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def ports() -> list[int]:
    """Three free ports (the box connects before the cloud binds them)."""
    probes = [socket.socket() for _ in range(3)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    found = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return found


@pytest.fixture
def config(keys: tuple[KeyPair, KeyPair, Path], ports: list[int]) -> BoxConfig:
    _, server, box_secret = keys
    return box_config_from_dict(
        {
            "box_id": "1",
            "box_certificate": str(box_secret),
            "server_public_key": server.public,
            "measurement_port": ports[0],
            "command_port": ports[1],
            "response_port": ports[2],
            "realtime": False,
            "buffer_seconds": 60,
        }
    )


@pytest.fixture
def source() -> GatedSine:
    return GatedSine()


@pytest.fixture
def box(config: BoxConfig, source: GatedSine, context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Box]:
    settings = replace(link_settings(config), reconnect_ivl_ms=20, reconnect_ivl_max_ms=100, linger_ms=0)
    running = Box(config, source, settings=settings, context=context)
    running.start()
    yield running
    source.close()
    running.stop()
    assert running.counters.commands_failed == 0


@pytest.fixture
def cloud_factory(
    context: zmq.Context[zmq.Socket[bytes]], ports: list[int], keys: tuple[KeyPair, KeyPair, Path]
) -> Iterator[Callable[[], FakeCloud]]:
    clouds: list[FakeCloud] = []

    def start() -> FakeCloud:
        clouds.append(FakeCloud(context, ports, keys[1]))
        return clouds[-1]

    yield start
    for cloud in clouds:
        with contextlib.suppress(Exception):
            cloud.close()


def received_ms(clouds: list[FakeCloud]) -> list[int]:
    return [m.timestamp_ms for cloud in clouds for m in cloud.measurements]


def test_no_measurement_is_lost_before_the_cloud_starts_or_while_it_restarts(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    source.release(10 * 10 + 1)  # ten measurements (each waits for the next cycle) before any cloud
    wait_until(lambda: box.counters.measurements_queued == 10)
    assert box.counters.measurements_sent == 0

    first = cloud_factory()
    wait_until(lambda: len(first.measurements) == 10)
    source.release(10 * 10)
    wait_until(lambda: len(first.measurements) == 20)

    first.close()  # the cloud goes away mid-stream...
    wait_until(lambda: not box.counters.subscribed)
    source.release(10 * 10)  # ...the box keeps measuring and queues...
    wait_until(lambda: box.counters.measurements_queued == 10)
    second = cloud_factory()  # ...and the restarted cloud gets everything
    source.release(10 * 10)
    wait_until(lambda: len(second.measurements) == 20)
    time.sleep(0.05)  # anything extra would show now

    assert received_ms([first, second]) == [measurement_ms(k) for k in range(40)]
    c = box.counters
    assert (c.measurements_sent, c.measurements_dropped, c.measurements_queued) == (40, 0, 0)
    assert (c.connections, c.disconnections) == (2, 1)


def test_get_data_returns_the_inclusive_range_with_a_header(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    source.release(120)
    wait_until(lambda: box.counters.cycles == 120)
    cloud = cloud_factory()
    cloud.send(GetData(cycle_ms(10) + 5, cycle_ms(20)), seq=5)
    response, cycles = cloud.response()
    assert response.seq == 5
    assert response.body == DataHeader(cycle_ms(10), cycle_ms(20))
    assert [c.timestamp_ms for c in cycles] == [cycle_ms(i) for i in range(10, 21)]
    assert all(len(c.counts) == 200 for c in cycles)


def test_get_data_with_wait_answers_when_the_end_arrives(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    source.release(30)
    wait_until(lambda: box.counters.cycles == 30)
    cloud = cloud_factory()
    cloud.send(GetData(cycle_ms(25) + 1, cycle_ms(45), wait=True), seq=6)
    time.sleep(0.1)
    assert cloud.responses == []
    source.release(30)
    response, cycles = cloud.response()
    assert response.seq == 6
    assert [c.timestamp_ms for c in cycles] == [cycle_ms(i) for i in range(25, 46)]


def test_box_1_ignores_commands_for_box_10(box: Box, cloud_factory: Callable[[], FakeCloud]) -> None:
    cloud = cloud_factory()
    cloud.wait_for_subscriber(b"1")
    cloud.send(SetMeasurementRate(60), seq=1, box_id="10", topic=b"10")  # reaches box 1 by prefix
    cloud.send(SetMeasurementRate(60), seq=2, box_id="10", topic=b"1")
    cloud.send(GetInfo(), seq=3)
    response, _ = cloud.response()
    assert response.seq == 3
    assert isinstance(response.body, InfoResponse)
    assert response.body.measurement_rate == 10
    time.sleep(0.05)
    assert len(cloud.responses) == 1
    assert box.counters.commands_ignored == 2


def test_a_malformed_command_gets_an_error_and_the_box_carries_on(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    cloud = cloud_factory()
    cloud.send_raw([b"1", b"\xff\xff\xff not a command"])
    cloud.send_raw([b"1", pb.Command(seq=8, box_id=1).SerializeToString()])
    response, _ = cloud.response()
    assert response.seq == 8
    assert isinstance(response.body, ErrorResponse)
    cloud.send(GetInfo(), seq=9)
    assert cloud.response(1)[0].seq == 9
    source.release(21)
    wait_until(lambda: len(cloud.measurements) == 2)
    assert box.counters.commands_malformed == 2


def test_a_rate_change_shows_in_the_cadence(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    cloud = cloud_factory()
    source.release(21)
    wait_until(lambda: len(cloud.measurements) == 2)
    cloud.send(SetMeasurementRate(60), seq=4)
    response, _ = cloud.response()
    assert response.body == RateResponse(old_rate_cycles=10)
    source.release(120)
    wait_until(lambda: len(cloud.measurements) == 4)
    times = [m.timestamp_ms for m in cloud.measurements]
    assert np.diff(times).tolist() == [166, 1000, 1000]


def test_get_info_has_the_real_calibration_constant(
    config: BoxConfig, context: zmq.Context[zmq.Socket[bytes]], cloud_factory: Callable[[], FakeCloud]
) -> None:
    source = GatedSine(calibration_constant=147.25)
    config = config.model_copy(update={"calibration_constant": 147.25, "cycles_per_measurement": 12})
    with Box(config, source, context=context, settings=replace(link_settings(config), linger_ms=0)) as box:
        try:
            cloud = cloud_factory()
            cloud.send(GetInfo(), seq=1)
            response, _ = cloud.response()
        finally:
            source.close()
    assert isinstance(response.body, InfoResponse)
    assert response.body.calibration_constant == 147.25
    assert response.body.measurement_rate == 12
    assert response.body.pub_key == box.link.settings.keys.public
    assert 0 < response.body.uptime_ms < 10_000


def test_a_full_queue_drops_the_oldest_and_counts_them(
    config: BoxConfig, context: zmq.Context[zmq.Socket[bytes]], cloud_factory: Callable[[], FakeCloud]
) -> None:
    link = Link(replace(link_settings(config), queue_max=5, queue_seconds=1.0, linger_ms=0), context)
    for t in [*range(0, 800, 100), 1_600]:  # at most 5, none more than 1 s older than the newest
        link.publish(T0 + t, encode_measurement(BoxMeasurement("1", T0 + t, {})))
    assert (link.queued, link.dropped) == (3, 6)
    link.open()
    try:
        cloud = cloud_factory()
        wait_until(lambda: not link.poll(10) and len(cloud.measurements) == 3)
    finally:
        link.close()
    assert received_ms([cloud]) == [T0 + 600, T0 + 700, T0 + 1_600]
    assert (link.sent, link.queued) == (3, 0)


def test_a_box_refused_by_a_wrong_server_tries_again(
    context: zmq.Context[zmq.Socket[bytes]],
    ports: list[int],
    config: BoxConfig,
    source: GatedSine,
    cloud_factory: Callable[[], FakeCloud],
) -> None:
    impostor = context.socket(zmq.SUB)  # no CURVE: the box's handshake fails and libzmq gives up
    impostor.bind(f"tcp://127.0.0.1:{ports[0]}")
    settings = replace(link_settings(config), reconnect_ivl_ms=20, reconnect_ivl_max_ms=100, linger_ms=0)
    with Box(config, source, settings=settings, context=context) as box:
        try:
            wait_until(lambda: impostor.poll(10) == 0 and box.link.refused > 0)
            impostor.close(linger=0)
            cloud = cloud_factory()
            source.release(21)
            wait_until(lambda: len(cloud.measurements) == 2)
        finally:
            source.close()
    assert received_ms([cloud]) == [measurement_ms(0), measurement_ms(1)]


def test_a_cloud_restarted_mid_stream_loses_at_most_what_was_on_the_wire(
    box: Box, source: GatedSine, cloud_factory: Callable[[], FakeCloud]
) -> None:
    # PUB/SUB has no acknowledgements: what the box wrote just before the cloud died (and what the
    # cloud had not read yet) is gone. Everything else arrives once, in order.
    box.builder.set_rate(1)
    stop = threading.Event()

    def stream() -> None:  # 200 measurements a second, 33 times the default rate
        while not stop.wait(0.005):
            source.release(1)

    clouds = [cloud_factory()]
    feeder = threading.Thread(target=stream)
    feeder.start()
    try:
        for _ in range(3):
            wait_until(lambda: len(clouds[-1].measurements) >= 40)
            clouds[-1].close()
            clouds.append(cloud_factory())
        wait_until(lambda: len(clouds[-1].measurements) >= 20)
    finally:
        stop.set()
        feeder.join()
    wait_until(lambda: box.counters.measurements_queued == 0)
    sent = box.counters.measurements_sent
    wait_until(lambda: len(received_ms(clouds)) >= sent - 3 * 3)
    time.sleep(0.05)
    received = received_ms(clouds)
    assert received == sorted(set(received))  # no duplicates, in order
    assert sent - len(received) <= 3 * 3
