"""Analysing events on every backend: plugin failures, incident fields, re-analysis, local or grid-wide."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from opq.config import MaukaSettings
from opq.mauka.analysis import HOST_KEY, PluginCounters, analyze_event, reanalyze
from opq.mauka.plugin import Finding, Waveform
from opq.mauka.registry import load_plugins
from opq.mauka.scope import SAME_TIME_TOLERANCE_MS, Place, link_incidents
from opq.store import Store
from opq.store.models import Incident
from tests.mauka_site import (
    CALIBRATION,
    T0,
    BrokenPlugin,
    MislabellingPlugin,
    SagPlugin,
    TaggingPlugin,
    add_event,
    add_measurements,
    add_site,
    sine_counts,
)

SAG = (1.0, 0.2, 0.5)  # at 1 s, for 0.2 s (12 cycles), to 0.5 pu
NOW = T0 + 60_000


@pytest.fixture
def site(store: Store) -> Store:
    add_site(store)
    return store


def test_a_failing_plugin_is_counted_and_the_others_incidents_are_stored(site: Store) -> None:
    event_id = add_event(site, {"1": sine_counts(sags=[SAG])})
    counters = PluginCounters()
    result = analyze_event(site, event_id, [BrokenPlugin(), SagPlugin()], NOW, counters=counters)

    incidents = site.incidents.for_event(event_id)
    assert [i.classifications for i in incidents] == [("VOLTAGE_SAG",)]
    assert result.incident_ids == (incidents[0].incident_id,)
    assert result.failures == 1
    stored = site.events.analysis(event_id)
    assert stored is not None and stored[0] == NOW
    record = stored[1]
    assert record["broken"]["failures"] == 1
    assert "the broken plugin broke" in record["broken"]["errors"][0]
    assert (record["sag"]["waveforms"], record["sag"]["incidents"], record["sag"]["failures"]) == (1, 1, 0)
    assert record[HOST_KEY]["boxes"] == ["1"]
    snapshot = counters.snapshot()
    assert snapshot["broken"]["failures"] == 1 and "broke" in snapshot["broken"]["last_failure"]
    assert snapshot["sag"]["incidents"] == 1
    # Run again without it: its entry stays in the record, its failure is not this run's.
    again = analyze_event(site, event_id, [SagPlugin()], NOW + 1)
    assert again.failures == 0 and again.record["broken"]["failures"] == 1


def test_an_incident_carries_every_seed_field_and_its_trimmed_waveform(site: Store) -> None:
    counts = sine_counts(sags=[SAG])
    event_id = add_event(site, {"1": counts, "2": sine_counts()})
    add_measurements(site, "1", T0 - 5_000, T0 + 5_000)
    add_measurements(site, "2", T0 - 5_000, T0 + 5_000)
    analyze_event(site, event_id, [SagPlugin()], NOW)

    [incident] = site.incidents.for_event(event_id)
    start, end = T0 + 1_000, T0 + 1_200
    assert incident.incident_id > 0
    assert (incident.event_id, incident.box_id, incident.location) == (event_id, "1", "lab-a")
    assert (incident.start_timestamp_ms, incident.end_timestamp_ms) == (start, end)
    assert (incident.measurement_type, incident.classifications) == ("VOLTAGE", ("VOLTAGE_SAG",))
    assert incident.deviation_from_nominal == pytest.approx(60.0, abs=0.5)
    assert incident.ieee_duration == "INSTANTANEOUS"
    assert incident.annotations == ()
    # The box's own measurements within a second of the incident, copied.
    assert [m["timestamp_ms"] for m in incident.measurements] == list(range(start - 1_000, end + 1_001, 100))
    assert {m["box_id"] for m in incident.measurements} == {"1"}
    assert incident.metadata["plugin"] == "sag"
    assert incident.metadata["cycles"] == 12 and isinstance(incident.metadata["min_v"], float)
    assert incident.metadata["scope"] == "local"
    # The raw counts of [start − 1 ms, end + 1 ms], 12 samples a millisecond.
    assert incident.gridfs_filename == f"incident_{incident.incident_id}"
    data = site.files.read_bytes(incident.gridfs_filename)
    assert len(data) == (end - start + 2) * 12 * 2
    assert np.array_equal(np.frombuffer(data, dtype="<i2"), counts[999 * 12 : 1_201 * 12])
    info = site.files.get(incident.gridfs_filename)
    assert (info.incident_id, info.event_id, info.box_id) == (incident.incident_id, event_id, "1")
    assert info.metadata["calibration_constant"] == CALIBRATION
    assert info.metadata["first_sample_timestamp_ms"] == start - 1
    assert info.metadata["incident_id"] == incident.incident_id


def test_features_are_computed_once_per_box_and_shared(site: Store) -> None:
    event_id = add_event(site, {"1": sine_counts(sags=[SAG]), "2": sine_counts()})
    sag, tagging = SagPlugin(), TaggingPlugin()
    analyze_event(site, event_id, [sag, tagging], NOW)
    assert [w.box_id for w in sag.seen] == ["1", "2"]
    # The same waveform object, so its cached features, went to both plugins.
    assert all(a is b and a.features is b.features for a, b in zip(sag.seen, tagging.seen, strict=True))
    assert sag.seen[0].samples_v.max() == pytest.approx(120 * np.sqrt(2), rel=1e-3)


def test_a_finding_the_store_would_refuse_is_a_failure_of_its_plugin(site: Store) -> None:
    event_id = add_event(site, {"1": sine_counts(sags=[SAG])})
    result = analyze_event(site, event_id, [MislabellingPlugin(), SagPlugin()], NOW)
    assert result.record["mislabelling"]["failures"] == 1
    assert "PERIODIC_NOTCHING_TRANSIENT" in result.record["mislabelling"]["errors"][0]
    assert [i.metadata["plugin"] for i in site.incidents.for_event(event_id)] == ["sag"]


def test_a_box_without_its_waveform_is_skipped_and_noted(site: Store) -> None:
    event_id = add_event(site, {"1": sine_counts(sags=[SAG]), "2": sine_counts(sags=[SAG])})
    site.files.delete(f"event_{event_id}_2")
    result = analyze_event(site, event_id, [SagPlugin()], NOW)
    assert result.record[HOST_KEY]["boxes"] == ["1"]
    assert "2" in result.record[HOST_KEY]["skipped_boxes"]
    assert [i.box_id for i in site.incidents.for_event(event_id)] == ["1"]


def test_analysing_twice_does_not_double_the_incidents(site: Store) -> None:
    event_id = add_event(site, {"1": sine_counts(sags=[SAG])})
    analyze_event(site, event_id, [SagPlugin()], NOW)
    again = analyze_event(site, event_id, [SagPlugin()], NOW + 1)
    assert again.replaced == 1
    assert len(site.incidents.for_event(event_id)) == 1


def test_reanalysis_replaces_only_the_incidents_of_the_plugins_run(site: Store) -> None:
    inside = add_event(site, {"1": sine_counts(sags=[SAG])})
    outside = add_event(site, {"1": sine_counts(sags=[SAG])}, start_ms=T0 + 3_600_000)
    for event_id in (inside, outside):
        analyze_event(site, event_id, [SagPlugin(), TaggingPlugin()], NOW)
    tagged = [i for i in site.incidents.for_event(inside) if i.metadata["plugin"] == "tagging"]
    before_outside = site.incidents.for_event(outside)

    # A lower threshold: the 60 V sag is no longer one.
    results = reanalyze(site, T0 - 1_000, T0 + 10_000, [SagPlugin({"threshold_v": 50.0})], NOW + 5)
    assert [(r.event_id, r.replaced, r.incident_ids) for r in results] == [(inside, 1, ())]
    assert site.incidents.for_event(inside) == tagged
    assert site.incidents.for_event(outside) == before_outside
    record = site.events.analysis(inside)
    assert record is not None and record[0] == NOW + 5
    # The plugin not run keeps its entry of the first analysis.
    assert record[1]["tagging"]["incidents"] == 1 and record[1]["sag"]["incidents"] == 0

    # And back: the sag is found again, as a new incident.
    [again] = reanalyze(site, T0, T0, [SagPlugin()], NOW + 6)
    assert again.replaced == 0 and len(again.incident_ids) == 1
    assert len(site.incidents.for_event(inside)) == 2


@pytest.mark.parametrize(
    ("captured", "sagging", "scope", "shared"),
    [
        pytest.param(("1", "2", "3"), ("1", "2", "3"), "region", ["hawaii-north", "oahu"], id="region"),
        pytest.param(("1", "2", "3"), ("1", "2"), "location", ["lab-a"], id="location"),
        pytest.param(("1", "2", "3"), ("1",), "local", [], id="local"),
        pytest.param(("1", "4"), ("1", "4"), "grid", [], id="grid"),
        pytest.param(("1",), ("1",), "unknown", [], id="one-box-event"),
    ],
)
def test_incidents_are_linked_local_or_grid_wide(
    site: Store, captured: tuple[str, ...], sagging: tuple[str, ...], scope: str, shared: list[str]
) -> None:
    waveforms = {box: sine_counts(sags=[SAG] if box in sagging else []) for box in captured}
    event_id = add_event(site, waveforms)
    analyze_event(site, event_id, [SagPlugin()], NOW)
    incidents = site.incidents.for_event(event_id)
    assert sorted(i.box_id for i in incidents) == sorted(sagging)
    ids = {i.incident_id for i in incidents}
    for incident in incidents:
        assert incident.metadata["scope"] == scope
        assert incident.metadata["boxes"] == sorted(sagging)
        assert incident.metadata["related_incidents"] == sorted(ids - {incident.incident_id})
        assert incident.metadata["captured_boxes"] == sorted(captured)
        assert incident.metadata["shared_places"] == shared


def test_a_box_whose_analysis_failed_cannot_make_an_incident_local(site: Store) -> None:
    class BrokenOnBox2(BrokenPlugin):
        name = "broken_on_2"

        def analyze(self, waveform: Waveform) -> Sequence[Finding]:
            return [] if waveform.box_id == "1" else super().analyze(waveform)

    event_id = add_event(site, {"1": sine_counts(sags=[SAG]), "2": sine_counts()})
    analyze_event(site, event_id, [SagPlugin(), BrokenOnBox2()], NOW)
    [incident] = site.incidents.for_event(event_id)
    assert (incident.metadata["scope"], incident.metadata["captured_boxes"]) == ("unknown", ["1"])


def sag_at(
    box: str, start_ms: int, end_ms: int, incident_id: int, classification: str = "VOLTAGE_SAG"
) -> Incident:
    return Incident(incident_id, box, start_ms, end_ms, "VOLTAGE", (classification,), event_id=1)


def test_linking_needs_the_same_family_and_time_within_the_clock_tolerance() -> None:
    window = {box: (T0 - 1_000.0, T0 + 3_000.0) for box in "123"}
    places = {box: Place("lab-a", frozenset({"oahu"})) for box in "123"}
    gap = SAME_TIME_TOLERANCE_MS
    incidents = [
        sag_at("1", T0, T0 + 100, 1),
        sag_at("2", T0 + 100 + gap, T0 + 200, 2, "ITIC_NO_DAMAGE"),  # voltage too, just in time
        sag_at("3", T0 + 200 + gap + 1, T0 + 300, 3),  # one ms too late for 2, and 1 is over
        sag_at("3", T0, T0 + 100, 4, "FREQUENCY_SAG"),  # another family
    ]
    linked = {i.incident_id: i.metadata for i in link_incidents(incidents, window, places)}
    assert linked[1]["related_incidents"] == [2] and linked[2]["related_incidents"] == [1]
    assert linked[1]["scope"] == linked[2]["scope"] == "location"
    assert (linked[3]["scope"], linked[3]["related_incidents"]) == ("local", [])
    assert (linked[4]["scope"], linked[4]["boxes"]) == ("local", ["3"])


def test_linking_chains_through_a_box_and_leaves_boxes_without_a_location_unknown() -> None:
    window = {box: (T0 - 1_000.0, T0 + 3_000.0) for box in "12"}
    incidents = [
        sag_at("1", T0, T0 + 1_000, 1),
        sag_at("2", T0 + 500, T0 + 600, 2),
        sag_at("1", T0 + 550, T0 + 560, 3),
    ]
    places = {"1": Place("lab-a", frozenset({"oahu"})), "2": Place(None)}
    linked = link_incidents(incidents, window, places)
    # 1 and 3 at box 1 are both seen at box 2 by incident 2: one group.
    assert [i.metadata["related_incidents"] for i in linked] == [[2, 3], [1, 3], [1, 2]]
    assert {i.metadata["scope"] for i in linked} == {"unknown"}
    assert dataclasses.replace(linked[0], metadata={}) == dataclasses.replace(incidents[0], metadata={})


def test_the_registered_plugins_find_a_synthetic_sag(site: Store) -> None:
    """Integration: the plugins the package declares, with default settings, on a 0.5 pu sag."""
    plugins = load_plugins(MaukaSettings())
    event_id = add_event(site, {"1": sine_counts(sags=[SAG]), "2": sine_counts()})
    add_measurements(site, "1", T0, T0 + 3_000)
    result = analyze_event(site, event_id, plugins, NOW)

    assert {p.name for p in plugins} <= set(result.record)
    for plugin in plugins:
        entry = result.record[plugin.name]
        assert (entry["waveforms"], entry["failures"]) == (2, 0), (plugin.name, entry["errors"])
    incidents = site.incidents.for_event(event_id)
    assert {i.box_id for i in incidents} == {"1"}
    sags = [i for i in incidents if "VOLTAGE_SAG" in i.classifications]
    assert sags, [(i.metadata["plugin"], i.classifications) for i in incidents]
    for sag in sags:
        assert abs(sag.start_timestamp_ms - (T0 + 1_000)) <= 34
        assert abs(sag.end_timestamp_ms - (T0 + 1_200)) <= 34
        assert sag.gridfs_filename is not None and site.files.exists(sag.gridfs_filename)
        assert sag.metadata["scope"] == "local"
