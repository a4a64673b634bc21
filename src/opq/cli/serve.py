"""`opq serve`: the whole cloud side (Makai's processes and Mauka) in one process tree."""

from __future__ import annotations

import signal
import threading

import typer

from opq.app.cloud import Cloud
from opq.cli.context import DbOption, settings_of
from opq.cli.makai import CertificateOption, makai_config


def serve(ctx: typer.Context, db: DbOption = None, server_certificate: CertificateOption = None) -> None:
    """Run Makai and Mauka on one database until Ctrl-C or SIGTERM."""
    config = makai_config(ctx, db, server_certificate)
    settings = settings_of(ctx).model_copy(update={"makai": config.settings})
    cloud = Cloud(settings, config.db_url, config.secret_key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cloud.start()
    makai_health = f"http://{config.settings.service_host}:{cloud.makai.health.port}/"
    mauka_health = f"http://127.0.0.1:{cloud.settings.mauka.health_port}/"
    typer.echo(f"opq cloud running: makai health on {makai_health}, mauka health on {mauka_health}", err=True)
    try:
        while not stop.wait(1.0):
            if not cloud.mauka_alive:
                typer.echo("error: mauka stopped; see its log above", err=True)
                raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
