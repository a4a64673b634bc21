"""`opq box ...`: run a box (simulated supply, OPQ Box device, or replayed recording) against the cloud."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from opq.box.config import BoxConfig, load_box_config
from opq.box.device import DeviceSource
from opq.box.replay import RecordingSource
from opq.box.runtime import Box
from opq.box.scenario import Scenario, load_scenario
from opq.box.simulator import Simulator
from opq.box.source import SampleSource
from opq.errors import ConfigError

logger = logging.getLogger(__name__)

app = typer.Typer(help="Run a box that streams measurements to the cloud and answers its commands.")

STATUS_INTERVAL_S = 10.0
"""How often a running box logs its counters [s]."""

DRAIN_TIMEOUT_S = 10.0
"""How long a box whose source ended waits for its queued measurements to go out [s]."""

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
