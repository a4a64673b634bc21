"""The box fleet: its pure parts (spans, encoding, fd budget, keys, synthesized data), then a real fleet."""

from __future__ import annotations

import csv
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
import zmq
from typer.testing import CliRunner

from opq.box.disturbances import SupplyModel
from opq.box.fleet import (
    FD_RESERVE,
    LISTING_NAME,
    Fleet,
    FleetSettings,
    boxes_per_process,
    fds_per_box,
    fleet_keys,
    processes_for,
    with_local_disturbances,
)
from opq.box.fleet_encoding import METRICS, MeasurementBatch, encode_batch, measurement_prefix
from opq.box.fleet_metrics import BoxRates, FastMeter, SignalMeter, advance_spans, windows
from opq.box.fleet_options import FleetOptions
from opq.box.fleet_samples import SynthesizedCycles
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import Scenario, load_scenario, scenario_from_dict
from opq.box.simulator import Simulator, Variations
from opq.cli import box as box_cli
from opq.cli.main import OpqGroup
from opq.errors import ConfigError
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
    PluginCommand,
    PluginResponse,
    RateResponse,
    RawCycle,
    Response,
    SetMeasurementRate,
    decode_measurement,
    encode_command,
    generate_keypair,
    parse_data_response,
    read_certificate,
    write_certificate,
)
from opq.protocol import opqbox3_pb2 as pb

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
START_MS = 1_700_000_000_000
TIMEOUT_S = 30.0
BOXES = 20


def shipped(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.toml")


def measurement_end_ms(start_ms: int, cycles: int) -> int:
    return start_ms + round(cycles * CYCLE_DURATION_MS)


# --- pure parts ---------------------------------------------------------------------------------


def test_a_process_holds_2500_boxes_under_the_20000_fd_limit_and_10000_boxes_take_4() -> None:
    assert fds_per_box() == 6  # XPUB, SUB, PUSH: a mailbox and a TCP connection each
    assert fds_per_box(monitored=True) == 12
    assert boxes_per_process(20_000) == 2500
    assert processes_for(10_000, 20_000) == 4
    assert processes_for(2500, 20_000) == 1
    assert processes_for(1, 20_000) == 1
    # A lower limit divides the boxes further: (10,000 − 512) // 6 = 1,581 boxes a process.
    assert boxes_per_process(10_000) == 1581
    assert processes_for(10_000, 10_000) == 7
    # With monitor sockets, as Link has, a process would hold (20,000 − 512) // 12 = 1,624 boxes.
    assert processes_for(10_000, 20_000, box_fds=fds_per_box(monitored=True)) == 7
    with pytest.raises(ConfigError, match="not enough for one box"):
        boxes_per_process(FD_RESERVE + 5)


def test_a_fleet_that_would_break_the_fd_limit_or_the_id_range_is_refused(tmp_path: Path) -> None:
    options = FleetOptions(
        "tcp://127.0.0.1:9", "tcp://127.0.0.1:9", "tcp://127.0.0.1:9", generate_keypair().public
    )
    with pytest.raises(ConfigError, match="use more processes"):
        Fleet(FleetSettings(Scenario(), 10_000, options, tmp_path, processes=1, fd_limit=20_000))
    assert Fleet(FleetSettings(Scenario(), 10_000, options, tmp_path, fd_limit=20_000)).processes == 4
    with pytest.raises(ConfigError, match="go past"):
        Fleet(FleetSettings(Scenario(), 10, options, tmp_path, first_id=2**31 - 5))


def test_the_keys_directory_gets_one_pair_per_box_and_a_listing(tmp_path: Path) -> None:
    ids = ["1000", "1001", "1002"]
    pairs = fleet_keys(tmp_path / "keys", ids)
    for box_id, pair in zip(ids, pairs, strict=True):
        assert read_certificate(tmp_path / "keys" / f"box{box_id}.key_secret") == pair
        assert read_certificate(tmp_path / "keys" / f"box{box_id}.key").public == pair.public
    assert len({pair.public for pair in pairs}) == 3
    with (tmp_path / "keys" / LISTING_NAME).open(encoding="ascii") as file:
        rows = list(csv.reader(file))
    assert rows == [["box_id", "public_key"], *([i, p.public] for i, p in zip(ids, pairs, strict=True))]
    # Present keys are read, not replaced; a new box gets a new pair.
    again = fleet_keys(tmp_path / "keys", [*ids, "1003"])
    assert again[:3] == pairs
    assert again[3].public not in {pair.public for pair in pairs}


def test_spans_follow_the_measurement_builder_through_rate_changes_and_an_outage() -> None:
    quiet = np.zeros(10, bool)
    assert advance_spans(10, None, 0, 0, 10, quiet) == ([(0, 10, 0)], 10, 0)
    assert advance_spans(4, 0, 0, 0, 10, quiet) == ([(0, 4, 0), (4, 8, 0)], 8, 0)
    # A lowered rate ends the measurement in progress with the next cycle.
    assert advance_spans(3, 20, 20, 30, 10, quiet) == (
        [(20, 30, 20), (30, 33, 20), (33, 36, 20), (36, 39, 20)],
        39,
        20,
    )
    # An outage cuts the measurement short; the box starts afresh after it.
    outage = np.array([False, False, True, True, True, False, False, False, False, False])
    assert advance_spans(10, 15, 0, 20, 10, outage) == ([(15, 22, 0)], 25, 25)
    assert advance_spans(3, 10, 0, 20, 10, outage) == ([(10, 20, 0), (20, 22, 0), (25, 28, 25)], 28, 25)


def test_windows_end_at_the_measurement_end_and_a_cut_one_is_kept_if_half_full() -> None:
    assert windows(10, 20, 0, 12) == [(8, 20)]
    assert windows(0, 10, 0, 12) == [(0, 10)]
    assert windows(0, 5, 0, 12) == []
    assert windows(0, 60, 0, 12) == [(0, 12), (12, 24), (24, 36), (36, 48), (48, 60)]
    assert windows(100, 130, 95, 12) == [(95, 106), (106, 118), (118, 130)]


def test_a_batch_encodes_to_what_the_protobuf_encoder_gives() -> None:
    stats = np.array(
        [
            [[119.5, 120.5, 120.1], [59.99, 60.01, 60.0], [0.015, 0.017, 0.016], [0.8, 1.2, 1.0]],
            [[2.1, 3.0, 2.5], [np.nan, np.nan, np.nan], [np.nan, np.nan, np.nan], [0.5, 0.9, 0.7]],
            [[0.0, 0.0, 0.0], [60.0, 60.0, 60.0], [0.0, 0.0, 0.0], [1e-3, 2e-3, 1.5e-3]],
        ]
    )
    ids = ["7", "1001", "2147483647"]
    batch = MeasurementBatch(np.array([0, 1, 2]), 1_800_000_000_123, stats)
    payloads = encode_batch(batch, [measurement_prefix(i) for i in ids], ids)
    for payload, expected in zip(payloads, batch.measurements(ids), strict=True):
        decoded = decode_measurement(payload)
        assert (decoded.box_id, decoded.timestamp_ms) == (expected.box_id, expected.timestamp_ms)
        assert set(decoded.metrics) == set(expected.metrics)
        for name, value in expected.metrics.items():
            got = decoded.metrics[name]
            for field in ("min", "max", "average"):
                assert getattr(got, field) == pytest.approx(getattr(value, field), rel=1e-7)
    assert set(decode_measurement(payloads[1]).metrics) == {"rms", "trans"}


def meters(scenario: Scenario, ids: list[str], rate: int = 10) -> tuple[FastMeter, SignalMeter]:
    model = SupplyModel(scenario)
    variations = Variations.for_boxes(int(i) for i in ids)
    fast = FastMeter(
        [model],
        [0] * len(ids),
        variations,
        ids,
        BoxRates(len(ids), rate),
        start_ms=START_MS,
        calibration_constant=152.5,
    )
    simulators = [Simulator(model, box_seed=int(i), start_ms=START_MS) for i in ids]
    return fast, SignalMeter(simulators, ids, rate)


@pytest.mark.parametrize("name", ["clean", "thd"])
def test_fast_path_measurements_agree_with_the_full_signal(name: str) -> None:
    ids = ["1000", "1001", "1002"]
    fast_meter, full_meter = meters(shipped(name), ids)
    fast: dict[tuple[str, int], BoxMeasurement] = {}
    full: dict[tuple[str, int], BoxMeasurement] = {}
    for cycle in range(0, 300, 10):
        for batch in fast_meter.measure_batches(cycle, 10):
            fast.update({(m.box_id, m.timestamp_ms): m for m in batch.measurements(ids)})
        full.update({(m.box_id, m.timestamp_ms): m for _, m in full_meter.measure_boxes(cycle, 10)})
    # The builder needs the cycle after a measurement: its last one comes a block later.
    assert set(full) == set(fast) - {(i, measurement_end_ms(START_MS, 300)) for i in ids}
    assert {t for _, t in fast} == {measurement_end_ms(START_MS, 10 * k) for k in range(1, 31)}
    for key, expected in full.items():
        got = fast[key].metrics
        assert set(got) == set(METRICS) == set(expected.metrics)
        assert got["rms"].average == pytest.approx(expected.metrics["rms"].average, rel=0.002)
        assert got["rms"].min == pytest.approx(expected.metrics["rms"].min, rel=0.003)
        assert got["f"].average == pytest.approx(expected.metrics["f"].average, abs=0.005)
        assert got["thd"].average == pytest.approx(expected.metrics["thd"].average, abs=0.001)
        assert got["trans"].average == pytest.approx(expected.metrics["trans"].average, rel=0.3)


def test_a_box_at_another_rate_measures_on_its_own_cadence() -> None:
    ids = ["1000", "1001"]
    fast_meter, _ = meters(shipped("clean"), ids)
    fast_meter.measure_batches(0, 10)
    assert fast_meter.rate_control(1).set_rate(60) == 10
    ends: dict[int, list[int]] = {0: [], 1: []}
    for cycle in range(10, 130, 10):
        for batch in fast_meter.measure_batches(cycle, 10):
            for box in batch.boxes.tolist():
                ends[box].append(batch.timestamp_ms)
    assert ends[0] == [measurement_end_ms(START_MS, c) for c in range(20, 140, 10)]
    # The measurement in progress (from cycle 10) runs on to 60 cycles.
    assert ends[1] == [measurement_end_ms(START_MS, 70), measurement_end_ms(START_MS, 130)]


def test_long_measurements_are_computed_a_few_boxes_at_a_time_with_the_same_result() -> None:
    ids = [str(1000 + i) for i in range(5)]
    model = SupplyModel(shipped("grid-disturbances"))

    def meter(max_cycle_values: int) -> FastMeter:
        return FastMeter(
            [model], [0] * 5, Variations.for_boxes(range(1000, 1005)), ids, BoxRates(5, 600),
            start_ms=START_MS, calibration_constant=152.5, max_cycle_values=max_cycle_values,
        )  # fmt: skip

    whole, piecewise = meter(10**6), meter(700)  # 700 box-cycles: one box at a time
    compared = 0
    for cycle in range(540, 1860, 60):  # 9 to 31 s: the sag, the interruption, harmonics
        for a, b in zip(whole.measure_batches(cycle, 60), piecewise.measure_batches(cycle, 60), strict=True):
            assert a.timestamp_ms == b.timestamp_ms
            np.testing.assert_array_equal(a.stats, b.stats)
            compared += 1
    assert compared == 2


def test_local_disturbances_reach_only_the_local_boxes(tmp_path: Path) -> None:
    local_file = tmp_path / "local.toml"
    local_file.write_text('[[disturbances]]\nkind = "sag"\nat_s = 1.0\ndepth_pu = 0.5\nduration_s = 0.2\n')
    shared = shipped("clean")
    local = with_local_disturbances(shared, local_file)
    assert len(local.disturbances) == len(shared.disturbances) + 1
    ids = ["1000", "1001"]
    meter = FastMeter(
        [SupplyModel(shared), SupplyModel(local)],
        [1, 0],
        Variations.for_boxes([1000, 1001]),
        ids,
        BoxRates(2, 60),
        start_ms=START_MS,
        calibration_constant=152.5,
    )
    measured = {m.box_id: m for b in meter.measure_batches(60, 60) for m in b.measurements(ids)}  # 1 to 2 s
    local_box, other_box = measured["1000"], measured["1001"]
    assert local_box.metrics["rms"].min == pytest.approx(60.0, rel=0.05)
    assert other_box.metrics["rms"].min > 115.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[supply]\nnoise_v_rms = 1.0\n")
    with pytest.raises(ConfigError, match="only"):
        with_local_disturbances(shared, bad)


def test_synthesized_data_is_the_simulators_counts_up_to_now_and_outages_left_out() -> None:
    scenario = scenario_from_dict({"disturbances": [{"kind": "outage", "at_s": 2.0, "duration_s": 1.0}]})
    now = [START_MS + 2500]
    simulator = Simulator(scenario, box_seed=1003, start_ms=START_MS)
    buffer = SynthesizedCycles(lambda: simulator, first_cycle=0, capacity_cycles=120, clock_ms=lambda: now[0])
    # 2.5 s in, the box is off since 2.0 s; it holds the 120 cycles up to the last it sampled.
    assert buffer.newest_timestamp_ms == simulator.timestamp_ms_of_cycle(119)
    assert buffer.oldest_timestamp_ms == simulator.timestamp_ms_of_cycle(0)
    found = buffer.cycles_between(START_MS + 1500, START_MS + 2600)
    first = simulator.cycle_index_at(START_MS + 1500)
    assert found.timestamps_ms.tolist() == [simulator.timestamp_ms_of_cycle(c) for c in range(first, 120)]
    expected = simulator.counts(first * 200, (120 - first) * 200).reshape(-1, 200)
    np.testing.assert_array_equal(found.counts, expected)
    now[0] = START_MS + 3500
    after = buffer.cycles_between(START_MS + 1900, START_MS + 3100)
    # 100 ms before the outage and after it, nothing in between
    before, resumed = list(range(114, 120)), list(range(180, 187))
    assert after.timestamps_ms.tolist() == [simulator.timestamp_ms_of_cycle(c) for c in before + resumed]
    assert len(buffer.cycles_between(START_MS - 5000, START_MS - 1000)) == 0


# --- a fleet of 20 boxes in 2 processes against a fake cloud ------------------------------------------


class FakeCloud:
    """The cloud's box-facing sockets as CURVE servers: a thread drains measurements and responses.

    Commands go out on an XPUB (a PUB on the wire) so that the test can wait for a box's subscription.
    """

    def __init__(self, ports: list[int], keys: KeyPair) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.measurements: dict[str, list[int]] = {}
        self.responses: list[list[bytes]] = []
        self._ports, self._keys = ports, keys
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._drain)
        self._thread.start()
        assert self._bound.wait(TIMEOUT_S)
        self.commands = self._server(zmq.XPUB, ports[1])
        self._subscribed: set[bytes] = set()
        self._seq = 0

    def _server(self, kind: int, port: int) -> zmq.Socket[bytes]:
        sock = self.context.socket(kind)
        sock.curve_server = True
        sock.curve_secretkey = (self._keys.secret or "").encode()
        sock.curve_publickey = self._keys.public.encode()
        sock.linger = 0
        sock.bind(f"tcp://127.0.0.1:{port}")
        return sock

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
                        self.measurements.setdefault(measurement.box_id, []).append(measurement.timestamp_ms)
                    else:
                        self.responses.append(pull.recv_multipart())
        finally:
            sub.close()
            pull.close()

    def command(self, box_id: str, body: CommandBody) -> tuple[Response, list[RawCycle]]:
        """Send a command and wait for its response."""
        self._seq += 1
        command = Command(seq=self._seq, box_id=box_id, timestamp_ms=START_MS, identity="test", body=body)
        return self.raw_command([box_id.encode(), encode_command(command)], self._seq)

    def raw_command(self, frames: list[bytes], seq: int) -> tuple[Response, list[RawCycle]]:
        topic = frames[0]
        deadline = time.monotonic() + TIMEOUT_S
        while topic not in self._subscribed:
            assert time.monotonic() < deadline, f"box {topic!r} never subscribed to its commands"
            if self.commands.poll(20):
                message = self.commands.recv()
                if message[:1] == b"\x01":
                    self._subscribed.add(message[1:])
        self.commands.send_multipart(frames)
        wait_until(lambda: any(parse_data_response(r)[0].seq == seq for r in self.responses))
        return next(parse_data_response(r) for r in self.responses if parse_data_response(r)[0].seq == seq)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.commands.close()
        self.context.term()


def wait_until(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    found = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return found


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, FakeCloud]]:
    server = generate_keypair()
    ports = free_ports(3)
    options = FleetOptions(
        *(f"tcp://127.0.0.1:{port}" for port in ports),
        server_public_key=server.public,
        reconnect_ivl_max_ms=200,
        linger_ms=0,
    )
    settings = FleetSettings(
        shipped("clean"), BOXES, options, tmp_path_factory.mktemp("fleet") / "keys", processes=2
    )
    fleet = Fleet(settings)
    fleet.start()
    cloud = None
    try:
        assert fleet.wait_ready(TIMEOUT_S)
        time.sleep(0.5)  # measurements made before the cloud is up must arrive too
        cloud = FakeCloud(ports, server)
        yield fleet, cloud
    finally:
        counters = fleet.stop()
        if cloud is not None:
            cloud.close()
        assert counters.commands_failed == 0


def test_every_box_delivers_every_measurement_from_its_first_with_its_own_id_and_key(
    running: tuple[Fleet, FakeCloud],
) -> None:
    fleet, cloud = running
    first_cycles = fleet.first_cycles()
    assert len(first_cycles) == BOXES
    wait_until(
        lambda: len(cloud.measurements) == BOXES and all(len(t) >= 12 for t in cloud.measurements.values())
    )
    assert sorted(cloud.measurements) == [str(1000 + i) for i in range(BOXES)]
    clock = Simulator(Scenario(), start_ms=fleet.start_ms)
    for box_id, timestamps in list(cloud.measurements.items()):
        origin_ms = clock.timestamp_ms_of_cycle(first_cycles[box_id])
        assert timestamps[:12] == [origin_ms + round(10 * k * CYCLE_DURATION_MS) for k in range(1, 13)]
    counters = fleet.counters()
    assert counters.processes_ready == 2
    assert counters.boxes == BOXES
    assert counters.measurements_dropped == 0
    assert 0 < counters.fds_max <= FD_RESERVE + fds_per_box() * BOXES // 2
    listing = fleet.settings.keys_dir / LISTING_NAME
    with listing.open(encoding="ascii") as file:
        keys = {row["box_id"]: row["public_key"] for row in csv.DictReader(file)}
    assert len(set(keys.values())) == BOXES
    response, _ = cloud.command("1007", GetInfo())
    assert isinstance(response.body, InfoResponse)
    assert response.body.pub_key == keys["1007"]
    assert response.body.measurement_rate == 10


def test_get_data_synthesizes_the_boxes_own_counts(running: tuple[Fleet, FakeCloud]) -> None:
    fleet, cloud = running
    simulator = Simulator(shipped("clean"), box_seed=1005, start_ms=fleet.start_ms)
    started_ms = simulator.timestamp_ms_of_cycle(fleet.first_cycles()["1005"])
    wait_until(lambda: time.time() * 1000 > started_ms + 1600)
    start_ms, end_ms = started_ms + 1000, started_ms + 1500
    response, cycles = cloud.command("1005", GetData(start_ms, end_ms))
    # As a ring buffer does: the cycles starting by end_ms and ending after start_ms.
    nearby = range(simulator.cycle_index_at(start_ms) - 1, simulator.cycle_index_at(end_ms) + 2)
    overlapping = [
        i
        for i in nearby
        if start_ms < simulator.timestamp_ms_of_cycle(i) + CYCLE_DURATION_MS
        and simulator.timestamp_ms_of_cycle(i) <= end_ms
    ]
    first, last = overlapping[0], overlapping[-1]
    assert len(overlapping) >= 30  # 500 ms, and a cycle cut at either end
    assert [c.timestamp_ms for c in cycles] == [simulator.timestamp_ms_of_cycle(i) for i in overlapping]
    assert response.body == DataHeader(cycles[0].timestamp_ms, cycles[-1].timestamp_ms)
    expected = simulator.counts(first * 200, (last + 1 - first) * 200).reshape(-1, 200)
    np.testing.assert_array_equal(np.stack([c.counts for c in cycles]), expected)
    other = Simulator(shipped("clean"), box_seed=1006, start_ms=fleet.start_ms)
    assert not np.array_equal(cycles[0].counts, other.counts(first * 200, 200))


def test_a_rate_command_changes_only_that_boxs_cadence(running: tuple[Fleet, FakeCloud]) -> None:
    _, cloud = running
    response, _ = cloud.command("1003", SetMeasurementRate(60))
    assert response.body == RateResponse(old_rate_cycles=10)
    changed_at = len(cloud.measurements["1003"])
    wait_until(lambda: len(cloud.measurements["1003"]) >= changed_at + 3)
    slow = np.diff(cloud.measurements["1003"][changed_at:])
    assert set(slow[1:].tolist()) == {1000}
    steady = np.diff(cloud.measurements["1004"][-10:])
    assert set(steady.tolist()) <= {166, 167}
    info, _ = cloud.command("1003", GetInfo())
    assert isinstance(info.body, InfoResponse) and info.body.measurement_rate == 60


def test_plugin_and_malformed_commands_are_answered_as_a_box_answers(
    running: tuple[Fleet, FakeCloud],
) -> None:
    _, cloud = running
    response, _ = cloud.command("1011", PluginCommand("flicker", "hello"))
    assert response.body == PluginResponse(ok=False)
    response, _ = cloud.command("1012", SetMeasurementRate(0))
    assert isinstance(response.body, ErrorResponse)
    # A command whose body this box does not know: seq 900 and box id 1012 still readable.
    unknown = pb.Command(seq=900, box_id=1012).SerializeToString()
    response, _ = cloud.raw_command([b"1012", unknown], 900)
    assert isinstance(response.body, ErrorResponse)
    assert "malformed" in response.body.message


@pytest.mark.parametrize("mode", [[], ["--full-signal"]], ids=["fast", "full-signal"])
def test_the_cli_runs_a_fleet_and_writes_its_keys(tmp_path: Path, mode: list[str]) -> None:
    root = typer.Typer(cls=OpqGroup)
    root.add_typer(box_cli.app, name="box")
    write_certificate(tmp_path, "server", generate_keypair())
    [port] = free_ports(1)  # nothing listens: the boxes queue what they measure
    result = CliRunner().invoke(
        root,
        [
            "box", "fleet", "--boxes", "3", "--processes", "1", "--first-id", "42",
            "--server-key", str(tmp_path / "server.key"), "--keys-dir", str(tmp_path / "keys"),
            "--measurement-port", str(port), "--command-port", str(port), "--response-port", str(port),
            "--duration", "1.5", *mode,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = re.search(
        r"fleet of 3 boxes in 1 processes: 0 boxes subscribed, (\d+) measurements \(0 sent", result.output
    )
    assert summary is not None, result.output
    assert int(summary[1]) >= 3  # measured, and queued for a cloud that is not there
    assert sorted(p.name for p in (tmp_path / "keys").iterdir() if p.suffix == ".key_secret") == [
        "box42.key_secret",
        "box43.key_secret",
        "box44.key_secret",
    ]
