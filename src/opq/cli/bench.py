"""`opq bench ...`: benchmarks that print their figures (progress goes to stderr)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
    err = Console(stderr=True)
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
