"""`opq boxes ...`: register boxes, move them between locations, mark them unplugged."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column

from opq.cli.context import (
    DbOption,
    JsonOption,
    iso_time,
    opened_store,
    parse_time_ms,
    print_json,
    print_table,
)
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.errors import InvalidValue
from opq.store.models import Box

app = typer.Typer(help="The boxes the cloud accepts data from.", no_args_is_help=True)

_ZCERT_PUBLIC_KEY = re.compile(r'^\s*public-key\s*=\s*"([^"]*)"\s*$', re.MULTILINE)

BoxIdArgument = Annotated[str, typer.Argument(help="The box id.")]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        show_default=False,
        help="When: ISO 8601 (2026-11-22T10:00:00Z; UTC if no offset) or ms since the epoch (default: now).",
    ),
]


def read_zcert_public_key(path: Path) -> str:
    """The Z85 public key of a zcert-like certificate file (its `public-key = "..."` line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidValue(f"cannot read public key file {path}: {err}") from err
    found = _ZCERT_PUBLIC_KEY.search(text)
    if found is None:
        raise InvalidValue(f'public key file {path} has no `public-key = "..."` line')
    return found.group(1)


@app.command("add")
def add(
    ctx: typer.Context,
    box_id: Annotated[str, typer.Option("--box-id", help="A new box id: letters, digits, . _ -")],
    name: Annotated[str | None, typer.Option(help="A new name (default: the box id).")] = None,
    calibration: Annotated[
        float, typer.Option(help="Calibration constant in ADC counts per volt.")
    ] = DEFAULT_CALIBRATION_COUNTS_PER_V,
    location: Annotated[str | None, typer.Option(metavar="SLUG", help="The location the box is at.")] = None,
    at: AtOption = None,
    description: Annotated[str, typer.Option(help="Free text about the box.")] = "",
    public_key: Annotated[
        str | None, typer.Option(metavar="Z85", help="The box's CurveZMQ public key, Z85 text.")
    ] = None,
    public_key_file: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help='A zcert file holding a `public-key = "..."` line.'),
    ] = None,
    db: DbOption = None,
) -> None:
    """Register a box."""
    if public_key is not None and public_key_file is not None:
        raise InvalidValue("give either --public-key or --public-key-file, not both")
    if public_key_file is not None:
        public_key = read_zcert_public_key(public_key_file)
    if at is not None and location is None:
        raise InvalidValue("--at says when the box was put at --location: give --location too")
    box = Box(
        box_id=box_id,
        name=name if name is not None else box_id,
        calibration_constant=calibration,
        description=description,
        location=location,
        location_start_time_ms=parse_time_ms(at) if location is not None else None,
        public_key=public_key,
    )
    with opened_store(ctx, db) as store:
        store.boxes.add(box)
    where = f" at {location!r}" if location else ""
    typer.echo(f"added box {box_id!r} ({box.name}){where}")


@app.command("list")
def list_boxes(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every box: where it is, since when, where it was before, whether it is unplugged."""
    with opened_store(ctx, db) as store:
        boxes = store.boxes.list()
    if as_json:
        print_json([asdict(box) for box in boxes])
        return
    print_table(
        "Boxes",
        [
            "box",
            "name",
            "location",
            Column("since (UTC)", min_width=16),
            "unplugged",
            "key",
            "earlier",
        ],
        [
            (
                box.box_id,
                box.name,
                box.location,
                iso_time(box.location_start_time_ms, "minutes").replace("T", " ").rstrip("Z"),
                box.unplugged,
                box.public_key is not None,
                ", ".join(stint.location for stint in box.location_archive[:-1]),
            )
            for box in boxes
        ],
    )


@app.command("move")
def move(
    ctx: typer.Context,
    box_id: BoxIdArgument,
    location: Annotated[str, typer.Argument(metavar="LOCATION", help="The new location's slug.")],
    at: AtOption = None,
    db: DbOption = None,
) -> None:
    """Put a box at another location from a time on, keeping where it was before."""
    start_ms = parse_time_ms(at)
    with opened_store(ctx, db) as store:
        store.boxes.move(box_id, location, start_ms)
    typer.echo(f"box {box_id!r} is at {location!r} since {iso_time(start_ms)}")


@app.command("set-unplugged")
def set_unplugged(
    ctx: typer.Context,
    box_id: BoxIdArgument,
    unplugged: Annotated[
        bool,
        typer.Option(
            "--unplugged/--plugged",
            help="Unplugged (or in maintenance), so its silence is no outage; or plugged in again.",
        ),
    ] = True,
    db: DbOption = None,
) -> None:
    """Mark a box unplugged, or (with --plugged) plugged in again."""
    with opened_store(ctx, db) as store:
        store.boxes.set_unplugged(box_id, unplugged)
    typer.echo(f"box {box_id!r} is marked {'unplugged' if unplugged else 'plugged in'}")
