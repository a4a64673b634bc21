"""One process of a box fleet: its boxes' sockets, the tick loop that measures and sends, the command loop.

Each box has the three sockets a real box has (XPUB for measurements, SUB for commands, PUSH for
responses; CURVE clients with the box's own keys) and no monitor sockets: 6 file descriptors a box.
The tick thread owns the XPUBs: every `tick_cycles` cycles it measures all its boxes at once
(`fleet_metrics`), then sends, optionally spread over the tick in slices, and in between waits
for the cloud's (un)subscriptions (`fleet_links.Publisher`: as `Link` does, a box sends only while
the cloud is subscribed and queues otherwise, so nothing is lost to PUB's silent drop before a
(re)connection is up). A command thread owns the SUBs and PUSHes (`fleet_links.CommandServer`)
and answers through each box's `CommandHandler`, whose buffer synthesizes the requested cycles
from the box's simulator (`fleet_samples.SynthesizedCycles`): no box keeps samples.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import zmq

from opq.box.commands import BoxInfo, CommandHandler
from opq.box.disturbances import SupplyModel
from opq.box.fleet_links import SWEEP_S, CommandServer, PacedConnector, Publisher, QueueBounds
from opq.box.fleet_metrics import BoxRates, EncodedBatch, FastMeter, Meter, SignalMeter
from opq.box.fleet_options import LATENESS_EDGES_MS, ShardSpec, ShardStatus
from opq.box.fleet_samples import SynthesizedCycles
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.simulator import Simulator, Variation, Variations
from opq.protocol import command_topic, measurement_topic

logger = logging.getLogger(__name__)

_TIMED_SENDS: Final = 100


class StopFlag(Protocol):
    """A multiprocessing or threading Event, as far as the shard uses it."""

    def is_set(self) -> bool: ...


@dataclass
class _Tally:
    ticks: int = 0
    late_ticks: int = 0
    built: int = 0
    send_lateness: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LATENESS_EDGES_MS), np.int64)
    )
    tick_lateness: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LATENESS_EDGES_MS), np.int64)
    )


def _histogram_add(histogram: npt.NDArray[np.int64], lateness_ms: npt.NDArray[np.float64]) -> None:
    bins = np.searchsorted(LATENESS_EDGES_MS, lateness_ms, side="right") - 1
    np.add.at(histogram, np.clip(bins, 0, len(histogram) - 1), 1)


class Shard:
    """The boxes of one process: `run` until `stop` is set, reporting `ShardStatus` through `report`."""

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec
        options = spec.options
        n = len(spec.box_ids)
        models = [SupplyModel(scenario) for scenario in spec.scenarios]
        seeds = [int(box_id) for box_id in spec.box_ids]
        variations = [Variation.for_box(seed) for seed in seeds]

        def simulator(box: int) -> Simulator:
            return Simulator(
                models[spec.box_models[box]],
                box_seed=seeds[box],
                calibration_constant=options.calibration_constant,
                variation=variations[box],
                start_ms=spec.start_ms,
            )

        self.meter: Meter
        if options.full_signal:
            self.meter = SignalMeter(
                [simulator(box) for box in range(n)], spec.box_ids, options.cycles_per_measurement
            )
        else:
            self.meter = FastMeter(
                models,
                spec.box_models,
                Variations.of(variations),
                spec.box_ids,
                BoxRates(n, options.cycles_per_measurement),
                start_ms=spec.start_ms,
                calibration_constant=options.calibration_constant,
            )
        self._simulator = simulator
        self.handlers: list[CommandHandler] = []
        self.first_cycle: int | None = None
        self._end_cycle = simulator(0).duration_cycles if n else None
        self._tally = _Tally()
        self._fds = 0
        self._fds_counted_s = -math.inf
        self._ready = False
        self._quiesce: StopFlag | None = None

    def run(
        self, stop: StopFlag, report: Callable[[ShardStatus], None], quiesce: StopFlag | None = None
    ) -> None:
        """Open the sockets, tick until `stop`, close them.

        After the scenario's end, or once `quiesce` is set, the boxes measure no more but still
        send what they queued and answer commands.
        """
        self._quiesce = quiesce
        spec, options = self.spec, self.spec.options
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        context.max_sockets = 3 * len(spec.box_ids) + 64
        sockets: list[zmq.Socket[bytes]] = []
        command_stop = threading.Event()
        try:
            boxes = range(len(spec.box_ids))
            xpubs = [self._socket(context, zmq.XPUB, box) for box in boxes]
            subs = [self._socket(context, zmq.SUB, box) for box in boxes]
            pushes = [self._socket(context, zmq.PUSH, box) for box in boxes]
            sockets = [*xpubs, *subs, *pushes]
            self.first_cycle = self._starting_cycle()
            self.handlers = self._command_handlers(self.first_cycle)
            bounds = QueueBounds(options.queue_seconds, options.queue_max)
            pace = (options.connect_per_s, options.connect_burst)
            publisher = Publisher(
                xpubs,
                [measurement_topic(b) for b in spec.box_ids],
                bounds,
                PacedConnector([(x, options.measurement_endpoint) for x in xpubs], *pace),
            )
            # A box's command sockets connect in step with its measurement socket, from their own thread.
            command_sockets = [
                pair
                for sub, push in zip(subs, pushes, strict=True)
                for pair in ((sub, options.command_endpoint), (push, options.response_endpoint))
            ]
            commands = CommandServer(
                subs, pushes, self.handlers, PacedConnector(command_sockets, 2 * pace[0], 2 * pace[1])
            )
            thread = threading.Thread(
                target=commands.run, args=(command_stop,), name=f"fleet-{spec.shard}-commands"
            )
            thread.start()
            self._ready = True
            report(self._status(publisher, commands))
            try:
                self._tick(self.first_cycle, stop, publisher, commands, report)
            finally:
                command_stop.set()
                thread.join()
                publisher.close()
            report(self._status(publisher, commands, final=True))
        finally:
            for sock in sockets:
                sock.close(linger=options.linger_ms)
            context.term()

    def _starting_cycle(self) -> int:
        """The first tick of the fleet's grid from now: the boxes start with a whole tick to come."""
        spec, tick = self.spec, self.spec.options.tick_cycles
        now = math.floor((time.time() * 1000 - spec.start_ms) / CYCLE_DURATION_MS)
        return spec.first_cycle + max(0, -(-(now - spec.first_cycle) // tick) * tick)

    def _command_handlers(self, first_cycle: int) -> list[CommandHandler]:
        options, spec = self.spec.options, self.spec
        capacity = max(1, round(options.buffer_seconds * 60))
        return [
            CommandHandler(
                BoxInfo(spec.box_ids[box], spec.keys[box].public, options.calibration_constant),
                SynthesizedCycles(
                    lambda box=box: self._simulator(box),  # type: ignore[misc]
                    first_cycle=first_cycle,
                    capacity_cycles=capacity,
                ),
                self.meter.rate_control(box),
            )
            for box in range(len(spec.box_ids))
        ]

    def _socket(self, context: zmq.Context[zmq.Socket[bytes]], kind: int, box: int) -> zmq.Socket[bytes]:
        """A box's socket, set up but not connected yet (`PacedConnector` does that)."""
        options, keys = self.spec.options, self.spec.keys[box]
        sock = context.socket(kind)
        sock.curve_secretkey = (keys.secret or "").encode("ascii")
        sock.curve_publickey = keys.public.encode("ascii")
        sock.curve_serverkey = options.server_public_key.encode("ascii")
        sock.setsockopt(zmq.LINGER, options.linger_ms)
        sock.setsockopt(zmq.RECONNECT_IVL, options.reconnect_ivl_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, options.reconnect_ivl_max_ms)
        sock.setsockopt(zmq.HEARTBEAT_IVL, options.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * options.heartbeat_ivl_ms)
        sock.setsockopt(zmq.SNDHWM, options.send_hwm)
        if kind == zmq.XPUB:
            sock.setsockopt(zmq.IMMEDIATE, 1)  # no pipe (and no subscription) while disconnected
            sock.setsockopt(zmq.XPUB_NODROP, 1)
        elif kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, command_topic(self.spec.box_ids[box]))
        return sock

    def _tick(
        self,
        first_cycle: int,
        stop: StopFlag,
        publisher: Publisher,
        commands: CommandServer,
        report: Callable[[ShardStatus], None],
    ) -> None:
        spec, options, tally = self.spec, self.spec.options, self._tally
        parent = os.getppid()
        tick_ms = options.tick_cycles * CYCLE_DURATION_MS
        cycle = first_cycle
        next_status = next_sweep = time.monotonic()

        def idle_until(due_ms: float) -> bool:
            """Serve subscriptions until the wall clock reaches `due_ms`; False if told to stop."""
            nonlocal next_status, next_sweep
            while True:
                if stop.is_set() or os.getppid() != parent:
                    return False
                now_s = time.monotonic()
                if now_s >= next_sweep:
                    next_sweep = now_s + SWEEP_S
                    publisher.sweep()
                if now_s >= next_status:
                    next_status = now_s + options.status_interval_s
                    report(self._status(publisher, commands))
                remaining_s = due_ms / 1000 - time.time()
                # Even when behind, with no time to wait: subscriptions are read, queues sent and
                # sockets connected, or a box subscribed meanwhile would never get its queue out.
                publisher.poll(max(0.0, min(remaining_s, 0.1)))
                if remaining_s <= 0:
                    return True

        while (self._end_cycle is None or cycle < self._end_cycle) and not (
            self._quiesce is not None and self._quiesce.is_set()
        ):
            count = (
                options.tick_cycles
                if self._end_cycle is None
                else min(options.tick_cycles, self._end_cycle - cycle)
            )
            due_ms = spec.start_ms + (cycle + count) * CYCLE_DURATION_MS
            if not idle_until(due_ms):
                return
            started_ms = time.time() * 1000
            _histogram_add(tally.tick_lateness, np.array([started_ms - due_ms]))
            tally.ticks += 1
            tally.late_ticks += started_ms - due_ms > tick_ms
            batches = self.meter.measure(cycle, count)
            tally.built += sum(len(batch.payloads) for batch in batches)
            self._send(batches, publisher, due_ms, tick_ms, idle_until)
            cycle += count
        logger.info("fleet shard %d: no more measuring; sending what is queued, serving commands", spec.shard)
        idle_until(math.inf)

    def _send(
        self,
        batches: list[EncodedBatch],
        publisher: Publisher,
        due_ms: float,
        tick_ms: float,
        idle_until: Callable[[float], bool],
    ) -> None:
        items = [
            (box, batch.timestamp_ms, payload)
            for batch in batches
            for box, payload in zip(batch.boxes, batch.payloads, strict=True)
        ]
        slices = max(1, self.spec.options.send_slices)
        size = -(-len(items) // slices)
        for j in range(slices):
            part = items[j * size : (j + 1) * size]
            if not part:
                break
            if j and not idle_until(due_ms + j * tick_ms / slices):
                return
            for start in range(0, len(part), _TIMED_SENDS):
                sent = [
                    t
                    for box, t, payload in part[start : start + _TIMED_SENDS]
                    if publisher.publish(box, t, payload)
                ]
                if sent:  # timed a hundred at a time, to keep the bookkeeping off the send path
                    lateness_ms = time.time() * 1000 - np.array(sent, dtype=np.float64)
                    _histogram_add(self._tally.send_lateness, lateness_ms)

    def _status(self, publisher: Publisher, commands: CommandServer, *, final: bool = False) -> ShardStatus:
        tally = self._tally
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if (
            final or self._fds == 0 or time.monotonic() - self._fds_counted_s >= 10.0
        ):  # listing 15,000 fds costs ms
            self._fds, self._fds_counted_s = sum(1 for _ in Path("/proc/self/fd").iterdir()), time.monotonic()
        return ShardStatus(
            shard=self.spec.shard,
            boxes=len(self.spec.box_ids),
            monotonic_s=time.monotonic(),
            cpu_s=usage.ru_utime + usage.ru_stime,
            rss_kb=_rss_kb(),
            fds=self._fds,
            ticks=tally.ticks,
            late_ticks=tally.late_ticks,
            measurements_built=tally.built,
            measurements_sent=publisher.sent,
            measurements_queued=publisher.queued,
            measurements_dropped=publisher.dropped,
            boxes_subscribed=sum(publisher.subscribed),
            commands_handled=sum(h.handled for h in self.handlers),
            commands_ignored=sum(h.ignored for h in self.handlers),
            commands_malformed=sum(h.malformed for h in self.handlers),
            commands_failed=commands.failed,
            responses_failed=commands.responses_failed,
            send_lateness=tuple(tally.send_lateness.tolist()),
            tick_lateness=tuple(tally.tick_lateness.tolist()),
            first_cycle=self.first_cycle,
            ready=self._ready,
            final=final,
        )


def _rss_kb() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_shard_from(specs: Any, stop: StopFlag, statuses: Any, quiesce: StopFlag | None = None) -> None:
    """A worker process's entry: receive its `ShardSpec` from a pipe's end (`specs`), then `run_shard`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it sets `stop`
    spec = specs.recv()
    specs.close()
    run_shard(spec, stop, statuses, quiesce)


def run_shard(spec: ShardSpec, stop: StopFlag, statuses: Any, quiesce: StopFlag | None = None) -> None:
    """A worker process's entry: run the shard, putting `ShardStatus`es on a multiprocessing queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it sets `stop`
    if spec.options.log_setup is not None:
        spec.options.log_setup()
    try:
        Shard(spec).run(stop, statuses.put, quiesce)
    except Exception as err:
        logger.exception("fleet shard %d failed", spec.shard)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        statuses.put(
            ShardStatus(
                shard=spec.shard,
                boxes=len(spec.box_ids),
                monotonic_s=time.monotonic(),
                cpu_s=usage.ru_utime + usage.ru_stime,
                rss_kb=_rss_kb(),
                fds=0,
                final=True,
                error=f"{type(err).__name__}: {err}",
            )
        )
