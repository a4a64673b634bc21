"""The box benchmark: opq.domain's metrics against known truth, their CPU cost, a fleet against a fake cloud.

Accuracy uses simulated supplies whose truth is a parameter of the scenario: the RMS of a sine
with harmonics and noise, a constant (or sinusoidally wandering) frequency, a THD. The fleet runs
in its own processes against a fake cloud of three processes (measurement SUB, command PUB,
response PULL, CURVE servers on 127.0.0.1), one socket each, so that each holds one descriptor a
box and 10,000 boxes fit under a 20,000-file limit.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import resource
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import zmq

from opq.bench.machine import machine as describe_machine
from opq.box.disturbances import SupplyModel
from opq.box.fleet import Fleet, FleetCounters, FleetSettings, histogram_percentile
from opq.box.fleet_metrics import BoxRates, FastMeter
from opq.box.fleet_worker import FleetOptions, ShardStatus
from opq.box.measuring import MeasurementBuilder
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import Scenario, scenario_from_dict
from opq.box.simulator import DEFAULT_CALIBRATION, Simulator, Variations
from opq.box.source import SourceCycle
from opq.domain import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    frequency_per_window,
    rms_per_cycle,
    thd_per_window,
    waveform_metrics,
)
from opq.protocol import KeyPair, decode_measurement, generate_keypair, measurement_topic

NOMINAL_V: Final = 120.0
RMS_WINDOW_CYCLES: Final = 12  # IEC 61000-4-30's 10/12-cycle magnitude interval at 60 Hz
_HARMONICS: Final = ((3, 2.0), (5, 3.0))
_THD_PATTERN: Final = ((3, 2.0), (5, 6.0), (7, 4.0), (11, 2.0), (13, 2.0))  # 8 % (scenarios/thd.toml)
ACCEPT_BACKLOG: Final = 4096
"""The fake cloud's listen backlog (ZeroMQ's default of 100 drops SYNs when thousands connect)."""
DRAIN_S: Final = 30.0
"""After measuring, the boxes stop and get this long to send what they queued, before loss is counted."""
CONNECT_TIMEOUT_S: Final = 120.0
"""How long the fleet is given for every box to be connected and subscribed before measuring anyway."""
_CLEAN: Final = {
    "noise_v_rms": 0.3,
    "seed": 1,
    "drift": {"amplitude_v": 0.6, "period_s": 600.0},
    "wander": {"amplitude_hz": 0.02, "period_s": 30.0, "shape": "random"},
    "harmonics": [{"order": 3, "percent": 0.8}, {"order": 5, "percent": 1.2}],
}
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ErrorFigures:
    """|measured − true| of one metric over windows, in `unit`; `cases` is the worst per case."""

    unit: str
    target: float
    windows: int
    median: float
    p99: float
    max: float
    cases: dict[str, float]


@dataclass(frozen=True)
class AccuracyFigures:
    """opq.domain on simulated ADC counts against the scenarios' known truth."""

    rms_near_nominal: ErrorFigures
    """12-cycle RMS, 59.9–60.1 Hz, 108–132 V [% of 120 V]."""
    rms_off_nominal: ErrorFigures
    """12-cycle RMS, 57–63 Hz [% of 120 V]: the 200-sample blocks are not synchronized to the grid."""
    frequency: ErrorFigures
    """10-cycle frequency, 57–63 Hz, 0.5 V noise, harmonics [mHz]."""
    thd: ErrorFigures
    """12-cycle THD of 1–20 %, 59.5–60.5 Hz [percentage points]."""


@dataclass(frozen=True)
class CpuFigures:
    """Process CPU time per box-second of signal [µs], medians of repeats."""

    builder_rate_10_us: float
    """MeasurementBuilder (the full-signal path of a box) at 10 cycles per measurement."""
    builder_rate_60_us: float
    """MeasurementBuilder at 60 cycles per measurement (OPQ's cadence)."""
    domain_batched_us: float
    """opq.domain's `waveform_metrics` over 60-cycle blocks of 60 boxes at once: the math alone."""
    synthesis_us: float
    """Simulator.counts: samples of a box, as full-signal mode and GetData pay."""
    fast_path_us: float
    """FastMeter.measure for 1,000 boxes: metrics from the model, summaries and encoding."""
    box_seconds: int
    repeats: int


@dataclass(frozen=True)
class FleetFigures:
    """A fleet against a fake cloud on 127.0.0.1, measured over `seconds` after everything connected."""

    boxes: int
    processes: int
    send_slices: int
    seconds: float
    keys_s: float
    """Reading or generating the key pairs."""
    connect_s: float
    """From start to every box subscribed by the cloud."""
    cpu_percent: float
    """Of one core, all fleet processes together."""
    cpu_percent_per_1000_boxes: float
    receiver_cpu_percent: float
    expected_per_s: float
    sent_per_s: float
    received_per_s: float
    sent: int
    received: int
    lost: int
    """Sent by the fleet but not received, over the whole run (counted after a drain, see DRAIN_S)."""
    unsent: int
    """Still queued when the fleet stopped: a fleet that fell behind and did not drain in time."""
    dropped: int
    """Dropped from full queues (a box unheard for longer than its queue holds)."""
    gaps: int
    """Measurements missing between a box's first and last received one."""
    boxes_missing_first: int
    """Boxes whose first received measurement is not their first one."""
    boxes_subscribed: int
    """Boxes the cloud listened to when the measuring began (all, unless they did not connect in time)."""
    send_lateness_p50_ms: float
    send_lateness_p99_ms: float
    tick_lateness_p50_ms: float
    tick_lateness_p99_ms: float
    late_ticks: int
    rss_mb: float
    fds_max: int


@dataclass(frozen=True)
class BoxBenchResult:
    """Every figure of one run of the box benchmark (a section is None when skipped)."""

    accuracy: AccuracyFigures | None
    cpu: CpuFigures | None
    fleet: FleetFigures | None
    machine: dict[str, str | int | float | None]


def run_box_bench(
    *,
    accuracy: bool = True,
    cpu: bool = True,
    fleet_boxes: int = 1000,
    fleet_seconds: float = 20.0,
    processes: int | None = None,
    send_slices: int = 1,
    keys_dir: Path | None = None,
    signal_seconds: int = 10,
    repeats: int = 5,
    fleet_warmup_s: float = 3.0,
    progress: ProgressFn = lambda _: None,
) -> BoxBenchResult:
    """Run the sections asked for; `fleet_boxes` 0 skips the fleet."""
    machine = describe_machine()
    progress("accuracy")
    accuracy_figures = accuracy_of_metrics(signal_seconds) if accuracy else None
    progress("cpu")
    cpu_figures = cpu_of_metrics(repeats) if cpu else None
    fleet_figures = None
    if fleet_boxes:
        progress(f"fleet of {fleet_boxes} boxes")
        with _keys_directory(keys_dir) as directory:
            fleet_figures = run_fleet_bench(
                fleet_boxes,
                fleet_seconds,
                directory,
                processes=processes,
                send_slices=send_slices,
                warmup_s=fleet_warmup_s,
                progress=progress,
            )
    return BoxBenchResult(accuracy_figures, cpu_figures, fleet_figures, machine)


# --- accuracy -----------------------------------------------------------------------------------


def _supply(frequency_hz: float, voltage_v: float, noise_v: float, harmonics: Any, seed: int) -> Scenario:
    supply = {
        "nominal_voltage_v": voltage_v,
        "nominal_frequency_hz": frequency_hz,
        "noise_v_rms": noise_v,
        "seed": seed,
        "harmonics": [{"order": order, "percent": percent} for order, percent in harmonics],
    }
    return scenario_from_dict({"supply": supply})


def _seen_v(scenario: Scenario, cycles: int) -> npt.NDArray[np.float64]:
    simulator = Simulator(scenario, box_seed=0, start_ms=0)
    return simulator.counts(0, cycles * 200) / simulator.calibration_constant


def _figures(unit: str, target: float, errors: dict[str, npt.NDArray[np.float64]]) -> ErrorFigures:
    every = np.concatenate(list(errors.values()))
    return ErrorFigures(
        unit=unit,
        target=target,
        windows=len(every),
        median=float(np.median(every)),
        p99=float(np.percentile(every, 99)),
        max=float(every.max()),
        cases={case: float(values.max()) for case, values in errors.items()},
    )


def accuracy_of_metrics(seconds: int = 10) -> AccuracyFigures:
    """RMS, frequency and THD errors of opq.domain on `seconds` of each simulated supply."""
    cycles = 60 * seconds
    rms_near: dict[str, npt.NDArray[np.float64]] = {}
    rms_off: dict[str, npt.NDArray[np.float64]] = {}
    for case, (f, u) in enumerate(
        [(59.9, 120.0), (60.0, 108.0), (60.0, 120.0), (60.0, 132.0), (60.1, 120.0)]
    ):
        rms_near[f"{f:g} Hz {u:g} V"] = _rms_errors(f, u, cycles, seed=10 + case)
    for case, f in enumerate([57.0, 58.0, 59.0, 59.5, 60.5, 61.0, 62.0, 63.0]):
        rms_off[f"{f:g} Hz"] = _rms_errors(f, NOMINAL_V, cycles, seed=20 + case)
    frequency: dict[str, npt.NDArray[np.float64]] = {}
    for case, f in enumerate(np.arange(57.0, 63.01, 0.5)):
        measured = frequency_per_window(
            _seen_v(_supply(float(f), NOMINAL_V, 0.5, _HARMONICS, 30 + case), cycles), 10
        )
        frequency[f"{f:g} Hz"] = 1000 * np.abs(measured - f)
    wander = scenario_from_dict(
        {"supply": {**_CLEAN, "noise_v_rms": 0.5, "wander": {"amplitude_hz": 0.05, "period_s": 5.0}}}
    )
    truth = SupplyModel(wander).frequency_hz(0, cycles).reshape(-1, 10).mean(axis=1)
    frequency["60 Hz ± 0.05 Hz wander"] = 1000 * np.abs(
        frequency_per_window(_seen_v(wander, cycles), 10) - truth
    )
    thd: dict[str, npt.NDArray[np.float64]] = {}
    for case, (percent, f) in enumerate((p, f) for p in (1, 2, 5, 8, 12, 16, 20) for f in (59.5, 60.0, 60.5)):
        harmonics = [(order, share * percent / 8) for order, share in _THD_PATTERN]
        measured = thd_per_window(_seen_v(_supply(f, NOMINAL_V, 0.2, harmonics, 50 + case), cycles), 12)
        thd[f"{percent} % at {f:g} Hz"] = np.abs(100 * measured - percent)
    return AccuracyFigures(
        rms_near_nominal=_figures("% of 120 V", 0.1, rms_near),
        rms_off_nominal=_figures("% of 120 V", 0.1, rms_off),
        frequency=_figures("mHz", 10.0, frequency),
        thd=_figures("percentage points", 0.1, thd),
    )


def _rms_errors(frequency_hz: float, voltage_v: float, cycles: int, seed: int) -> npt.NDArray[np.float64]:
    """|12-cycle RMS − true RMS| [% of 120 V]; true: √(U²·(1 + Σ harmonic²) + σ²)."""
    noise_v = 0.3
    truth = math.sqrt(voltage_v**2 * (1 + sum((p / 100) ** 2 for _, p in _HARMONICS)) + noise_v**2)
    per_cycle = rms_per_cycle(_seen_v(_supply(frequency_hz, voltage_v, noise_v, _HARMONICS, seed), cycles))
    windows = np.sqrt(np.mean(per_cycle.reshape(-1, RMS_WINDOW_CYCLES) ** 2, axis=1))
    return np.asarray(100 * np.abs(windows - truth) / NOMINAL_V, dtype=np.float64)


# --- CPU ----------------------------------------------------------------------------------------


def _median_cpu_us(run: Callable[[], object], box_seconds: float, repeats: int) -> float:
    spent = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        spent.append(time.process_time() - started)
    return float(np.median(spent)) / box_seconds * 1e6


def cpu_of_metrics(repeats: int = 5, box_seconds: int = 60) -> CpuFigures:
    """CPU per box-second of the full-signal path, opq.domain alone, synthesis and the fast path."""
    clean = scenario_from_dict({"supply": _CLEAN})
    simulator = Simulator(clean, box_seed=1000, start_ms=0)
    cycles = 60 * box_seconds
    counts = simulator.counts(0, cycles * 200).reshape(cycles, 200)
    taken = [SourceCycle(simulator.timestamp_ms_of_cycle(i), counts[i]) for i in range(cycles)]

    def build(rate: int) -> Callable[[], object]:
        def run() -> None:
            builder = MeasurementBuilder("1000", DEFAULT_CALIBRATION, rate)
            for cycle in taken:
                builder.add(cycle)

        return run

    blocks_v = counts.reshape(box_seconds, 60 * 200) / DEFAULT_CALIBRATION
    ids = [str(1000 + i) for i in range(1000)]
    model = SupplyModel(clean)
    fast_seconds = 10

    def fast() -> None:
        meter = FastMeter(
            [model],
            [0] * len(ids),
            Variations.for_boxes(range(1000, 2000)),
            ids,
            BoxRates(len(ids), 10),
            start_ms=0,
            calibration_constant=DEFAULT_CALIBRATION,
        )
        for cycle in range(0, 60 * fast_seconds, 10):
            meter.measure(cycle, 10)

    return CpuFigures(
        builder_rate_10_us=_median_cpu_us(build(10), box_seconds, repeats),
        builder_rate_60_us=_median_cpu_us(build(60), box_seconds, repeats),
        domain_batched_us=_median_cpu_us(lambda: waveform_metrics(blocks_v), box_seconds, repeats),
        synthesis_us=_median_cpu_us(lambda: simulator.counts(0, cycles * 200), box_seconds, repeats),
        fast_path_us=_median_cpu_us(fast, len(ids) * fast_seconds, max(1, repeats // 2)),
        box_seconds=box_seconds,
        repeats=repeats,
    )


# --- the fleet against a fake cloud -------------------------------------------------------------


def _cloud_socket(role: str, endpoint: str, keys: KeyPair, ready: Any, stop: Any, reports: Any) -> None:
    """A fake cloud's socket in its own process; the measurement SUB counts what each box sends."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    kind = {"measurements": zmq.SUB, "commands": zmq.PUB, "responses": zmq.PULL}[role]
    sock = context.socket(kind)
    sock.curve_server = True
    sock.curve_secretkey = (keys.secret or "").encode("ascii")
    sock.curve_publickey = keys.public.encode("ascii")
    sock.linger = 0
    sock.setsockopt(zmq.BACKLOG, ACCEPT_BACKLOG)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.bind(endpoint)
    ready.set()
    boxes: dict[bytes, list[Any]] = {}
    total = 0
    next_report = time.monotonic()
    while not stop.is_set():
        if sock.poll(100) and kind != zmq.PUB:
            while True:
                try:
                    first = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if kind == zmq.SUB:
                    payload = sock.recv()
                    seen = boxes.get(first)
                    if seen is None:
                        boxes[first] = [1, payload, payload]
                    else:
                        seen[0] += 1
                        seen[2] = payload
                    total += 1
                else:
                    while sock.getsockopt(zmq.RCVMORE):
                        sock.recv()
        if time.monotonic() >= next_report:
            next_report += 0.5
            usage = resource.getrusage(resource.RUSAGE_SELF)
            reports.put((role, time.monotonic(), total, usage.ru_utime + usage.ru_stime, None))
    summary = {
        topic: (count, decode_measurement(first).timestamp_ms, decode_measurement(last).timestamp_ms)
        for topic, (count, first, last) in boxes.items()
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    reports.put((role, time.monotonic(), total, usage.ru_utime + usage.ru_stime, summary))
    sock.close()
    context.term()


@dataclass
class _Cloud:
    """The fake cloud's processes and what they have reported."""

    processes: list[Any]
    stop: Any
    reports: Any
    timeline: list[tuple[float, int, float]]
    summary: dict[bytes, tuple[int, int, int]] | None = None

    def read(self) -> None:
        while True:
            try:
                role, at_s, total, cpu_s, summary = self.reports.get_nowait()
            except queue.Empty:
                return
            if role == "measurements":
                self.timeline.append((at_s, total, cpu_s))
                if summary is not None:
                    self.summary = summary

    def received_at(self, at_s: float) -> float:
        times, totals, _ = zip(*self.timeline, strict=True)
        return float(np.interp(at_s, times, totals))


def _start_cloud(endpoints: list[str], keys: KeyPair) -> _Cloud:
    context = multiprocessing.get_context("spawn")
    stop, reports = context.Event(), context.Queue()
    cloud = _Cloud([], stop, reports, [])
    readiness = []
    for role, endpoint in zip(("measurements", "commands", "responses"), endpoints, strict=True):
        ready = context.Event()
        process = context.Process(target=_cloud_socket, args=(role, endpoint, keys, ready, stop, reports))
        process.start()
        cloud.processes.append(process)
        readiness.append((role, endpoint, ready))
    for role, endpoint, ready in readiness:
        if not ready.wait(60):
            _stop_cloud(cloud)
            raise RuntimeError(f"the fake cloud's {role} socket did not bind {endpoint}")
    return cloud


def _stop_cloud(cloud: _Cloud) -> None:
    cloud.stop.set()
    deadline = time.monotonic() + 60
    for process in cloud.processes:
        while process.is_alive() and time.monotonic() < deadline:
            cloud.read()
            process.join(0.1)
        if process.is_alive():
            process.terminate()
            process.join(5)
    cloud.read()


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def _shard_rates(
    before: list[ShardStatus], after: list[ShardStatus], name: str
) -> float:  # per second, summed over the shards, each over its own interval
    by_shard = {s.shard: s for s in before}
    total = 0.0
    for status in after:
        earlier = by_shard[status.shard]
        total += (getattr(status, name) - getattr(earlier, name)) / (status.monotonic_s - earlier.monotonic_s)
    return total


def run_fleet_bench(
    boxes: int,
    seconds: float,
    keys_dir: Path,
    *,
    processes: int | None = None,
    send_slices: int = 1,
    warmup_s: float = 3.0,
    progress: ProgressFn = lambda _: None,
) -> FleetFigures:
    """Run a fleet of `boxes` against a fake cloud and measure it over `seconds` once all are subscribed."""
    server = generate_keypair()
    endpoints = [f"tcp://127.0.0.1:{port}" for port in _free_ports(3)]
    cloud = _start_cloud(endpoints, server)
    measurement, command, response = endpoints
    options = FleetOptions(measurement, command, response, server.public, send_slices=send_slices)
    settings = FleetSettings(
        scenario_from_dict({"supply": _CLEAN}), boxes, options, keys_dir, processes=processes
    )
    fleet = Fleet(settings)
    try:
        started = time.monotonic()
        fleet.start()
        keys_s = time.monotonic() - started
        while fleet.counters().boxes_subscribed < boxes and time.monotonic() - started < CONNECT_TIMEOUT_S:
            cloud.read()
            if fleet.counters().processes_failed:
                raise RuntimeError(f"a fleet process failed: {fleet.counters()}")
            time.sleep(0.1)
        connect_s = time.monotonic() - started
        subscribed = fleet.counters().boxes_subscribed
        progress(f"{subscribed} boxes subscribed after {connect_s:.1f} s; measuring {seconds:g} s")
        time.sleep(warmup_s)  # the figures start once the connecting is over
        before = _snapshot(fleet, cloud)
        time.sleep(seconds)
        after = _snapshot(fleet, cloud)
    finally:
        final = fleet.stop(drain_s=DRAIN_S)
        time.sleep(1.0)  # what is on the wire arrives
        _stop_cloud(cloud)
    return _fleet_figures(
        fleet, cloud, final, before, after, keys_s=keys_s, connect_s=connect_s, send_slices=send_slices
    )


@dataclass(frozen=True)
class _Snapshot:
    statuses: list[ShardStatus]
    counters: FleetCounters
    at_s: float
    fleet_cpu_s: float
    receiver_cpu_s: float


def _process_cpu_s(pid: int | None) -> float:
    """User + system CPU time of a process, all its threads [s] (Linux /proc)."""
    if pid is None:
        return math.nan
    with Path(f"/proc/{pid}/stat").open(encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _snapshot(fleet: Fleet, cloud: _Cloud) -> _Snapshot:
    """CPU times now, and the shards' statuses just after a fresh report from each."""
    at_s = time.monotonic()
    fleet_cpu_s = sum(_process_cpu_s(pid) for pid in fleet.pids())
    receiver_cpu_s = _process_cpu_s(cloud.processes[0].pid)
    marks = {s.shard: s.monotonic_s for s in fleet.statuses()}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fleet.counters()
        cloud.read()
        if all(s.monotonic_s > marks.get(s.shard, 0) for s in fleet.statuses()):
            break
        time.sleep(0.02)
    return _Snapshot(fleet.statuses(), fleet.counters(), at_s, fleet_cpu_s, receiver_cpu_s)


def _fleet_figures(
    fleet: Fleet,
    cloud: _Cloud,
    final: FleetCounters,
    before: _Snapshot,
    after: _Snapshot,
    *,
    keys_s: float,
    connect_s: float,
    send_slices: int,
) -> FleetFigures:
    counters_a, counters_b = before.counters, after.counters
    at_a, at_b = before.at_s, after.at_s
    boxes = fleet.settings.boxes
    cpu_percent = 100 * (after.fleet_cpu_s - before.fleet_cpu_s) / (at_b - at_a)
    summary = cloud.summary or {}
    received = sum(count for count, _, _ in summary.values())
    interval_ms = fleet.settings.options.cycles_per_measurement * CYCLE_DURATION_MS
    gaps = sum(round((last - first) / interval_ms) + 1 - count for count, first, last in summary.values())
    missing_first = 0
    for box_id, cycle in fleet.first_cycles().items():
        origin_ms = fleet.start_ms + cycle * SAMPLES_PER_CYCLE * 1000 // SAMPLE_RATE_HZ
        seen = summary.get(measurement_topic(box_id))
        missing_first += seen is None or seen[1] != origin_ms + round(interval_ms)
    send = counters_b.send_lateness - counters_a.send_lateness
    tick = counters_b.tick_lateness - counters_a.tick_lateness
    return FleetFigures(
        boxes=boxes,
        processes=fleet.processes,
        send_slices=send_slices,
        seconds=round(at_b - at_a, 2),
        keys_s=round(keys_s, 2),
        connect_s=round(connect_s, 2),
        cpu_percent=round(cpu_percent, 1),
        cpu_percent_per_1000_boxes=round(cpu_percent * 1000 / boxes, 2),
        receiver_cpu_percent=round(100 * (after.receiver_cpu_s - before.receiver_cpu_s) / (at_b - at_a), 1),
        expected_per_s=round(boxes * 1000 / interval_ms, 1),
        sent_per_s=round(_shard_rates(before.statuses, after.statuses, "measurements_sent"), 1),
        received_per_s=round((cloud.received_at(at_b) - cloud.received_at(at_a)) / (at_b - at_a), 1),
        sent=final.measurements_sent,
        received=received,
        lost=final.measurements_sent - received,
        unsent=final.measurements_queued,
        dropped=final.measurements_dropped,
        gaps=gaps,
        boxes_missing_first=missing_first,
        boxes_subscribed=counters_a.boxes_subscribed,
        send_lateness_p50_ms=histogram_percentile(send, 50),
        send_lateness_p99_ms=histogram_percentile(send, 99),
        tick_lateness_p50_ms=histogram_percentile(tick, 50),
        tick_lateness_p99_ms=histogram_percentile(tick, 99),
        late_ticks=counters_b.late_ticks - counters_a.late_ticks,
        rss_mb=round(counters_b.rss_kb / 1024, 1),
        fds_max=counters_b.fds_max,
    )


@contextlib.contextmanager
def _keys_directory(given: Path | None) -> Iterator[Path]:
    """The given keys directory, or a temporary one removed afterwards."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="opq-bench-keys-") as name:
        yield Path(name)
