"""Locations and regions on every backend: one slug namespace, coordinates range-checked, nesting."""

from __future__ import annotations

import pytest

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import Store
from opq.store.models import Location, Region

POST = Location("uh-post", -157.8162, 21.2968, "POST building, University of Hawaii")
KAILUA = Location("kailua-home", -157.7394, 21.4022, "A home in Kailua")


def test_location_round_trip_keeps_longitude_first(store: Store) -> None:
    store.locations.add(POST)
    stored = store.locations.get("uh-post")
    assert stored == POST
    assert stored.coordinates == (-157.8162, 21.2968)
    assert store.locations.list() == [POST]


@pytest.mark.parametrize(
    ("longitude", "latitude", "named"),
    [
        (180.5, 0.0, "longitude 180.5"),
        (-181.0, 0.0, "longitude -181.0"),
        (0.0, 90.01, "latitude 90.01"),
        (0.0, -91.0, "latitude -91.0"),
        (float("nan"), 0.0, "longitude nan"),
        (0.0, float("inf"), "latitude inf"),
    ],
    ids=["lon-high", "lon-low", "lat-high", "lat-low", "lon-nan", "lat-inf"],
)
def test_coordinates_out_of_range_are_refused(
    store: Store, longitude: float, latitude: float, named: str
) -> None:
    with pytest.raises(InvalidValue, match=named):
        store.locations.add(Location("x", longitude, latitude, "somewhere"))
    assert store.locations.list() == []
    assert store.row_counts()["slugs"] == 0


@pytest.mark.parametrize(("longitude", "latitude"), [(180.0, 90.0), (-180.0, -90.0)])
def test_coordinates_at_the_limits_are_accepted(store: Store, longitude: float, latitude: float) -> None:
    store.locations.add(Location("edge", longitude, latitude, "the edge"))
    assert store.locations.get("edge").coordinates == (longitude, latitude)


def test_duplicate_slug_and_description_name_the_value(store: Store) -> None:
    store.locations.add(POST)
    with pytest.raises(Conflict, match="'uh-post'"):
        store.locations.add(Location("uh-post", 0, 0, "elsewhere"))
    with pytest.raises(Conflict, match="POST building"):
        store.locations.add(Location("other", 0, 0, POST.description))
    assert store.locations.list() == [POST]
    assert store.row_counts()["slugs"] == 1


@pytest.mark.parametrize("slug", ["", " lead", "trail ", "a/b", "x" * 129])
def test_bad_slugs_are_refused(store: Store, slug: str) -> None:
    with pytest.raises(InvalidValue, match="slug"):
        store.locations.add(Location(slug, 0, 0, "somewhere"))


def test_location_and_region_slugs_share_one_namespace(store: Store) -> None:
    store.locations.add(POST)
    with pytest.raises(Conflict, match="taken by a location"):
        store.regions.add("uh-post")
    store.regions.add("96822", locations=["uh-post"])
    with pytest.raises(Conflict, match="taken by a region"):
        store.locations.add(Location("96822", 0, 0, "zip as a location"))
    with pytest.raises(Conflict, match="taken by a region"):
        store.regions.add("96822")


def test_regions_nest_and_resolve_to_locations(store: Store) -> None:
    store.locations.add(POST)
    store.locations.add(KAILUA)
    store.regions.add("96822", locations=["uh-post"])
    store.regions.add("96734", locations=["kailua-home"])
    store.regions.add("oahu", subregions=["96822", "96734"])
    store.regions.add("hawaii", subregions=["oahu"])

    assert store.regions.get("oahu") == Region("oahu", (), ("96734", "96822"))
    assert store.regions.locations_within("hawaii") == ["kailua-home", "uh-post"]
    assert store.regions.regions_of("uh-post") == ["96822", "hawaii", "oahu"]
    assert [r.slug for r in store.regions.list()] == ["96734", "96822", "hawaii", "oahu"]


def test_region_with_an_unknown_member_is_not_created(store: Store) -> None:
    store.locations.add(POST)
    with pytest.raises(NotFound, match="no location 'nowhere'"):
        store.regions.add("r", locations=["uh-post", "nowhere"])
    with pytest.raises(NotFound, match="no region 'ghost'"):
        store.regions.add("r", subregions=["ghost"])
    assert store.regions.list() == []
    assert store.row_counts()["slugs"] == 1


def test_regions_cannot_contain_each_other(store: Store) -> None:
    store.regions.add("a")
    store.regions.add("b", subregions=["a"])
    store.regions.add("c", subregions=["b"])
    with pytest.raises(InvalidValue, match="contain each other"):
        store.regions.include("a", subregions=["c"])
    with pytest.raises(InvalidValue, match="contain each other"):
        store.regions.include("a", subregions=["a"])
    assert store.regions.get("a") == Region("a")


def test_include_adds_members_once(store: Store) -> None:
    store.locations.add(POST)
    store.regions.add("r", locations=["uh-post"])
    store.regions.include("r", locations=["uh-post"])
    assert store.regions.get("r").locations == ("uh-post",)
    with pytest.raises(NotFound, match="no region 'ghost'"):
        store.regions.include("ghost", locations=["uh-post"])
