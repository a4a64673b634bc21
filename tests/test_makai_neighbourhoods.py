"""Which other boxes are asked with a triggering box: none, same location, or its innermost regions."""

from __future__ import annotations

from opq.makai.capture import neighbourhoods
from opq.store.models import Box, Region


def box(box_id: str, location: str | None, *, unplugged: bool = False) -> Box:
    return Box(
        box_id=box_id,
        name=f"box {box_id}",
        calibration_constant=152.5,
        location=location,
        unplugged=unplugged,
    )


BOXES = [
    box("1", "uh-post"),
    box("2", "uh-hamilton"),
    box("3", "uh-post"),
    box("4", "kailua-home"),
    box("5", "uh-kennedy"),
    box("6", "uh-post", unplugged=True),
    box("7", None),
    box("8", "maui-home"),
]
REGIONS = [
    Region("uh-manoa", locations=("uh-post", "uh-hamilton", "uh-kennedy")),
    Region("oahu", locations=("kailua-home",), subregions=("uh-manoa",)),
    Region("hawaii", subregions=("oahu", "maui")),
    Region("maui", locations=()),
]


def test_scope_none_asks_nobody() -> None:
    assert neighbourhoods(BOXES, REGIONS, "none") == {b.box_id: () for b in BOXES}


def test_scope_location_asks_the_other_plugged_boxes_at_the_same_location() -> None:
    hoods = neighbourhoods(BOXES, REGIONS, "location")
    assert hoods["1"] == ("3",)
    assert hoods["3"] == ("1",)
    assert hoods["2"] == ()
    assert hoods["6"] == ("1", "3")  # an unplugged box still has neighbours, but is nobody's


def test_scope_region_asks_the_innermost_region_same_location_first() -> None:
    hoods = neighbourhoods(BOXES, REGIONS, "region")
    assert hoods["1"] == ("3", "2", "5")  # uh-manoa, not kailua-home through oahu
    assert hoods["2"] == ("1", "3", "5")


def test_a_location_listed_directly_in_a_region_with_subregions_gets_all_of_it() -> None:
    # kailua-home's innermost region is oahu, which holds uh-manoa: the neighbourhood is not symmetric.
    assert neighbourhoods(BOXES, REGIONS, "region")["4"] == ("1", "2", "3", "5")


def test_a_location_in_no_region_falls_back_to_the_same_location() -> None:
    boxes = [*BOXES, box("9", "maui-home")]
    hoods = neighbourhoods(boxes, REGIONS, "region")
    assert hoods["8"] == ("9",)
    assert hoods["9"] == ("8",)


def test_boxes_without_a_location_have_no_neighbours_and_are_nobodys() -> None:
    for scope in ("location", "region"):
        hoods = neighbourhoods(BOXES, REGIONS, scope)  # type: ignore[arg-type]
        assert hoods["7"] == ()
        assert all("7" not in others and "6" not in others for others in hoods.values())


def test_a_location_in_two_unrelated_regions_gets_both() -> None:
    regions = [
        Region("uh-manoa", locations=("uh-post", "uh-hamilton")),
        Region("feeder-12", locations=("uh-post", "kailua-home")),
    ]
    assert neighbourhoods(BOXES, regions, "region")["1"] == ("3", "2", "4")


def test_a_subregion_listing_the_location_too_is_the_innermost() -> None:
    regions = [
        Region("uh-manoa", locations=("uh-post", "uh-hamilton")),
        Region("oahu", locations=("uh-post", "kailua-home"), subregions=("uh-manoa",)),
    ]
    assert neighbourhoods(BOXES, regions, "region")["1"] == ("3", "2")


def test_unknown_subregions_and_cycles_are_tolerated() -> None:
    regions = [
        Region("a", locations=("uh-post",), subregions=("b", "missing")),
        Region("b", locations=("uh-hamilton",), subregions=("a",)),
    ]
    hoods = neighbourhoods(BOXES, regions, "region")
    # a and b hold each other, so neither is strictly inside the other: both are innermost.
    assert hoods["1"] == ("3", "2")
    assert hoods["2"] == ("1", "3")
