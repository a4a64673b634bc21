"""`opq bench ...`: benchmarks that print their figures (progress goes to stderr)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from opq.bench.box import BoxBenchResult, ErrorFigures, run_box_bench
from opq.bench.box_metrics import COHORT_BOXES
from opq.bench.store import StoreBenchResult, run_store_bench
from opq.cli import bench_makai, bench_mauka
from opq.errors import OpqError

app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)


@app.callback()
def bench() -> None:
    """Benchmarks that print their figures."""


@app.command("store")
def store(
    db: Annotated[str, typer.Option("--db", help="URL of a migrated database to write into.")],
    rows: Annotated[int, typer.Option(min=1, help="Measurements to insert.")] = 10_000_000,
    boxes: Annotated[int, typer.Option(min=1, help="Boxes the measurements come from.")] = 1000,
    batch: Annotated[
        int | None,
        typer.Option(min=1, help="Measurements per insert (default: 6 × boxes, one second of every box)."),
    ] = None,
    queries: Annotated[int, typer.Option(min=1, help="Box-hour reads to time.")] = 50,
    allow_existing: Annotated[
        bool,
        typer.Option("--allow-existing", help="Bench a database that already holds measurements."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measurement insert rate, trend upsert rate and one box-hour read latency of a database."""
    err = Console(stderr=True, soft_wrap=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            tasks: dict[str, int] = {}

            def advance(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = int(bar.add_task(phase, total=total))
                bar.update(tasks[phase], completed=done)  # type: ignore[arg-type]

            result = run_store_bench(
                db,
                rows=rows,
                boxes=boxes,
                batch_size=batch,
                queries=queries,
                allow_existing=allow_existing,
                progress=advance,
            )
    except OpqError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    else:
        Console().print(_table(result))


def _table(result: StoreBenchResult) -> Table:
    table = Table(title=f"opq bench store: {result.backend} {result.url}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    ins, trends, query = result.insert, result.trends, result.query
    figures: list[tuple[str, str]] = [
        ("measurements inserted", f"{ins.inserted:,} ({ins.duplicates:,} duplicates)"),
        ("boxes / batch size", f"{result.boxes:,} / {result.batch_size:,} rows"),
        ("insert rate, median over batches", f"{ins.rows_per_s_median:,.0f} rows/s"),
        ("insert rate, overall", f"{ins.rows_per_s_overall:,.0f} rows/s ({ins.seconds:.1f} s)"),
        (
            "batch time, median / p99 / max",
            f"{ins.batch_ms_median:.1f} / {ins.batch_ms_p99:.1f} / {ins.batch_ms_max:.1f} ms",
        ),
        ("trend upsert rate, new (median)", f"{trends.insert_rows_per_s_median:,.0f} rows/s"),
        ("trend upsert rate, replacing (median)", f"{trends.reupsert_rows_per_s_median:,.0f} rows/s"),
        ("measurements present at query", f"{query.measurements_present:,}"),
        ("one box-hour read, median", f"{query.ms_median:.1f} ms ({query.rows_returned_median:,.0f} rows)"),
        ("one box-hour read, p95 / max", f"{query.ms_p95:.1f} / {query.ms_max:.1f} ms"),
    ]
    figures += [(name, str(value)) for name, value in result.machine.items()]
    figures += [(name, value) for name, value in result.database_settings.items()]
    for name, value in figures:
        table.add_row(name, value)
    return table


@app.command("box")
def box(
    boxes: Annotated[int, typer.Option(min=0, help="Boxes in the fleet run (0: no fleet run).")] = 1000,
    seconds: Annotated[float, typer.Option(min=1, help="Seconds the fleet run measures for.")] = 20.0,
    processes: Annotated[
        int | None,
        typer.Option(min=1, show_default=False, help="Fleet processes (default: the fd budget's)."),
    ] = None,
    send_slices: Annotated[
        int, typer.Option(min=1, help="Spread each tick's sends over this many slices.")
    ] = 1,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", show_default=False, help="Keep the fleet's keys here (default: a temporary dir)."
        ),
    ] = None,
    accuracy: Annotated[bool, typer.Option(help="Measure RMS, frequency and THD errors.")] = True,
    cpu: Annotated[bool, typer.Option(help="Measure the metrics' CPU cost.")] = True,
    fleet: Annotated[bool, typer.Option(help="Run the fleet against a fake cloud.")] = True,
    signal_seconds: Annotated[int, typer.Option(min=1, help="Seconds of each accuracy signal.")] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of each CPU figure (median).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Metric accuracy against known signals, their CPU cost per box-second, and a fleet's cost and loss."""
    err = Console(stderr=True, soft_wrap=True)
    result = run_box_bench(
        accuracy=accuracy,
        cpu=cpu,
        fleet_boxes=boxes if fleet else 0,
        fleet_seconds=seconds,
        processes=processes,
        send_slices=send_slices,
        keys_dir=keys_dir,
        signal_seconds=signal_seconds,
        repeats=repeats,
        progress=lambda step: err.print(f"[dim]{step}…[/dim]"),
    )
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    else:
        Console().print(_box_table(result))


def _box_table(result: BoxBenchResult) -> Table:
    table = Table(title="opq bench box")
    table.add_column("figure")
    table.add_column("value", justify="right")

    def errors(name: str, e: ErrorFigures) -> tuple[str, str]:
        return (
            f"{name} error, median / p99 / max",
            f"{e.median:.3g} / {e.p99:.3g} / {e.max:.3g} {e.unit} (target ≤ {e.target:g})",
        )

    figures: list[tuple[str, str]] = []
    if (a := result.accuracy) is not None:
        figures += [
            errors("RMS 12 cycles 59.9–60.1 Hz", a.rms_near_nominal),
            errors("RMS 12 cycles 57–63 Hz", a.rms_off_nominal),
            errors("RMS 1 cycle 57–63 Hz", a.rms_cycle_off_nominal),
            errors("RMS 12 fixed blocks 57–63 Hz (former)", a.rms_blocks_off_nominal),
            errors("frequency 57–63 Hz", a.frequency),
            errors("THD 1–20 %", a.thd),
        ]
    if (c := result.cpu) is not None:
        figures += [
            (
                "full-signal metrics cycle by cycle, rate 10 / 60",
                f"{c.builder_rate_10_us:.0f} / {c.builder_rate_60_us:.0f} µs per box-s",
            ),
            (
                "full-signal metrics in 1-s blocks, rate 10 / 60",
                f"{c.builder_blocks_rate_10_us:.0f} / {c.builder_blocks_rate_60_us:.0f} µs per box-s",
            ),
            ("span metrics alone, one box, rate 10", f"{c.span_metrics_rate_10_us:.0f} µs per box-s"),
            ("opq.domain alone, batched", f"{c.domain_batched_us:.0f} µs per box-s"),
            (
                f"full-signal metrics of {COHORT_BOXES} boxes at once, ticks of 10 / 60 cycles, rate 10",
                f"{c.cohort_tick_10_us:.0f} / {c.cohort_tick_60_us:.0f} µs per box-s",
            ),
            ("load average (1 min) at the CPU figures' start", f"{c.load_average_1min:.2f}"),
            ("sample synthesis", f"{c.synthesis_us:.0f} µs per box-s"),
            ("fleet fast path with encoding", f"{c.fast_path_us:.1f} µs per box-s"),
        ]
    if (f := result.fleet) is not None:
        figures += [
            ("fleet boxes / processes", f"{f.boxes:,} / {f.processes}"),
            (
                "fleet CPU, all / per 1,000 boxes",
                f"{f.cpu_percent:.1f} / {f.cpu_percent_per_1000_boxes:.1f} % of a core",
            ),
            (
                "measurements/s expected / sent / received",
                f"{f.expected_per_s:,.0f} / {f.sent_per_s:,.0f} / {f.received_per_s:,.0f}",
            ),
            (
                "lost / gaps / boxes missing their first",
                f"{f.lost:,} / {f.gaps:,} / {f.boxes_missing_first:,}",
            ),
            ("send lateness p50 / p99", f"{f.send_lateness_p50_ms:.1f} / {f.send_lateness_p99_ms:.1f} ms"),
            ("tick lateness p50 / p99", f"{f.tick_lateness_p50_ms:.1f} / {f.tick_lateness_p99_ms:.1f} ms"),
            ("receiver CPU", f"{f.receiver_cpu_percent:.1f} % of a core"),
        ]
    figures += [(name, str(value)) for name, value in result.machine.items()]
    for name, value in figures:
        table.add_row(name, value)
    return table


# The services' benchmarks live in modules of their own.
app.command("ingest")(bench_makai.ingest)
app.command("capture")(bench_makai.capture)
app.command("detection")(bench_mauka.detection)
app.command("analysis")(bench_mauka.analysis)
