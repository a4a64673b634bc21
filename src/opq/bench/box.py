"""The box benchmark: opq.domain's metrics against known truth, their CPU cost, a fleet against a fake cloud.

Accuracy and CPU are in `box_metrics`. The fleet runs in its own processes against a fake cloud
of three processes (measurement SUB, command PUB, response PULL, CURVE servers on 127.0.0.1), one
socket each, so that each holds one descriptor a box and 10,000 boxes fit under a 20,000-file limit.
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
import zmq

from opq.bench.box_metrics import (
    CLEAN_SUPPLY,
    AccuracyFigures,
    CpuFigures,
    ErrorFigures,
    accuracy_of_metrics,
    cpu_of_metrics,
)
from opq.bench.machine import machine as describe_machine
from opq.box.fleet import Fleet, FleetCounters, FleetSettings, histogram_percentile
from opq.box.fleet_options import FleetOptions, ShardStatus
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import scenario_from_dict
from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.protocol import KeyPair, decode_measurement, generate_keypair, measurement_topic

__all__ = [
    "AccuracyFigures",
    "BoxBenchResult",
    "CpuFigures",
    "ErrorFigures",
    "FleetFigures",
    "accuracy_of_metrics",
    "cpu_of_metrics",
    "run_box_bench",
    "run_fleet_bench",
]

ACCEPT_BACKLOG: Final = 4096
"""The fake cloud's listen backlog (ZeroMQ's default of 100 drops SYNs when thousands connect)."""
DRAIN_S: Final = 30.0
"""After measuring, the boxes stop and get this long to send what they queued, before loss is counted."""
CONNECT_TIMEOUT_S: Final = 120.0
"""How long the fleet is given for every box to be connected and subscribed before measuring anyway."""
ProgressFn = Callable[[str], None]


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
        scenario_from_dict({"supply": CLEAN_SUPPLY}), boxes, options, keys_dir, processes=processes
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
