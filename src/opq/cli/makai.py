"""`opq makai`: run Makai, ask it for a capture, or read its health."""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
import zmq

from opq.cli.context import DbOption, database_url, parse_time_ms, print_json, settings_of
from opq.config import MakaiSettings
from opq.errors import ConfigError, ProtocolError
from opq.makai.service import Makai, MakaiConfig
from opq.protocol import read_certificate
from opq.protocol.internal import CaptureRequest, decode_capture_reply, encode_capture_request
from opq.store import open_store

app = typer.Typer(
    help="OPQ Makai: box ingest, trends, triggering and waveform capture.",
    invoke_without_command=True,
)

CertificateOption = Annotated[
    Path | None,
    typer.Option(
        "--server-certificate",
        metavar="PATH",
        show_default=False,
        help="The cloud's secret zcert file (default: the makai.server_certificate setting).",
    ),
]


def makai_config(ctx: typer.Context, db: str | None, certificate: Path | None, **changes: Any) -> MakaiConfig:
    """Makai's settings with the command line's changes, and the cloud's secret key."""
    settings = settings_of(ctx)
    makai = settings.makai.model_copy(update={k: v for k, v in changes.items() if v is not None})
    path = certificate or makai.server_certificate
    if path is None:
        raise ConfigError(
            "makai needs the cloud's secret key: give --server-certificate PATH or set "
            "makai.server_certificate (make one with `opq keys generate server`)"
        )
    secret = read_certificate(path).secret
    if secret is None:
        raise ConfigError(f"{path} holds no secret key: give the .key_secret file")
    url = database_url(ctx, db)
    with open_store(url, upgrade=False):
        pass  # a missing or outdated schema is an error now, not in three child processes
    return MakaiConfig(MakaiSettings.model_validate(makai.model_dump()), url, settings.retention, secret)


@app.callback()
def run(
    ctx: typer.Context,
    db: DbOption = None,
    server_certificate: CertificateOption = None,
    box_host: Annotated[str | None, typer.Option(help="Address the box endpoints bind to.")] = None,
    health_port: Annotated[int | None, typer.Option(help="HTTP health port (0: any free port).")] = None,
) -> None:
    """Run Makai until Ctrl-C or SIGTERM: ingest, relay and acquisition processes, health on HTTP."""
    if ctx.invoked_subcommand is not None:
        return
    config = makai_config(ctx, db, server_certificate, box_host=box_host, health_port=health_port)
    makai = Makai(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    makai.start()
    typer.echo(
        f"makai running; health on http://{config.settings.service_host}:{makai.health.port}/", err=True
    )
    try:
        makai.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        makai.stop()


@app.command("capture")
def capture(
    ctx: typer.Context,
    boxes: Annotated[str, typer.Option(help="Box ids, comma-separated.")],
    start: Annotated[str, typer.Option(help="Window start: ISO 8601 or ms since the epoch.")],
    end: Annotated[str, typer.Option(help="Window end: ISO 8601 or ms since the epoch.")],
    reason: Annotated[str, typer.Option(help="Why; stored as the event's description.")] = "manual capture",
    timeout_s: Annotated[float, typer.Option(help="How long to wait for Makai's answer [s].")] = 5.0,
) -> None:
    """Ask a running Makai to capture the waveforms of some boxes over a window; prints the event id."""
    settings = settings_of(ctx).makai
    request = CaptureRequest(
        box_ids=tuple(box.strip() for box in boxes.split(",") if box.strip()),
        start_ms=parse_time_ms(start),
        end_ms=parse_time_ms(end),
        reason=reason,
    )
    typer.echo(request_capture(settings, request, timeout_s))


def request_capture(settings: MakaiSettings, request: CaptureRequest, timeout_s: float = 5.0) -> int:
    """Send a capture request to Makai's capture port; the new event's id."""
    payload = encode_capture_request(request)
    endpoint = f"tcp://{settings.service_host}:{settings.capture_port}"
    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        socket.send(payload)
        if not socket.poll(int(timeout_s * 1000)):
            raise ProtocolError(f"Makai did not answer at {endpoint} within {timeout_s} s: is it running?")
        return decode_capture_reply(socket.recv())


@app.command("health")
def health(ctx: typer.Context, port: Annotated[int | None, typer.Option(help="Health port.")] = None) -> None:
    """Print a running Makai's health document."""
    settings = settings_of(ctx).makai
    url = f"http://{settings.service_host}:{port or settings.health_port}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print_json(json.load(response))
    except (urllib.error.URLError, OSError) as err:
        raise ProtocolError(f"cannot read Makai's health at {url}: {err}") from err
