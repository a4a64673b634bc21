"""`opq bench ingest` and `opq bench capture`: a fleet of boxes against a real Makai."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table

from opq.bench.capture import CaptureBenchResult, run_capture_bench
from opq.bench.ingest import IngestBenchResult, run_ingest_bench

_KEYS_DIR = Path("/tmp/opq-bench-makai-keys")
_KeysDir = Annotated[
    Path,
    typer.Option(metavar="DIR", help="The fleet's key pairs: read if there, else made and kept here."),
]


def ingest(
    boxes: Annotated[int, typer.Option(min=1, help="Boxes in the fleet.")] = 1000,
    rate: Annotated[int, typer.Option(min=1, max=60, help="Measurements a box sends a second.")] = 6,
    seconds: Annotated[float, typer.Option(min=1, help="Seconds measured, once every box is in.")] = 60.0,
    processes: Annotated[
        int | None,
        typer.Option(min=1, show_default=False, help="Fleet processes (default: the fd budget's)."),
    ] = None,
    boxes_per_location: Annotated[
        int, typer.Option(min=0, help="Consecutive boxes sharing a location (0: no locations).")
    ] = 10,
    neighbours: Annotated[
        str, typer.Option(help="Makai's neighbourhoods: none, location or region (its default).")
    ] = "region",
    keys_dir: _KeysDir = _KEYS_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A fleet into Makai over CURVE into SQLite: measurements/s stored, loss, lag and CPU per process."""
    err = Console(stderr=True, soft_wrap=True)
    result = run_ingest_bench(
        boxes=boxes,
        rate_per_s=rate,
        seconds=seconds,
        keys_dir=keys_dir,
        processes=processes,
        boxes_per_location=boxes_per_location,
        neighbours=neighbours,
        progress=lambda step: err.print(f"[dim]{step}…[/dim]"),
    )
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    else:
        Console().print(_ingest_table(result))


def _ingest_table(r: IngestBenchResult) -> Table:
    table = Table(title=f"opq bench ingest: {r.boxes:,} boxes at {r.rate_per_s}/s over {r.seconds:g} s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    figures: list[tuple[str, str]] = [
        ("fleet processes / boxes subscribed", f"{r.fleet_processes} / {r.boxes_subscribed:,}"),
        ("connected after", f"{r.connect_s:.1f} s"),
        (
            "measurements/s expected / sent / received / stored",
            f"{r.expected_per_s:,.0f} / {r.sent_per_s:,.0f} / "
            f"{r.received_per_s:,.0f} / {r.stored_per_s:,.0f}",
        ),
        ("lag p50 / p99 / max (probe)", f"{r.lag_ms_p50} / {r.lag_ms_p99} / {r.lag_ms_max} ms"),
        ("lag p50 / p99 (Makai's health)", f"{r.makai_lag_ms.get('p50')} / {r.makai_lag_ms.get('p99')} ms"),
        ("fleet send lateness p50 / p99", f"{r.send_lateness_ms_p50:g} / {r.send_lateness_ms_p99:g} ms"),
        ("sent / stored / lost", f"{r.sent:,} / {r.stored:,} / {r.lost:,}"),
        ("dropped by Makai", ", ".join(f"{k} {v:,}" for k, v in r.dropped.items()) or "none"),
        ("most buffered / queued in the fleet", f"{r.buffered_max:,} / {r.fleet_queued_max:,}"),
        ("caught up before stopping", str(r.caught_up)),
    ]
    figures += [(f"CPU {c.name}", f"{c.cores:.2f} cores") for c in r.cpu]
    figures.append(
        (
            "CPU fleet / makai / all",
            f"{r.cpu_cores_fleet:.2f} / {r.cpu_cores_makai:.2f} / {r.cpu_cores_total:.2f}",
        )
    )
    figures += [(name, str(value)) for name, value in r.machine.items()]
    for name, value in figures:
        table.add_row(name, value)
    return table


def capture(
    boxes: Annotated[int, typer.Option(min=2, help="Boxes in the disturbance phase.")] = 50,
    boxes_per_location: Annotated[int, typer.Option(min=1, help="Consecutive boxes sharing a location.")] = 5,
    rate: Annotated[
        int, typer.Option(min=1, max=60, help="Measurements a box sends a second (disturbance phase).")
    ] = 6,
    clean_boxes: Annotated[int, typer.Option(min=1, help="Boxes in the clean-supply phase.")] = 500,
    clean_seconds: Annotated[float, typer.Option(min=1, help="Seconds of the clean-supply phase.")] = 300.0,
    lead: Annotated[float, typer.Option(min=1, help="Seconds before the first disturbance.")] = 15.0,
    gap: Annotated[float, typer.Option(min=2, help="Seconds between two disturbances.")] = 4.0,
    keys_dir: _KeysDir = _KEYS_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Disturbances into events (recall, latency), false events on a clean supply, bytes a box sends."""
    err = Console(stderr=True, soft_wrap=True)
    result = run_capture_bench(
        boxes=boxes,
        boxes_per_location=boxes_per_location,
        rate_per_s=rate,
        lead_s=lead,
        gap_s=gap,
        clean_boxes=clean_boxes,
        clean_seconds=clean_seconds,
        keys_dir=keys_dir,
        progress=lambda step: err.print(f"[dim]{step}…[/dim]"),
    )
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    else:
        Console().print(_capture_tables(result))


def _capture_tables(r: CaptureBenchResult) -> Group:
    table = Table(title=f"opq bench capture: {r.boxes} boxes, {r.boxes_per_location} a location")
    for column in (
        "disturbance",
        "expected",
        "events",
        "detected",
        "boxes asked / received",
        "to stored [ms]",
    ):
        table.add_column(column)
    for d in r.disturbances:
        table.add_row(
            d.name,
            "yes" if d.expected else "no",
            ", ".join(map(str, d.events)) or "-",
            "yes" if d.detected else "no",
            f"{d.boxes_asked} / {d.boxes_received}",
            "-" if d.to_completed_ms is None else str(d.to_completed_ms),
        )
    summary = Table()
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    figures: list[tuple[str, str]] = [
        ("recall", f"{r.detected} of {r.expected} ({r.recall_percent:g} %)"),
        (
            "disturbance end to event stored, p50 / p99 / max",
            f"{r.to_completed_ms_p50} / {r.to_completed_ms_p99} / {r.to_completed_ms_max} ms",
        ),
        ("events overlapping no disturbance", str(r.unmatched_events)),
        ("raw time uploaded (disturbance phase)", f"{r.raw_fraction_percent:g} %"),
        (
            "clean supply: events / box-days / per box-day (95 % upper)",
            f"{r.clean_events} / {r.clean_box_days:g} / "
            f"{r.events_per_box_day:g} ({r.events_per_box_day_95_upper:g})",
        ),
    ]
    figures += [
        (
            f"bytes a box sends at {w.rate_per_s}/s",
            f"{w.wire_bytes_per_measurement:g} a measurement ({w.payload_bytes} payload); "
            f"{w.bytes_per_day_sent / 1e6:.1f} MB a day",
        )
        for w in r.wire
    ]
    for name, value in figures:
        summary.add_row(name, value)
    return Group(table, summary)
