"""Incidents on every backend: round trips, vocabularies, JSON values, listing, deletion."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from opq.config import RetentionSettings
from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import Store, open_store, schema
from opq.store.classifications import Classification, IeeeDuration, MeasurementType
from opq.store.files import Files, WholeFile
from opq.store.incidents import IncidentBatch, Incidents, TrendsKept
from opq.store.models import Annotation, Event, Incident, Stats, Trend

T0 = 1_700_000_000_000


def incident(store: Store, start_ms: int = T0, **changes: Any) -> Incident:
    """A one-second voltage sag at box 1, with a fresh id, not stored yet."""
    made = Incident(
        incident_id=store.allocate_id("incident"),
        box_id="1",
        start_timestamp_ms=start_ms,
        end_timestamp_ms=start_ms + 1_000,
        measurement_type="VOLTAGE",
        classifications=("VOLTAGE_SAG",),
        event_id=1,
        location="kailua",
    )
    return dataclasses.replace(made, **changes)


def add(store: Store, start_ms: int = T0, **changes: Any) -> Incident:
    """As `incident`, stored, and as the store returns it."""
    made = incident(store, start_ms, **changes)
    store.incidents.add(made)
    return store.incidents.get(made.incident_id)


def row_counts(store: Store) -> dict[str, int]:
    tables = (
        schema.incidents,
        schema.incident_classifications,
        schema.incident_annotations,
        schema.files,
        schema.chunks,
    )
    with store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}


def test_round_trip_of_every_field(store: Store) -> None:
    full = incident(
        store,
        classifications=("VOLTAGE_SAG", "ITIC_NO_DAMAGE", "SEMI_F47_VIOLATION"),
        deviation_from_nominal=12.5,
        measurements=({"timestamp_ms": T0, "voltage": 105.5, "frequency": 60.0},),
        gridfs_filename="incident_1",
        ieee_duration="MOMENTARY",
        annotations=(
            Annotation("b@example.org", "second", T0 + 20),
            Annotation("a@example.org", "first", T0 + 10),
        ),
        metadata={"plugin": "IticPlugin", "nested": {"list": [1, 2.5, None, True]}},
    )
    store.incidents.add(full)
    assert store.incidents.get(full.incident_id) == dataclasses.replace(
        full,
        classifications=("ITIC_NO_DAMAGE", "SEMI_F47_VIOLATION", "VOLTAGE_SAG"),
        annotations=tuple(reversed(full.annotations)),
    )


def test_minimal_incident_round_trip(store: Store) -> None:
    bare = incident(store, classifications=(), event_id=None, location=None)
    store.incidents.add(bare)
    assert store.incidents.get(bare.incident_id) == bare


def test_enum_members_are_accepted_and_read_back_as_text(store: Store) -> None:
    made = incident(
        store,
        measurement_type=MeasurementType.FREQUENCY,
        classifications=(Classification.FREQUENCY_SWELL, "FREQUENCY_SWELL"),
        ieee_duration=IeeeDuration.SUSTAINED,
        metadata={"class": Classification.OUTAGE, "value": np.float64(0.25)},
    )
    store.incidents.add(made)
    stored = store.incidents.get(made.incident_id)
    assert stored.classifications == ("FREQUENCY_SWELL",)
    assert (stored.measurement_type, stored.ieee_duration) == ("FREQUENCY", "SUSTAINED")
    assert stored.metadata == {"class": "OUTAGE", "value": 0.25}
    assert type(stored.metadata["class"]) is str


@pytest.mark.parametrize("lifetime_ms", [None, 365 * 86_400_000], ids=["forever", "a-year"])
def test_expire_at_follows_the_end_of_the_incident(store: Store, lifetime_ms: int | None) -> None:
    made = incident(store)
    Incidents(store.engine, lifetime_ms).add(made)
    inc = schema.incidents
    query = select(inc.c.expire_at).where(inc.c.incident_id == made.incident_id)
    with store.engine.connect() as conn:
        stored = conn.execute(query).scalar_one()
    assert stored == (None if lifetime_ms is None else made.end_timestamp_ms + lifetime_ms)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start_timestamp_ms": T0 + 5_000}, "is after end"),
        ({"box_id": ""}, "box_id"),
        ({"measurement_type": "CURRENT"}, "measurement_type 'CURRENT'"),
        ({"measurement_type": "voltage"}, "measurement_type 'voltage'"),
        ({"classifications": ("VOLTAGE_SAG", "BIPOLAR_TRANSIENT")}, "'BIPOLAR_TRANSIENT'"),
        ({"ieee_duration": "LONG"}, "ieee_duration 'LONG'"),
        ({"deviation_from_nominal": math.nan}, "deviation_from_nominal nan"),
        ({"deviation_from_nominal": math.inf}, "deviation_from_nominal inf"),
        ({"metadata": {"rms": math.nan}}, r"metadata\['rms'\] is nan"),
        ({"metadata": {"rms": np.float32(1.5)}}, "numpy.float32"),
        ({"metadata": {"n": np.int64(3)}}, "numpy.int64"),
        ({"metadata": {"samples": np.zeros(3)}}, "numpy.ndarray"),
        ({"metadata": {1: "one"}}, "JSON keys are strings"),
        ({"metadata": ["plugin"]}, "metadata must be a dict"),
        ({"measurements": ({"voltage": -math.inf},)}, r"measurements\[0\]\['voltage'\]"),
        ({"measurements": ("voltage",)}, "measurements must be dicts"),
        ({"annotations": (Annotation("a@example.org", " ", T0),)}, "has no text"),
        ({"annotations": (Annotation("", "looks odd", T0),)}, "names no user"),
    ],
    ids=[
        "start-after-end",
        "empty-box",
        "unknown-measurement-type",
        "lowercase-measurement-type",
        "unknown-classification",
        "unknown-ieee-duration",
        "nan-deviation",
        "infinite-deviation",
        "nan-in-metadata",
        "numpy-float32",
        "numpy-int64",
        "numpy-array",
        "non-string-key",
        "metadata-not-a-dict",
        "infinity-in-measurements",
        "measurement-not-a-dict",
        "blank-annotation",
        "annotation-without-user",
    ],
)
def test_add_refuses_bad_values_and_writes_nothing(
    store: Store, changes: dict[str, Any], message: str
) -> None:
    defaults = {"annotations": (Annotation("a@example.org", "ok", T0),)}
    bad = incident(store, **{**defaults, **changes})
    with pytest.raises(InvalidValue, match=message) as caught:
        store.incidents.add(bad)
    assert f"incident {bad.incident_id}" in str(caught.value)
    assert set(row_counts(store).values()) == {0}


def test_add_refuses_a_duplicate_id(store: Store) -> None:
    first = add(store)
    with pytest.raises(Conflict, match=f"incident {first.incident_id}"):
        store.incidents.add(dataclasses.replace(first, classifications=("OUTAGE",)))
    assert store.incidents.get(first.incident_id) == first
    assert row_counts(store)["incident_classifications"] == 1


def test_get_an_unknown_incident(store: Store) -> None:
    with pytest.raises(NotFound, match="no incident 404"):
        store.incidents.get(404)


def test_annotate_appends_oldest_first(store: Store) -> None:
    made = add(store)
    store.incidents.annotate(made.incident_id, Annotation("b@example.org", "later", T0 + 2))
    store.incidents.annotate(made.incident_id, Annotation("a@example.org", "earlier", T0 + 1))
    store.incidents.annotate(made.incident_id, Annotation("c@example.org", "same time", T0 + 2))
    assert [a.text for a in store.incidents.get(made.incident_id).annotations] == [
        "earlier",
        "later",
        "same time",
    ]


def test_annotate_refuses_unknown_incidents_and_empty_text(store: Store) -> None:
    made = add(store)
    with pytest.raises(NotFound, match="no incident 404"):
        store.incidents.annotate(404, Annotation("a@example.org", "hello", T0))
    with pytest.raises(InvalidValue, match="no text"):
        store.incidents.annotate(made.incident_id, Annotation("a@example.org", "", T0))
    assert store.incidents.get(made.incident_id).annotations == ()


def test_list_is_newest_first_and_pages(store: Store) -> None:
    starts = [T0 + 3_000, T0, T0 + 5_000, T0 + 3_000, T0 + 1_000]
    made = [add(store, start) for start in starts]
    expected = sorted(made, key=lambda i: (i.start_timestamp_ms, i.incident_id), reverse=True)
    assert store.incidents.list() == expected
    first = store.incidents.list(limit=2)
    second = store.incidents.list(limit=2, before_id=first[-1].incident_id)
    third = store.incidents.list(limit=2, before_id=second[-1].incident_id)
    assert (first + second + third, len(third)) == (expected, 1)
    with pytest.raises(NotFound, match="no incident 404"):
        store.incidents.list(before_id=404)
    with pytest.raises(InvalidValue, match="limit"):
        store.incidents.list(limit=-1)


@pytest.fixture
def mixed(store: Store) -> dict[str, Incident]:
    """Incidents differing in box, location, type, classifications and time."""
    return {
        "sag": add(store, T0, classifications=("VOLTAGE_SAG", "ITIC_NO_DAMAGE")),
        "swell": add(
            store,
            T0 + 2_000,
            box_id="2",
            location="manoa",
            classifications=("VOLTAGE_SWELL", "ITIC_PROHIBITED"),
        ),
        "thd": add(
            store,
            T0 + 4_000,
            measurement_type="THD",
            classifications=("EXCESSIVE_THD",),
            location="manoa",
        ),
        "freq": add(
            store,
            T0 + 6_000,
            box_id="2",
            measurement_type="FREQUENCY",
            classifications=("FREQUENCY_SAG",),
            location=None,
        ),
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["freq", "thd", "swell", "sag"]),
        ({"box_id": "2"}, ["freq", "swell"]),
        ({"location": "manoa"}, ["thd", "swell"]),
        ({"measurement_type": "VOLTAGE"}, ["swell", "sag"]),
        ({"classification": "ITIC_PROHIBITED"}, ["swell"]),
        ({"classification": "OUTAGE"}, []),
        ({"classification": "VOLTAGE_SAG", "location": "manoa"}, []),
        ({"box_id": "2", "measurement_type": "VOLTAGE", "location": "manoa"}, ["swell"]),
        ({"start_ms": T0 + 1_000}, ["freq", "thd", "swell", "sag"]),
        ({"start_ms": T0 + 1_001, "end_ms": T0 + 4_000}, ["thd", "swell"]),
        ({"end_ms": T0 + 1_999}, ["sag"]),
        ({"start_ms": T0 + 3_001, "end_ms": T0 + 3_999}, []),
    ],
    ids=[
        "all",
        "box",
        "location",
        "measurement-type",
        "classification",
        "classification-unused",
        "classification-and-location",
        "three-filters",
        "touching-end",
        "window",
        "until",
        "gap",
    ],
)
def test_list_filters(
    store: Store, mixed: dict[str, Incident], filters: dict[str, Any], expected: list[str]
) -> None:
    assert store.incidents.list(**filters) == [mixed[name] for name in expected]


@pytest.mark.parametrize(
    "filters",
    [{"classification": "VOLTAGE_SAGG"}, {"measurement_type": "voltage"}],
    ids=["classification", "measurement-type"],
)
def test_list_refuses_misspelt_vocabulary(store: Store, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue, match="is not one of"):
        store.incidents.list(**filters)


def test_list_loads_every_incident_of_a_page_with_its_own_details(store: Store) -> None:
    made = [
        add(
            store,
            T0 + n,
            classifications=(Classification.VOLTAGE_SAG, *[Classification.OUTAGE] * (n % 2)),
            annotations=tuple(Annotation("u", f"note {n}.{k}", T0 + k) for k in range(n)),
        )
        for n in range(5)
    ]
    assert store.incidents.list(limit=5) == list(reversed(made))


def test_for_event_and_count(store: Store) -> None:
    a = add(store, T0 + 10, event_id=7)
    b = add(store, T0, event_id=7)
    add(store, T0 + 20, event_id=8)
    add(store, T0 + 30, event_id=None, measurement_type="HEALTH", classifications=("OUTAGE",))
    assert store.incidents.for_event(7) == [b, a]
    assert store.incidents.for_event(9) == []
    assert store.incidents.count() == 4
    assert store.incidents.count(since_ms=T0 + 10) == 3


def file_names(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(schema.files.c.filename).order_by("filename")).scalars())


@pytest.mark.parametrize(
    ("produced_by", "deleted", "kept"),
    [(None, ["itic", "thd"], ["other-event"]), ("IticPlugin", ["itic"], ["thd", "other-event"])],
    ids=["every-plugin", "one-plugin"],
)
def test_delete_for_event(store: Store, produced_by: str | None, deleted: list[str], kept: list[str]) -> None:
    made = {
        "itic": add(
            store,
            metadata={"plugin": "IticPlugin"},
            annotations=(Annotation("a", "seen", T0),),
            classifications=("ITIC_NO_DAMAGE", "VOLTAGE_SAG"),
        ),
        "thd": add(store, metadata={"plugin": "ThdPlugin"}, classifications=("EXCESSIVE_THD",)),
        "other-event": add(store, event_id=2, metadata={"plugin": "IticPlugin"}),
    }
    for name, found in made.items():
        Files(store.engine, chunk_size=2).put(
            f"incident_{name}", b"abcd", event_id=found.event_id, incident_id=found.incident_id
        )
    Files(store.engine, chunk_size=2).put("event_1_1", b"abcd", event_id=1, incident_id=None)

    assert store.incidents.delete_for_event(1, produced_by=produced_by) == len(deleted)

    for name in deleted:
        with pytest.raises(NotFound):
            store.incidents.get(made[name].incident_id)
    assert [store.incidents.get(made[name].incident_id) for name in kept] == [made[name] for name in kept]
    assert file_names(store) == sorted(["event_1_1", *[f"incident_{name}" for name in kept]])
    counts = row_counts(store)
    assert counts["chunks"] == 2 * (1 + len(kept))
    assert counts["incident_classifications"] == sum(len(made[n].classifications) for n in kept)
    assert counts["incident_annotations"] == sum(len(made[n].annotations) for n in kept)


def test_delete_for_event_without_incidents(store: Store) -> None:
    add(store, event_id=2)
    assert store.incidents.delete_for_event(1) == 0
    assert store.incidents.delete_for_event(2, produced_by="NoSuchPlugin") == 0
    assert store.incidents.count() == 1


def _batch(store: Store, **changes: Any) -> IncidentBatch:
    """Two incidents of event 7 at box 1, one with a waveform file, keeping trends and the event."""
    first, second = incident(store, event_id=7), incident(store, T0 + 500, event_id=7)
    first = dataclasses.replace(first, gridfs_filename=f"incident_{first.incident_id}")
    made = IncidentBatch(
        incidents=(first, second),
        files=(
            WholeFile(f"incident_{first.incident_id}", bytes(range(256)) * 5, incident_id=first.incident_id),
        ),
        trends_kept=(TrendsKept("1", T0 - 60_000, T0 + 60_000, T0 + 86_400_000),),
        events_kept={7: T0 + 86_400_000},
    )
    return dataclasses.replace(made, **changes)


def _trends_and_event(store: Store) -> None:
    stats = Stats(119.0, 121.0, 120.0)
    store.trends.upsert_many([Trend("1", T0 + n * 60_000, None, stats, stats, stats) for n in (-2, 0, 2)])
    store.events.add(Event(7, T0, T0 + 1_000, ("1",)))


def _lifetimes(store: Store) -> tuple[list[int | None], list[int | None]]:
    t, ev = schema.trends, schema.events
    with store.engine.connect() as conn:
        trends = list(conn.execute(select(t.c.expire_at).order_by(t.c.timestamp_ms)).scalars())
        events = list(conn.execute(select(ev.c.expire_at)).scalars())
    return trends, events


@pytest.fixture
def short_lived(db_url: str) -> Iterator[Store]:
    """Trends and events live a minute, incidents a day."""
    with open_store(db_url, RetentionSettings(trends_s=60, events_s=60, incidents_s=86_400)) as opened:
        yield opened


def test_a_batch_writes_incidents_files_and_lifetimes_together(short_lived: Store) -> None:
    store = short_lived
    _trends_and_event(store)
    trends_before, _ = _lifetimes(store)
    batch = _batch(store)
    store.incidents.add_batch(batch, Files(store.engine, chunk_size=500))
    first, second = batch.incidents
    assert [i.incident_id for i in store.incidents.for_event(7)] == [first.incident_id, second.incident_id]
    assert store.incidents.get(first.incident_id) == first
    assert store.files.read_bytes(f"incident_{first.incident_id}") == bytes(range(256)) * 5  # md5 checked
    assert [f.filename for f in store.files.find(incident_id=first.incident_id)] == [first.gridfs_filename]
    assert row_counts(store)["chunks"] == 3  # 1,280 bytes in chunks of 500
    trends, events = _lifetimes(store)
    assert trends == [trends_before[0], T0 + 86_400_000, trends_before[2]] and events == [T0 + 86_400_000]
    # Deleting the event's incidents takes their files too.
    assert store.incidents.delete_for_event(7, produced_by=None) == 2
    assert set(row_counts(store).values()) == {0}


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        pytest.param("bad incident", InvalidValue, id="an incident the store refuses"),
        pytest.param("taken id", Conflict, id="an incident id already taken"),
        pytest.param("taken file", Conflict, id="a file name already taken"),
        pytest.param("no event", NotFound, id="an event to keep that is gone"),
        pytest.param("bad file", InvalidValue, id="a file with a blank name"),
    ],
)
def test_a_batch_that_fails_anywhere_writes_nothing(
    short_lived: Store, breakage: str, error: type[Exception]
) -> None:
    store = short_lived
    _trends_and_event(store)
    batch = _batch(store)
    first, second = batch.incidents
    before = row_counts(store)
    if breakage == "bad incident":
        batch = dataclasses.replace(
            batch, incidents=(first, dataclasses.replace(second, deviation_from_nominal=math.nan))
        )
    elif breakage == "taken id":
        store.incidents.add(second)
        before = row_counts(store)
    elif breakage == "taken file":
        store.files.put(batch.files[0].filename, b"already")
        before = row_counts(store)
    elif breakage == "no event":
        batch = dataclasses.replace(batch, events_kept={7: None, 404: None})
    else:
        batch = dataclasses.replace(batch, files=(*batch.files, WholeFile("  ", b"x")))
    lifetimes = _lifetimes(store)
    with pytest.raises(error):
        store.incidents.add_batch(batch, store.files)
    assert row_counts(store) == before
    assert _lifetimes(store) == lifetimes


def test_replace_stores_a_new_version_in_one_step_or_not_at_all(store: Store) -> None:
    first = add(store, annotations=(Annotation("a@example.org", "seen", T0),))
    longer = dataclasses.replace(first, end_timestamp_ms=T0 + 5_000, classifications=("UNDERVOLTAGE",))
    store.incidents.replace(longer)
    assert store.incidents.get(first.incident_id) == longer
    assert (
        row_counts(store)["incident_classifications"] == 1 and row_counts(store)["incident_annotations"] == 1
    )
    with pytest.raises(InvalidValue, match="deviation_from_nominal"):
        store.incidents.replace(dataclasses.replace(longer, deviation_from_nominal=math.inf))
    assert store.incidents.get(first.incident_id) == longer
    with pytest.raises(NotFound, match="no incident 404"):
        store.incidents.replace(dataclasses.replace(longer, incident_id=404))
