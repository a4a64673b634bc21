"""`opq bench detection` and `opq bench analysis`: Mauka's quality and latency."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from opq.bench.analysis import run_analysis_bench
from opq.bench.detection import DetectionBenchResult, run_detection_bench


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


def analysis(
    sizes: Annotated[
        str, typer.Option(help="Event sizes as BOXESxSECONDS, comma-separated.")
    ] = "1x1.5,4x1.5,4x10,16x3,50x3",
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
