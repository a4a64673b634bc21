"""`opq box ...`: run a box (simulated supply, OPQ Box device, or replayed recording) against the cloud."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from opq.box.config import (
    DEFAULT_COMMAND_PORT,
    DEFAULT_MEASUREMENT_PORT,
    DEFAULT_RESPONSE_PORT,
    BoxConfig,
    load_box_config,
)
from opq.box.device import DeviceSource
from opq.box.fleet import Fleet, FleetCounters, FleetSettings, with_local_disturbances
from opq.box.fleet_options import FleetOptions
from opq.box.replay import RecordingSource
from opq.box.runtime import Box
from opq.box.scenario import Scenario, load_scenario
from opq.box.simulator import Simulator
from opq.box.source import SampleSource
from opq.cli.logs import configure_logging
from opq.config import Settings
from opq.errors import ConfigError
from opq.protocol import read_certificate

logger = logging.getLogger(__name__)

app = typer.Typer(help="Run a box that streams measurements to the cloud and answers its commands.")

STATUS_INTERVAL_S = 10.0
"""How often a running box logs its counters [s]."""

DRAIN_TIMEOUT_S = 10.0
"""How long a box whose source ended waits for its queued measurements to go out [s]."""

FLEET_START_TIMEOUT_S = 300.0
"""How long a fleet's processes may take to open their sockets (2,500 boxes each) [s]."""

ConfigOption = Annotated[
    Path, typer.Option("--config", metavar="FILE", help="The box's TOML configuration (box_id, keys, cloud).")
]
DurationOption = Annotated[
    float | None,
    typer.Option("--duration", metavar="SECONDS", min=0, show_default=False, help="Stop after this long."),
]


@app.command("run")
def run(
    config: ConfigOption,
    scenario: Annotated[
        Path | None,
        typer.Option(metavar="FILE", show_default=False, help="Simulate the supply of a scenario file."),
    ] = None,
    device: Annotated[
        Path | None,
        typer.Option(metavar="PATH", show_default=False, help="Read an OPQ Box device (/dev/opq0) or FIFO."),
    ] = None,
    box_seed: Annotated[
        int | None,
        typer.Option(show_default=False, help="Seed of this box's simulated differences (default: its id)."),
    ] = None,
    duration: DurationOption = None,
) -> None:
    """Run a box: a simulated supply (a clean one without --scenario), or a real device with --device."""
    if scenario is not None and device is not None:
        raise ConfigError("give --scenario or --device, not both")
    box_config = load_box_config(config)
    source: SampleSource
    if device is not None:
        source = DeviceSource(device, calibration_constant=box_config.calibration_constant)
    else:
        supply = load_scenario(scenario) if scenario is not None else Scenario()
        seed = int(box_config.box_id) if box_seed is None else box_seed
        source = Simulator(supply, box_seed=seed, calibration_constant=box_config.calibration_constant)
    # A device delivers cycles as they are sampled; a simulation must be held to the clock.
    realtime = box_config.realtime and device is None
    run_box(box_config, source, realtime=realtime, duration_s=duration)


@app.command("replay")
def replay(
    recording: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv or COMTRADE .cfg recording.")],
    config: ConfigOption,
    channel: Annotated[
        str | None, typer.Option(metavar="NAME", show_default=False, help="The channel to replay.")
    ] = None,
    sample_rate: Annotated[
        float | None,
        typer.Option(
            "--sample-rate",
            metavar="HZ",
            show_default=False,
            help="Sample rate of a CSV without a time column.",
        ),
    ] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Start over at the end, forever.")] = False,
    duration: DurationOption = None,
) -> None:
    """Replay a recorded waveform as a box would have sampled it, paced to the clock."""
    box_config = load_box_config(config)
    source = RecordingSource.from_file(
        recording,
        channel=channel,
        sample_rate_hz=sample_rate,
        calibration_constant=box_config.calibration_constant,
        loop=loop,
    )
    run_box(box_config, source, realtime=box_config.realtime, duration_s=duration)


def run_box(config: BoxConfig, source: SampleSource, *, realtime: bool, duration_s: float | None) -> None:
    """Run a box until Ctrl-C, `duration_s`, or the end of its source (then send what is queued)."""
    box = Box(config, source, realtime=realtime)
    logger.info("box %s starting (%s)", config.box_id, "paced to the clock" if realtime else "unpaced")
    deadline = None if duration_s is None else time.monotonic() + duration_s
    box.start()
    try:
        next_status = time.monotonic() + STATUS_INTERVAL_S
        while deadline is None or time.monotonic() < deadline:
            if box.wait_source_done(0.2):
                _drain(box, DRAIN_TIMEOUT_S if deadline is None else deadline - time.monotonic())
                break
            if time.monotonic() >= next_status:
                next_status += STATUS_INTERVAL_S
                logger.info("box %s: %s", config.box_id, box.counters)
    except KeyboardInterrupt:
        logger.info("box %s: interrupted", config.box_id)
    finally:
        box.stop()
    counters = box.counters
    typer.echo(
        f"box {config.box_id}: {counters.cycles} cycles, {counters.measurements_built} measurements "
        f"({counters.measurements_sent} sent, {counters.measurements_queued} unsent, "
        f"{counters.measurements_dropped} dropped), {counters.commands_handled} commands answered"
    )


def _drain(box: Box, timeout_s: float) -> None:
    deadline = time.monotonic() + min(timeout_s, DRAIN_TIMEOUT_S)
    while box.counters.measurements_queued and time.monotonic() < deadline:
        time.sleep(0.05)


@app.command("fleet")
def fleet(
    ctx: typer.Context,
    boxes: Annotated[int, typer.Option("--boxes", min=1, help="How many boxes.")],
    server_key: Annotated[
        Path, typer.Option("--server-key", metavar="FILE", help="The cloud's certificate (its public key).")
    ],
    scenario: Annotated[
        Path | None,
        typer.Option(metavar="FILE", show_default=False, help="The supply every box is on (default: clean)."),
    ] = None,
    keys_dir: Annotated[
        Path,
        typer.Option(
            "--keys-dir",
            metavar="DIR",
            help="Key pairs: box<ID>.key_secret read if there, else generated; fleet-boxes.csv lists them.",
        ),
    ] = Path("fleet-keys"),
    first_id: Annotated[
        int, typer.Option("--first-id", min=0, help="Id of the first box; the rest follow.")
    ] = 1000,
    cloud_host: Annotated[str, typer.Option("--cloud-host", help="Where the cloud listens.")] = "127.0.0.1",
    measurement_port: Annotated[int, typer.Option(min=1, max=65535)] = DEFAULT_MEASUREMENT_PORT,
    command_port: Annotated[int, typer.Option(min=1, max=65535)] = DEFAULT_COMMAND_PORT,
    response_port: Annotated[int, typer.Option(min=1, max=65535)] = DEFAULT_RESPONSE_PORT,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            help="Worker processes (default: as the open-files limit asks, ≤ 2,500 boxes each).",
        ),
    ] = None,
    rate: Annotated[
        int, typer.Option("--rate", min=1, max=3600, help="Cycles per measurement at start.")
    ] = 10,
    full_signal: Annotated[
        bool, typer.Option("--full-signal", help="Measure synthesized samples as a box does (small fleets).")
    ] = False,
    local_disturbances: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            show_default=False,
            help="A TOML file of disturbances only the first --local-boxes boxes see.",
        ),
    ] = None,
    local_boxes: Annotated[int, typer.Option(min=0, help="How many boxes see --local-disturbances.")] = 1,
    send_slices: Annotated[
        int, typer.Option(min=1, max=100, help="Spread each tick's sends over this many slices.")
    ] = 1,
    duration: DurationOption = None,
) -> None:
    """Run many simulated boxes, each with its own id, keys and variation of the supply."""
    supply = load_scenario(scenario) if scenario is not None else Scenario()
    local = None if local_disturbances is None else with_local_disturbances(supply, local_disturbances)
    host = f"[{cloud_host}]" if ":" in cloud_host else cloud_host
    settings: Settings | None = ctx.obj if isinstance(ctx.obj, Settings) else None
    log_setup = (
        None
        if settings is None
        else functools.partial(configure_logging, settings.log_level, settings.log_format)
    )
    options = FleetOptions(
        measurement_endpoint=f"tcp://{host}:{measurement_port}",
        command_endpoint=f"tcp://{host}:{command_port}",
        response_endpoint=f"tcp://{host}:{response_port}",
        server_public_key=read_certificate(server_key).public,
        cycles_per_measurement=rate,
        send_slices=send_slices,
        full_signal=full_signal,
        log_setup=log_setup,
    )
    fleet_settings = FleetSettings(
        scenario=supply,
        boxes=boxes,
        options=options,
        keys_dir=keys_dir,
        first_id=first_id,
        processes=processes,
        local_scenario=local,
        local_boxes=min(local_boxes, boxes) if local is not None else 0,
    )
    run_fleet(fleet_settings, duration_s=duration)


def run_fleet(settings: FleetSettings, *, duration_s: float | None) -> FleetCounters:
    """Run a fleet until Ctrl-C or `duration_s`, logging its counters; prints and returns the last ones.

    The duration counts from when every process has its sockets open.
    """
    fleet = Fleet(settings)
    fleet.start()
    try:
        if not fleet.wait_ready(FLEET_START_TIMEOUT_S):
            raise ConfigError(
                f"the fleet's processes did not start in {FLEET_START_TIMEOUT_S:g} s; see the log"
            )
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_status = time.monotonic() + STATUS_INTERVAL_S
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
            counters = fleet.counters()
            if counters.processes_failed:
                raise ConfigError(f"{counters.processes_failed} fleet process(es) failed; see the log")
            if time.monotonic() >= next_status:
                next_status += STATUS_INTERVAL_S
                logger.info("fleet: %s", _describe(counters))
    except KeyboardInterrupt:
        logger.info("fleet: interrupted")
    finally:
        counters = fleet.stop()
    typer.echo(f"fleet of {settings.boxes} boxes in {fleet.processes} processes: {_describe(counters)}")
    return counters


def _describe(c: FleetCounters) -> str:
    return (
        f"{c.boxes_subscribed} boxes subscribed, {c.measurements_built} measurements "
        f"({c.measurements_sent} sent, {c.measurements_queued} unsent, {c.measurements_dropped} dropped), "
        f"{c.commands_handled} commands answered, send lateness p50 {c.send_lateness_ms(50):.1f} ms "
        f"p99 {c.send_lateness_ms(99):.1f} ms, CPU {c.cpu_s:.1f} s"
    )
