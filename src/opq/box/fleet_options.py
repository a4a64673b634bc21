"""What the processes of a box fleet share and report: the fleet's options, a shard's spec and its status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from opq.box.measuring import check_rate
from opq.box.scenario import Scenario
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.errors import ConfigError
from opq.protocol import KeyPair

LATENESS_EDGES_MS: Final = np.concatenate(
    [np.arange(0.0, 10.0, 0.1), np.arange(10.0, 1000.0, 1.0), np.arange(1000.0, 60_001.0, 100.0)]
)
"""Bin edges of the lateness histograms [ms]; the last bin takes everything later."""


@dataclass(frozen=True)
class FleetOptions:
    """What every process of a fleet shares: endpoints, server key, rates, buffers and socket settings."""

    measurement_endpoint: str
    command_endpoint: str
    response_endpoint: str
    server_public_key: str
    cycles_per_measurement: int = 10
    tick_cycles: int = 10
    """Cycles between two sends of the whole shard [cycles]: 10 is 166.67 ms."""
    send_slices: int = 1
    """Sends of a tick are spread over the tick in this many slices (1: all at once)."""
    full_signal: bool = False
    calibration_constant: float = DEFAULT_CALIBRATION_COUNTS_PER_V
    buffer_seconds: float = 3600.0
    """Cycles a box can give the cloud [s back from now], synthesized on request."""
    queue_seconds: float = 120.0
    """Measurements a box keeps while the cloud does not listen [s of measurement time]."""
    queue_max: int = 7200
    heartbeat_ivl_ms: int = 10_000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 5_000
    send_hwm: int = 1_000
    linger_ms: int = 200
    connect_per_s: float = 500.0
    """Boxes a process connects per second after the first `connect_burst` (see `PacedConnector`)."""
    connect_burst: int = 100
    status_interval_s: float = 1.0
    log_setup: Callable[[], None] | None = None
    """Called first in each worker process (logging is the CLI's to configure)."""

    def __post_init__(self) -> None:
        try:
            check_rate(self.cycles_per_measurement)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if self.tick_cycles < 1 or self.send_slices < 1 or self.connect_per_s <= 0:
            raise ConfigError(
                f"tick_cycles ({self.tick_cycles}), send_slices ({self.send_slices}) and connect_per_s "
                f"({self.connect_per_s}) must be positive"
            )


@dataclass(frozen=True)
class ShardSpec:
    """One process's boxes: ids, keys, and which supply model (scenario) each box is on."""

    shard: int
    options: FleetOptions
    box_ids: tuple[str, ...]
    keys: tuple[KeyPair, ...]
    box_models: tuple[int, ...]
    scenarios: tuple[Scenario, ...]
    start_ms: int
    """Time of sample 0 of every box [ms since the epoch]."""
    first_cycle: int
    """The earliest cycle the boxes may start at (the fleet's launch): a shard starts at the first
    tick after its sockets are open, on a tick grid counted from this cycle in every process."""


@dataclass(frozen=True)
class ShardStatus:
    """What a shard has done so far, reported to the parent process every `status_interval_s`."""

    shard: int
    boxes: int
    monotonic_s: float
    cpu_s: float
    rss_kb: int
    fds: int
    ticks: int = 0
    late_ticks: int = 0
    """Ticks that started more than a tick after they were due."""
    measurements_built: int = 0
    measurements_sent: int = 0
    measurements_queued: int = 0
    measurements_dropped: int = 0
    boxes_subscribed: int = 0
    commands_handled: int = 0
    commands_ignored: int = 0
    commands_malformed: int = 0
    commands_failed: int = 0
    responses_failed: int = 0
    send_lateness: tuple[int, ...] = ()
    """Histogram over LATENESS_EDGES_MS: send time − measurement timestamp, sent at once."""
    tick_lateness: tuple[int, ...] = ()
    """Histogram over LATENESS_EDGES_MS: tick start − its due time."""
    first_cycle: int | None = None
    """The cycle this shard's boxes started at: their first measurement ends `rate` cycles later."""
    ready: bool = False
    final: bool = False
    error: str | None = None
