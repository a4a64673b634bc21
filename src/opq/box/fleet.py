"""A fleet of simulated boxes: ids and keys, how many processes the fd limit asks for, and those processes.

A box holds three connecting ZeroMQ sockets (measurements, commands, responses), and each costs two
file descriptors: its mailbox (an eventfd) and its TCP connection. Measured on libzmq 4.3.5: 6.0
descriptors a box without monitor sockets, 12.0 with one monitor per socket (as `Link` has, plus
its wake pipe), so the fleet has no monitors. A process may hold `RLIMIT_NOFILE` descriptors
(20,000 here, not raisable), less a reserve for Python, libraries, epoll sets and the ZeroMQ
context's own; `boxes_per_process` divides the rest by 6 and caps it at 2,500 boxes, so that one
process's tick (measure, encode and send 2,500 boxes) stays a fraction of its 166.67 ms.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import multiprocessing
import os
import queue
import resource
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from opq.box.fleet_options import LATENESS_EDGES_MS, FleetOptions, ShardSpec, ShardStatus
from opq.box.fleet_worker import run_shard_from
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import Scenario, scenario_from_dict
from opq.errors import ConfigError
from opq.protocol import MAX_WIRE_BOX_ID, KeyPair, generate_keypair, read_certificate, write_certificate

logger = logging.getLogger(__name__)

SOCKETS_PER_BOX: Final = 3
FDS_PER_SOCKET: Final = 2
"""A connecting socket's mailbox and its TCP connection (measured)."""
FDS_PER_MONITOR: Final = 2
"""What a monitor socket adds to its socket (measured): its own mailbox and the inproc pair's."""
FD_RESERVE: Final = 512
"""Descriptors left for Python, numpy, epoll sets, the ZeroMQ context and the status queue."""
MAX_BOXES_PER_PROCESS: Final = 2500
PIPE_SETTLE_S: Final = 1.0
"""How long a drained fleet waits for ZeroMQ to write out what it took before the sockets close [s]."""
LISTING_NAME: Final = "fleet-boxes.csv"
"""The file in the keys directory listing each box id and its public key, for the cloud to register."""


def fds_per_box(*, monitored: bool = False) -> int:
    """File descriptors one fleet box holds while connected: 6, or 12 with a monitor per socket."""
    return SOCKETS_PER_BOX * (FDS_PER_SOCKET + (FDS_PER_MONITOR if monitored else 0))


def boxes_per_process(
    fd_limit: int,
    *,
    box_fds: int = fds_per_box(),
    reserve: int = FD_RESERVE,
    max_boxes: int = MAX_BOXES_PER_PROCESS,
) -> int:
    """Most boxes one process can hold within `fd_limit` descriptors, at most `max_boxes`."""
    fitting = (fd_limit - reserve) // box_fds
    if fitting < 1:
        raise ConfigError(
            f"a process may open {fd_limit} files: not enough for one box ({box_fds} + {reserve})"
        )
    return min(fitting, max_boxes)


def processes_for(boxes: int, fd_limit: int | None = None, **budget: Any) -> int:
    """Processes a fleet of `boxes` needs: enough that each stays within `boxes_per_process`."""
    limit = open_files_limit() if fd_limit is None else fd_limit
    return max(1, math.ceil(boxes / boxes_per_process(limit, **budget)))


def open_files_limit() -> int:
    """This process's limit on open files (RLIMIT_NOFILE, soft)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def fleet_box_ids(first_id: int, count: int) -> list[str]:
    """Consecutive box ids from `first_id`."""
    if first_id < 0 or count < 1:
        raise ConfigError(f"a fleet needs at least one box and ids from 0 up, not {count} from {first_id}")
    if first_id + count - 1 > MAX_WIRE_BOX_ID:
        raise ConfigError(
            f"box ids {first_id} to {first_id + count - 1} go past {MAX_WIRE_BOX_ID}, the largest"
        )
    return [str(first_id + i) for i in range(count)]


def fleet_keys(keys_dir: Path, box_ids: Sequence[str]) -> list[KeyPair]:
    """Each box's key pair: read from `box<ID>.key_secret` in `keys_dir`, else generated and written there.

    Also (re)writes `fleet-boxes.csv` there: `box_id,public_key` for every box, for the cloud.
    """
    if not keys_dir.is_dir():
        try:
            keys_dir.mkdir(parents=True)
        except OSError as err:
            raise ConfigError(f"cannot create the keys directory {keys_dir}: {err}") from err
    pairs = []
    generated = 0
    for box_id in box_ids:
        secret_path = keys_dir / f"box{box_id}.key_secret"
        if secret_path.exists():
            pair = read_certificate(secret_path)
            if pair.secret is None:
                raise ConfigError(f"{secret_path} has no secret-key line")
        else:
            pair = generate_keypair()
            write_certificate(keys_dir, f"box{box_id}", pair)
            generated += 1
        pairs.append(pair)
    listing = keys_dir / LISTING_NAME
    temporary = listing.with_name(f".{LISTING_NAME}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="ascii", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["box_id", "public_key"])
        writer.writerows([box_id, pair.public] for box_id, pair in zip(box_ids, pairs, strict=True))
    temporary.replace(listing)
    logger.info("fleet keys in %s: %d read, %d generated", keys_dir, len(pairs) - generated, generated)
    return pairs


def with_local_disturbances(scenario: Scenario, path: Path) -> Scenario:
    """The scenario plus the disturbances of a TOML file (`[[disturbances]]` tables only), validated."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"local disturbances {path}: cannot read it: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"local disturbances {path}: not valid TOML: {err}") from err
    extra = set(data) - {"disturbances", "description"}
    if extra:
        raise ConfigError(
            f"local disturbances {path}: only [[disturbances]] belong here, not {sorted(extra)}"
        )
    local = scenario_from_dict(
        {"supply": scenario.supply.model_dump(), "disturbances": data.get("disturbances", [])}, path.name
    )
    return scenario.model_copy(update={"disturbances": [*scenario.disturbances, *local.disturbances]})


@dataclass(frozen=True)
class FleetSettings:
    """A fleet: how many boxes on which supply, their keys, and the options every process shares."""

    scenario: Scenario
    boxes: int
    options: FleetOptions
    keys_dir: Path
    first_id: int = 1000
    processes: int | None = None
    """None: `processes_for` the fd limit."""
    local_scenario: Scenario | None = None
    """The supply (shared disturbances and the local ones) of the first `local_boxes` boxes."""
    local_boxes: int = 0
    start_ms: int | None = None
    """Time of sample 0 [ms since the epoch]; None: the scenario's start_ms, or now."""
    fd_limit: int | None = None
    """Open files a process may hold; None: this process's limit (RLIMIT_NOFILE), which workers inherit."""


@dataclass(frozen=True)
class FleetCounters:
    """The latest status of every process of a fleet, summed; lateness percentiles in ms."""

    processes: int
    processes_ready: int
    processes_failed: int
    boxes: int
    boxes_subscribed: int
    cpu_s: float
    rss_kb: int
    fds_max: int
    ticks: int
    late_ticks: int
    measurements_built: int
    measurements_sent: int
    measurements_queued: int
    measurements_dropped: int
    commands_handled: int
    commands_ignored: int
    commands_malformed: int
    commands_failed: int
    responses_failed: int
    send_lateness: npt.NDArray[np.int64]
    tick_lateness: npt.NDArray[np.int64]

    def send_lateness_ms(self, percent: float) -> float:
        """A percentile of send time − measurement timestamp [ms], over all measurements sent at once."""
        return histogram_percentile(self.send_lateness, percent)

    def tick_lateness_ms(self, percent: float) -> float:
        """A percentile of tick start − its due time [ms]."""
        return histogram_percentile(self.tick_lateness, percent)


def histogram_percentile(histogram: npt.NDArray[np.int64], percent: float) -> float:
    """The upper edge of the LATENESS_EDGES_MS bin holding the percentile [ms]; NaN if empty."""
    total = int(histogram.sum())
    if total == 0:
        return math.nan
    index = int(np.searchsorted(np.cumsum(histogram), percent / 100 * total, side="left"))
    edges = LATENESS_EDGES_MS
    return float(edges[index + 1]) if index + 1 < len(edges) else math.inf


class Fleet:
    """The fleet's worker processes: `start`, read `counters`, `stop` (or use it as a context manager)."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self.box_ids = fleet_box_ids(settings.first_id, settings.boxes)
        fd_limit = settings.fd_limit or open_files_limit()
        self.processes = settings.processes or processes_for(settings.boxes, fd_limit)
        if self.processes > settings.boxes:
            raise ConfigError(
                f"{self.processes} processes for {settings.boxes} boxes: fewer processes, please"
            )
        per_process = math.ceil(settings.boxes / self.processes)
        fitting = boxes_per_process(fd_limit, max_boxes=per_process)
        if per_process > fitting:
            raise ConfigError(
                f"{per_process} boxes a process need {per_process * fds_per_box() + FD_RESERVE} open files, "
                f"more than the limit of {fd_limit} allows ({fitting} boxes): use more processes"
            )
        scenario = settings.scenario
        self.start_ms = settings.start_ms or scenario.supply.start_ms or time.time_ns() // 1_000_000
        self.first_cycle = max(0, math.floor((time.time() * 1000 - self.start_ms) / CYCLE_DURATION_MS))
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._quiesce = self._context.Event()
        self._statuses: Any = self._context.Queue()
        self._workers: list[Any] = []
        self._latest: dict[int, ShardStatus] = {}
        self.shards: list[ShardSpec] = []

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def shard_specs(self, keys: Sequence[KeyPair]) -> list[ShardSpec]:
        """How the boxes are split among the processes: consecutive ids, as even as can be."""
        s = self.settings
        scenarios = (s.scenario,) if s.local_scenario is None else (s.scenario, s.local_scenario)
        models = [1 if s.local_scenario is not None and box < s.local_boxes else 0 for box in range(s.boxes)]
        bounds = np.linspace(0, s.boxes, self.processes + 1).round().astype(int)
        return [
            ShardSpec(
                shard=shard,
                options=s.options,
                box_ids=tuple(self.box_ids[a:b]),
                keys=tuple(keys[a:b]),
                box_models=tuple(models[a:b]),
                scenarios=scenarios,
                start_ms=self.start_ms,
                first_cycle=self.first_cycle,
            )
            for shard, (a, b) in enumerate(itertools.pairwise(bounds.tolist()))
        ]

    def start(self) -> None:
        """Read or make the keys, then start the processes (they connect and begin measuring at once)."""
        keys = fleet_keys(self.settings.keys_dir, self.box_ids)
        logger.info("fleet of %d boxes in %d processes", len(self.box_ids), self.processes)
        self.shards = self.shard_specs(keys)
        # A spec (2,500 key pairs) outgrows a pipe's buffer: passed as a Process argument, each
        # start() would wait for its child to import numpy and zmq. Sent afterwards, they boot together.
        senders = []
        for spec in self.shards:
            receiver, sender = self._context.Pipe(duplex=False)
            worker = self._context.Process(
                target=run_shard_from,
                args=(receiver, self._stop, self._statuses, self._quiesce),
                name=f"opq-fleet-{spec.shard}",
            )
            worker.start()
            receiver.close()
            self._workers.append(worker)
            senders.append(sender)
        for spec, sender in zip(self.shards, senders, strict=True):
            sender.send(spec)
            sender.close()

    def pids(self) -> list[int | None]:
        """The process ids of the worker processes."""
        return [worker.pid for worker in self._workers]

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until every process has opened its sockets; False on timeout or if one failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counters = self.counters()
            if counters.processes_failed:
                return False
            if counters.processes_ready == self.processes:
                return True
            time.sleep(0.05)
        return False

    def statuses(self) -> list[ShardStatus]:
        """Each process's latest status (read `counters` first to take in new ones)."""
        return [self._latest[shard] for shard in sorted(self._latest)]

    def first_cycles(self) -> dict[str, int]:
        """The cycle each box started at, for the boxes whose process has opened its sockets."""
        started = {s.shard: s.first_cycle for s in self.statuses() if s.first_cycle is not None}
        return {
            box_id: started[spec.shard]
            for spec in self.shards
            if spec.shard in started
            for box_id in spec.box_ids
        }

    def counters(self) -> FleetCounters:
        """The sum of the processes' latest statuses."""
        while True:
            try:
                status: ShardStatus = self._statuses.get_nowait()
            except queue.Empty:
                break
            self._latest[status.shard] = status
        return _summed(self.processes, list(self._latest.values()))

    def stop(self, timeout_s: float = 30.0, *, drain_s: float = 0.0) -> FleetCounters:
        """Tell the processes to stop, wait for their last status, and return the counters.

        With `drain_s`, the boxes first stop measuring and are given up to that long to send
        what they have queued (a fleet that fell behind has a backlog to flush).
        """
        if drain_s > 0:
            self._drain(drain_s)
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            while worker.is_alive() and time.monotonic() < deadline:
                self.counters()  # a process exits only once its queued statuses are read
                worker.join(0.05)
            if worker.is_alive():
                logger.warning("fleet process %s did not stop in time; terminating it", worker.name)
                worker.terminate()
                worker.join(5.0)
        return self.counters()

    def _drain(self, timeout_s: float) -> None:
        self._quiesce.set()
        asked_s = time.monotonic()
        deadline = asked_s + timeout_s
        while time.monotonic() < deadline:
            counters = self.counters()
            fresh = all(s.monotonic_s > asked_s for s in self.statuses())
            if fresh and counters.measurements_queued == 0:
                time.sleep(PIPE_SETTLE_S)  # what left the queues may still be in ZeroMQ's pipes
                return
            time.sleep(0.1)
        logger.warning(
            "fleet: %d measurements still queued after %.0f s", self.counters().measurements_queued, timeout_s
        )


def _summed(processes: int, statuses: list[ShardStatus]) -> FleetCounters:
    def total(name: str) -> int:
        return sum(int(getattr(s, name)) for s in statuses)

    return FleetCounters(
        processes=processes,
        processes_ready=sum(s.ready and s.error is None for s in statuses),
        processes_failed=sum(s.error is not None for s in statuses),
        boxes=total("boxes"),
        boxes_subscribed=total("boxes_subscribed"),
        cpu_s=sum(s.cpu_s for s in statuses),
        rss_kb=total("rss_kb"),
        fds_max=max((s.fds for s in statuses), default=0),
        ticks=total("ticks"),
        late_ticks=total("late_ticks"),
        measurements_built=total("measurements_built"),
        measurements_sent=total("measurements_sent"),
        measurements_queued=total("measurements_queued"),
        measurements_dropped=total("measurements_dropped"),
        commands_handled=total("commands_handled"),
        commands_ignored=total("commands_ignored"),
        commands_malformed=total("commands_malformed"),
        commands_failed=total("commands_failed"),
        responses_failed=total("responses_failed"),
        send_lateness=_histogram_sum(statuses, "send_lateness"),
        tick_lateness=_histogram_sum(statuses, "tick_lateness"),
    )


def _histogram_sum(statuses: list[ShardStatus], name: str) -> npt.NDArray[np.int64]:
    total = np.zeros(len(LATENESS_EDGES_MS), np.int64)
    for status in statuses:
        values = getattr(status, name)
        if values:
            total += np.asarray(values, dtype=np.int64)
    return total
