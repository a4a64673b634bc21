"""`opq locations ...` and `opq regions ...`: where boxes are, and the regions grouping places."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from opq.cli.context import DbOption, JsonOption, opened_store, print_json, print_table
from opq.errors import InvalidValue
from opq.store.models import Location

locations_app = typer.Typer(help="Places boxes can be at.", no_args_is_help=True)
regions_app = typer.Typer(help="Named groups of locations and of other regions.", no_args_is_help=True)

SlugArgument = Annotated[str, typer.Argument(help="A short name, unique among locations and regions.")]
LocationsOption = Annotated[
    list[str] | None,
    typer.Option("--location", "-l", metavar="SLUG", help="A location to include (repeatable)."),
]
RegionsOption = Annotated[
    list[str] | None,
    typer.Option("--region", "-r", metavar="SLUG", help="A region to include (repeatable)."),
]


@locations_app.command("add")
def add_location(
    ctx: typer.Context,
    slug: SlugArgument,
    longitude: Annotated[float, typer.Option(help="Longitude in degrees east, -180 to 180.")],
    latitude: Annotated[float, typer.Option(help="Latitude in degrees north, -90 to 90.")],
    description: Annotated[str, typer.Option(help="What the place is, unique among locations.")],
    db: DbOption = None,
) -> None:
    """Add a location."""
    location = Location(slug, longitude, latitude, description)
    with opened_store(ctx, db) as store:
        store.locations.add(location)
    typer.echo(f"added location {slug!r} at longitude {longitude}, latitude {latitude}")


@locations_app.command("list")
def list_locations(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every location."""
    with opened_store(ctx, db) as store:
        locations = store.locations.list()
    if as_json:
        print_json([asdict(location) for location in locations])
        return
    print_table(
        "Locations",
        ["slug", "longitude", "latitude", "description"],
        [(loc.slug, loc.longitude, loc.latitude, loc.description) for loc in locations],
    )


@regions_app.command("add")
def add_region(
    ctx: typer.Context,
    slug: SlugArgument,
    location: LocationsOption = None,
    region: RegionsOption = None,
    db: DbOption = None,
) -> None:
    """Add a region made of existing locations and regions."""
    with opened_store(ctx, db) as store:
        added = store.regions.add(slug, location or (), region or ())
    members = _members(added.locations, added.subregions)
    typer.echo(f"added region {slug!r}" + (f" with {members}" if members else " (empty)"))


@regions_app.command("include")
def include_in_region(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The region to add members to.")],
    location: LocationsOption = None,
    region: RegionsOption = None,
    db: DbOption = None,
) -> None:
    """Add locations and regions to an existing region."""
    if not location and not region:
        raise InvalidValue("regions include: give at least one --location or --region")
    with opened_store(ctx, db) as store:
        store.regions.include(slug, location or (), region or ())
        now = store.regions.get(slug)
    typer.echo(f"region {slug!r} now holds {_members(now.locations, now.subregions)}")


@regions_app.command("list")
def list_regions(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every region, with its direct members and every location within it."""
    with opened_store(ctx, db) as store:
        regions = [(r, store.regions.locations_within(r.slug)) for r in store.regions.list()]
    if as_json:
        print_json(
            [
                {
                    "slug": r.slug,
                    "locations": list(r.locations),
                    "regions": list(r.subregions),
                    "all_locations": within,
                }
                for r, within in regions
            ]
        )
        return
    print_table(
        "Regions",
        ["slug", "locations", "regions", "all locations"],
        [
            (r.slug, ", ".join(r.locations), ", ".join(r.subregions), ", ".join(within))
            for r, within in regions
        ],
    )


def _members(locations: tuple[str, ...], regions: tuple[str, ...]) -> str:
    parts = []
    if locations:
        parts.append("locations " + ", ".join(locations))
    if regions:
        parts.append("regions " + ", ".join(regions))
    return "; ".join(parts)
