"""`opq bench ...`: benchmarks that print their figures (progress goes to stderr)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from opq.bench.analysis import run_analysis_bench
from opq.bench.box import BoxBenchResult, ErrorFigures, run_box_bench
from opq.bench.capture import CaptureBenchResult, run_capture_bench
from opq.bench.detection import DetectionBenchResult, run_detection_bench
from opq.bench.ingest import IngestBenchResult, run_ingest_bench
from opq.bench.store import StoreBenchResult, run_store_bench
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
            errors("RMS 59.9–60.1 Hz", a.rms_near_nominal),
            errors("RMS 57–63 Hz", a.rms_off_nominal),
            errors("frequency 57–63 Hz", a.frequency),
            errors("THD 1–20 %", a.thd),
        ]
    if (c := result.cpu) is not None:
        figures += [
            (
                "full-signal metrics, rate 10 / 60",
                f"{c.builder_rate_10_us:.0f} / {c.builder_rate_60_us:.0f} µs per box-s",
            ),
            ("opq.domain alone, batched", f"{c.domain_batched_us:.0f} µs per box-s"),
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


_KEYS_DIR = Path("/tmp/opq-bench-makai-keys")
_KeysDir = Annotated[
    Path,
    typer.Option(metavar="DIR", help="The fleet's key pairs: read if there, else made and kept here."),
]


@app.command("ingest")
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


@app.command("capture")
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


# --- opq bench detection ---------------------------------------------------------------------------


@app.command("detection")
def detection(
    variants: Annotated[
        int, typer.Option(min=1, help="Seeds (each its own point on wave) every case is played with.")
    ] = 3,
    clean_hours: Annotated[
        float, typer.Option(min=0, help="Hours of clean supply each clean box plays (0: none).")
    ] = 24.0,
    clean_boxes: Annotated[
        int, typer.Option(min=1, help="Boxes on the clean supply, each its own seed.")
    ] = 1,
    every_run: Annotated[
        bool,
        typer.Option("--every-run", help="List every run, not only those with a miss or a false finding."),
    ] = False,
    case: Annotated[
        list[str] | None,
        typer.Option(metavar="TEXT", help="Play only the cases whose name contains TEXT (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recall and precision of the chain on labeled disturbances; incidents a box-day on a clean supply."""
    err = Console(stderr=True, soft_wrap=True)
    result = run_detection_bench(
        variants=variants,
        clean_hours=clean_hours,
        clean_boxes=clean_boxes,
        only=case or (),
        progress=lambda step: err.print(f"[dim]{step}…[/dim]"),
    )
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    else:
        Console().print(*_detection_tables(result, every_run=every_run))


def _detection_tables(r: DetectionBenchResult, *, every_run: bool) -> list[Table]:
    tables = []
    for title, figures in (
        ("unambiguous cases (target: 100 %)", r.per_class),
        ("ambiguous cases (boundaries; not in the target)", r.per_class_ambiguous),
    ):
        table = Table(title=f"opq bench detection: {title}")
        for column in ("class", "recalled / expected", "recall", "matching / findings", "precision"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for key, c in figures.items():
            table.add_row(
                key,
                f"{c.recalled} / {c.expected}",
                "-" if c.recall_percent is None else f"{c.recall_percent:g} %",
                f"{c.matching} / {c.findings}",
                "-" if c.precision_percent is None else f"{c.precision_percent:g} %",
            )
        tables.append(table)
    runs = Table(title="runs" if every_run else "runs with a miss or a false finding")
    for column in ("case", "seed", "captures", "missed", "false findings", "found"):
        runs.add_column(column)
    for run in r.runs_detail:
        if every_run or run.missed or run.unexpected:
            runs.add_row(
                f"{run.case}{' (ambiguous)' if run.ambiguous else ''}",
                f"{run.seed} ({run.phase_deg:g}°)",
                str(run.captures),
                _detection_tally(run.missed),
                _detection_tally(run.unexpected),
                _detection_tally([k for f in run.found for k in f.classes]),
            )
    tables.append(runs)
    summary = Table(title="summary")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("cases × variants = runs", f"{r.cases} × {r.variants} = {r.runs}"),
        ("unambiguous runs exactly right", f"{r.unambiguous_runs_exact} of {r.unambiguous_runs}"),
        ("recall / precision target met", f"{r.recall_target_met} / {r.precision_target_met}"),
        ("cases: wall / CPU", f"{r.cases_wall_s:g} / {r.cases_cpu_s:g} s"),
    ]
    if (day := r.clean) is not None:
        scaled = "" if day.scaled_from_hours is None else f" (scaled from {day.scaled_from_hours:g} h)"
        rows += [
            ("clean supply: box-hours", f"{day.boxes * day.hours:g}{scaled}"),
            (
                "clean: measurements / abnormal / captures",
                f"{day.measurements:,} / {day.abnormal_measurements:,} / {day.captures:,}",
            ),
            (
                "clean: incidents, per box-day (95 % upper)",
                f"{day.incidents} / {day.incidents_per_box_day:g} ({day.incidents_per_box_day_95_upper:g})",
            ),
            ("clean: target ≤ 1 per box-day met", str(r.clean_target_met)),
            (
                "clean: wall / CPU",
                f"{day.wall_s:g} / {day.cpu_s:g} s ({day.us_per_box_s:g} µs CPU per box-s)",
            ),
        ]
    rows += [(name, str(value)) for name, value in r.machine.items()]
    for name, value in rows:
        summary.add_row(name, value)
    tables.append(summary)
    return tables


def _detection_tally(keys: list[str]) -> str:
    """Class keys with their counts, in order of first appearance: "VOLTAGE_SAG/TEMPORARY ×9, ..."."""
    counts = dict.fromkeys(keys, 0)
    for key in keys:
        counts[key] += 1
    return ", ".join(key if n == 1 else f"{key} ×{n}" for key, n in counts.items()) or "-"


@app.command("analysis")
def analysis(
    sizes: Annotated[
        str, typer.Option(help="Event sizes as BOXESxSECONDS, comma-separated.")
    ] = "1x1.5,4x1.5,4x10,16x3",
    events: Annotated[int, typer.Option(min=1, help="Events per size.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Mauka's latency from an event stored and announced to its incidents stored, by event size."""
    try:
        parsed = [(int(b), float(s)) for b, s in (size.lower().split("x") for size in sizes.split(","))]
    except ValueError as err:
        raise typer.BadParameter(f"--sizes {sizes!r}: give BOXESxSECONDS, like 4x1.5,16x3") from err
    figures = run_analysis_bench(parsed, events)
    if as_json:
        typer.echo(json.dumps({"sizes": [asdict(f) for f in figures]}, indent=2))
        return
    table = Table(title="event stored → incidents stored [ms]")
    for column in ("boxes", "seconds", "events", "incidents/event", "median", "p99", "max"):
        table.add_column(column, justify="right")
    for f in figures:
        table.add_row(
            *(
                str(v)
                for v in (
                    f.boxes,
                    f.seconds,
                    f.events,
                    f.incidents_per_event,
                    f.median_ms,
                    f.p99_ms,
                    f.max_ms,
                )
            )
        )
    Console().print(table)
