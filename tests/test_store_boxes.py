"""Boxes on every backend: unique id, name and key, location history, unplugged flag."""

from __future__ import annotations

import pytest

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import Store
from opq.store.models import Box, Location, LocationStint

KEY_A = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
KEY_B = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"


@pytest.fixture
def placed(store: Store) -> Store:
    store.locations.add(Location("uh-post", -157.8, 21.3, "POST building"))
    store.locations.add(Location("kailua", -157.7, 21.4, "Kailua"))
    return store


def test_box_round_trip_with_history(placed: Store) -> None:
    box = Box("1000", "POST 3rd floor", 152.5, "lab", "uh-post", 1_000, KEY_A)
    placed.boxes.add(box)
    stored = placed.boxes.get("1000")
    assert stored.location_archive == (LocationStint("uh-post", 1_000),)
    assert stored.public_key == KEY_A
    assert placed.boxes.list() == [stored]


def test_moving_appends_to_the_location_history(placed: Store) -> None:
    placed.boxes.add(Box("1000", "b", 152.5, location="uh-post", location_start_time_ms=1_000))
    placed.boxes.move("1000", "kailua", 5_000)
    box = placed.boxes.get("1000")
    assert (box.location, box.location_start_time_ms) == ("kailua", 5_000)
    assert box.location_archive == (
        LocationStint("uh-post", 1_000),
        LocationStint("kailua", 5_000),
    )
    assert placed.boxes.location_at("1000", 999) is None
    assert placed.boxes.location_at("1000", 4_999) == "uh-post"
    assert placed.boxes.location_at("1000", 5_000) == "kailua"


def test_move_errors_leave_the_box_where_it_was(placed: Store) -> None:
    placed.boxes.add(Box("1000", "b", 152.5, location="uh-post", location_start_time_ms=1_000))
    with pytest.raises(NotFound, match="no location 'mars'"):
        placed.boxes.move("1000", "mars", 5_000)
    with pytest.raises(InvalidValue, match="must come after"):
        placed.boxes.move("1000", "kailua", 1_000)
    with pytest.raises(NotFound, match="no box '9'"):
        placed.boxes.move("9", "kailua", 5_000)
    assert placed.boxes.get("1000").location_archive == (LocationStint("uh-post", 1_000),)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (Box("1000", "other", 150.0), "box id '1000'"),
        (Box("1001", "first", 150.0), "box name 'first'"),
        (Box("1001", "other", 150.0, public_key=KEY_A), "public key"),
    ],
    ids=["id", "name", "key"],
)
def test_duplicates_are_refused(placed: Store, second: Box, message: str) -> None:
    placed.boxes.add(Box("1000", "first", 152.5, public_key=KEY_A))
    with pytest.raises(Conflict, match=message):
        placed.boxes.add(second)
    assert [b.box_id for b in placed.boxes.list()] == ["1000"]


@pytest.mark.parametrize(
    ("box", "message"),
    [
        (Box("", "n", 152.5), "box id ''"),
        (Box("1 0", "n", 152.5), "box id '1 0'"),
        (Box("0007", "n", 152.5), "box id '0007'"),
        (Box("box-7", "n", 152.5), "box id 'box-7'"),
        (Box("2147483648", "n", 152.5), "box id '2147483648'"),
        (Box("1", " ", 152.5), "needs a name"),
        (Box("1", "n", 0.0), "calibration constant 0.0"),
        (Box("1", "n", float("nan")), "calibration constant nan"),
        (Box("1", "n", 152.5, public_key="short"), "public key 'short'"),
    ],
    ids=[
        "empty-id",
        "space-id",
        "padded-id",
        "word-id",
        "huge-id",
        "blank-name",
        "zero-cal",
        "nan-cal",
        "bad-key",
    ],
)
def test_bad_boxes_are_refused(placed: Store, box: Box, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        placed.boxes.add(box)
    assert placed.boxes.list() == []


def test_unknown_location_is_refused(placed: Store) -> None:
    with pytest.raises(NotFound, match="no location 'mars'"):
        placed.boxes.add(Box("1", "n", 152.5, location="mars", location_start_time_ms=0))
    assert placed.boxes.list() == []


def test_unplugged_flag_and_keys(placed: Store) -> None:
    placed.boxes.add(Box("1000", "a", 152.5, public_key=KEY_A))
    placed.boxes.add(Box("1001", "b", 152.5))
    placed.boxes.set_unplugged("1000", True)
    assert placed.boxes.get("1000").unplugged
    placed.boxes.set_public_key("1001", KEY_B)
    assert placed.boxes.public_keys() == {KEY_A: "1000", KEY_B: "1001"}
    with pytest.raises(Conflict, match="belongs to box '1000'"):
        placed.boxes.set_public_key("1001", KEY_A)
    placed.boxes.set_public_key("1000", None)
    assert placed.boxes.public_keys() == {KEY_B: "1001"}
    with pytest.raises(NotFound):
        placed.boxes.set_unplugged("nope", True)
