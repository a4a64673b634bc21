"""Locations and regions: one namespace of slugs, coordinates range-checked, regions nested without cycles."""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterable

from sqlalchemy import Column, Connection, Engine, select

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import Location, Region

_SLUG = re.compile(r"^[^\s/][^/]{0,127}$")


def check_slug(slug: str) -> None:
    """A slug is 1 to 128 characters, no slash, not starting with white space."""
    if not _SLUG.match(slug) or slug != slug.strip():
        raise InvalidValue(
            f"slug {slug!r} is not valid: use 1 to 128 characters, no '/' and no leading or trailing spaces"
        )


def check_coordinates(longitude: float, latitude: float) -> None:
    """Longitude in [-180, 180] and latitude in [-90, 90] degrees, finite."""
    if not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
        raise InvalidValue(f"longitude {longitude} is out of range: it must be within [-180, 180]")
    if not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
        raise InvalidValue(f"latitude {latitude} is out of range: it must be within [-90, 90]")


def _claim_slug(conn: Connection, slug: str, kind: str) -> None:
    taken = conn.execute(select(schema.slugs.c.kind).where(schema.slugs.c.slug == slug)).scalar_one_or_none()
    if taken is not None:
        raise Conflict(f"slug {slug!r} is already taken by a {taken}")
    conn.execute(schema.slugs.insert().values(slug=slug, kind=kind))


class Locations:
    """The locations collection."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, location: Location) -> None:
        """Add a location; its slug and description must both be new."""
        check_slug(location.slug)
        check_coordinates(location.longitude, location.latitude)
        if not location.description.strip():
            raise InvalidValue(f"location {location.slug!r} needs a description")
        loc = schema.locations
        with translated(f"add location {location.slug!r}"), write_transaction(self._engine) as conn:
            _claim_slug(conn, location.slug, "location")
            same = conn.execute(
                select(loc.c.slug).where(loc.c.description == location.description)
            ).scalar_one_or_none()
            if same is not None:
                raise Conflict(f"description {location.description!r} is already used by location {same!r}")
            conn.execute(
                loc.insert().values(
                    slug=location.slug,
                    longitude=location.longitude,
                    latitude=location.latitude,
                    description=location.description,
                )
            )

    def get(self, slug: str) -> Location:
        """The location with this slug; NotFound if there is none."""
        loc = schema.locations
        with translated(f"read location {slug!r}"), self._engine.connect() as conn:
            row = conn.execute(select(loc).where(loc.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no location {slug!r}")
        return Location(*row)

    def list(self) -> list[Location]:
        """Every location, by slug."""
        loc = schema.locations
        with translated("list locations"), self._engine.connect() as conn:
            return [Location(*row) for row in conn.execute(select(loc).order_by(loc.c.slug))]


class Regions:
    """Regions: named sets of locations and other regions (the seed's `regions` mapping)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, slug: str, locations: Iterable[str] = (), subregions: Iterable[str] = ()) -> Region:
        """Create a region with its members; every member must exist already."""
        check_slug(slug)
        location_slugs = tuple(dict.fromkeys(locations))
        subregion_slugs = tuple(dict.fromkeys(subregions))
        with translated(f"add region {slug!r}"), write_transaction(self._engine) as conn:
            _claim_slug(conn, slug, "region")
            conn.execute(schema.regions.insert().values(slug=slug))
            self._add_members(conn, slug, location_slugs, subregion_slugs)
        return Region(slug, location_slugs, subregion_slugs)

    def include(self, slug: str, locations: Iterable[str] = (), subregions: Iterable[str] = ()) -> None:
        """Add members to an existing region."""
        with translated(f"add members to region {slug!r}"), write_transaction(self._engine) as conn:
            if not _exists(conn, schema.regions.c.slug, slug):
                raise NotFound(f"no region {slug!r}")
            current = _region(conn, slug)
            new_locations = [s for s in dict.fromkeys(locations) if s not in current.locations]
            new_subregions = [s for s in dict.fromkeys(subregions) if s not in current.subregions]
            self._add_members(conn, slug, new_locations, new_subregions)

    @staticmethod
    def _add_members(
        conn: Connection, slug: str, locations: Iterable[str], subregions: Iterable[str]
    ) -> None:
        for location in locations:
            if not _exists(conn, schema.locations.c.slug, location):
                raise NotFound(f"region {slug!r}: no location {location!r}")
            conn.execute(schema.region_locations.insert().values(region_slug=slug, location_slug=location))
        for subregion in subregions:
            if not _exists(conn, schema.regions.c.slug, subregion):
                raise NotFound(f"region {slug!r}: no region {subregion!r}")
            if subregion == slug or slug in _descendants(conn, subregion):
                raise InvalidValue(
                    f"region {slug!r} cannot include {subregion!r}: regions would contain each other"
                )
            conn.execute(schema.region_subregions.insert().values(region_slug=slug, subregion_slug=subregion))

    def get(self, slug: str) -> Region:
        """The region with its direct members; NotFound if there is none."""
        with translated(f"read region {slug!r}"), self._engine.connect() as conn:
            if not _exists(conn, schema.regions.c.slug, slug):
                raise NotFound(f"no region {slug!r}")
            return _region(conn, slug)

    def list(self) -> list[Region]:
        """Every region with its direct members, by slug."""
        with translated("list regions"), self._engine.connect() as conn:
            slugs = conn.execute(select(schema.regions.c.slug).order_by(schema.regions.c.slug))
            return [_region(conn, slug) for slug in slugs.scalars().all()]

    def locations_within(self, slug: str) -> builtins.list[str]:
        """Every location of the region, directly or through the regions it includes."""
        with translated(f"resolve region {slug!r}"), self._engine.connect() as conn:
            if not _exists(conn, schema.regions.c.slug, slug):
                raise NotFound(f"no region {slug!r}")
            found: set[str] = set()
            for region in (slug, *_descendants(conn, slug)):
                found.update(_region(conn, region).locations)
        return sorted(found)

    def regions_of(self, location: str) -> builtins.list[str]:
        """Every region that contains the location, directly or through nesting."""
        rl, rs = schema.region_locations, schema.region_subregions
        with translated(f"find regions of location {location!r}"), self._engine.connect() as conn:
            frontier = set(
                conn.execute(select(rl.c.region_slug).where(rl.c.location_slug == location)).scalars().all()
            )
            found: set[str] = set()
            while frontier:
                found |= frontier
                parents = conn.execute(select(rs.c.region_slug).where(rs.c.subregion_slug.in_(frontier)))
                frontier = set(parents.scalars().all()) - found
        return sorted(found)


def _exists(conn: Connection, column: Column[str], value: str) -> bool:
    return conn.execute(select(column).where(column == value)).first() is not None


def _region(conn: Connection, slug: str) -> Region:
    rl, rs = schema.region_locations, schema.region_subregions
    locations = conn.execute(
        select(rl.c.location_slug).where(rl.c.region_slug == slug).order_by(rl.c.location_slug)
    )
    subregions = conn.execute(
        select(rs.c.subregion_slug).where(rs.c.region_slug == slug).order_by(rs.c.subregion_slug)
    )
    return Region(slug, tuple(locations.scalars().all()), tuple(subregions.scalars().all()))


def _descendants(conn: Connection, slug: str) -> set[str]:
    rs = schema.region_subregions
    found: set[str] = set()
    frontier = {slug}
    while frontier:
        children = conn.execute(select(rs.c.subregion_slug).where(rs.c.region_slug.in_(frontier)))
        frontier = set(children.scalars().all()) - found
        found |= frontier
    return found
