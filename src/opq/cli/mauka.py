"""`opq mauka`: run Mauka, re-run its plugins over stored events, or read its health."""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
from typing import Annotated

import typer

from opq.cli.context import (
    DbOption,
    JsonOption,
    iso_time,
    now_ms,
    opened_store,
    parse_time_ms,
    print_json,
    print_table,
    settings_of,
)
from opq.errors import InvalidValue, ProtocolError
from opq.mauka.analysis import HOST_KEY, reanalyze
from opq.mauka.registry import load_plugins
from opq.mauka.service import Mauka

app = typer.Typer(
    help="OPQ Mauka: analysis of events into incidents, outages, system stats and data lifecycle.",
    invoke_without_command=True,
)


@app.callback()
def run(
    ctx: typer.Context,
    db: DbOption = None,
    health_port: Annotated[int | None, typer.Option(help="HTTP health port (0: any free port).")] = None,
) -> None:
    """Run Mauka until Ctrl-C or SIGTERM: analyse events as Makai announces them, watch for outages."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_of(ctx).mauka
    if health_port is not None:
        settings = settings.model_copy(update={"health_port": health_port})
    plugins = load_plugins(settings)
    with opened_store(ctx, db) as store:
        mauka = Mauka(store, settings, plugins)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        mauka.start()
        typer.echo(f"mauka running; health on http://127.0.0.1:{mauka.health.port}/", err=True)
        try:
            mauka.run(stop)
        except KeyboardInterrupt:
            pass
        finally:
            mauka.close()


@app.command("reanalyze")
def reanalyze_command(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From: ISO 8601 or ms since the epoch.")],
    until: Annotated[str, typer.Option(help="To: ISO 8601 or ms since the epoch.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-run the plugins over the stored events in a window, replacing the incidents they produced."""
    since_ms, until_ms = parse_time_ms(since), parse_time_ms(until)
    if since_ms > until_ms:
        raise InvalidValue(f"--since {since} is after --until {until}")
    plugins = load_plugins(settings_of(ctx).mauka)
    with opened_store(ctx, db) as store:
        results = reanalyze(store, since_ms, until_ms, plugins, now_ms())
    rows = [
        {
            "event_id": r.event_id,
            "replaced": r.replaced,
            "incidents": list(r.incident_ids),
            "plugin_failures": r.failures,
            "skipped_boxes": r.record[HOST_KEY]["skipped_boxes"],
        }
        for r in results
    ]
    if json_output:
        print_json(rows)
        return
    print_table(
        f"Events re-analysed from {iso_time(since_ms)} to {iso_time(until_ms)}: {len(rows)}",
        ["event", "incidents replaced", "incidents now", "plugin failures", "boxes skipped"],
        (
            (r["event_id"], r["replaced"], len(r["incidents"]), r["plugin_failures"], len(r["skipped_boxes"]))
            for r in rows
        ),
    )


@app.command("health")
def health(ctx: typer.Context, port: Annotated[int | None, typer.Option(help="Health port.")] = None) -> None:
    """Print a running Mauka's health document."""
    url = f"http://127.0.0.1:{port or settings_of(ctx).mauka.health_port}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print_json(json.load(response))
    except (urllib.error.URLError, OSError) as err:
        raise ProtocolError(f"cannot read Mauka's health at {url}: {err}") from err
