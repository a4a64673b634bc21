"""Scenario files: every shipped one validates, and a bad one fails naming the file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.box.scenario import (
    FrequencyStep,
    Sag,
    Scenario,
    load_scenario,
    parse_scenario,
    scenario_from_dict,
)
from opq.errors import ConfigError

SCENARIOS_DIR = Path(__file__).parents[1] / "scenarios"
SHIPPED = sorted(SCENARIOS_DIR.glob("*.toml"))
FEW = settings(max_examples=30, deadline=None)

GRID_SAG = """
[supply]
noise_v_rms = 0.3

[[disturbances]]
kind = "outage"
at_s = 1.0
duration_s = 2.0

[[disturbances]]
kind = "frequency_step"
at_s = 4.0
delta_hz = 0.1
duration_s = 1.0

[[disturbances]]
kind = "sag"
at_s = 6.0
depth_pu = 1.4
duration_s = 0.5
"""


def test_the_library_has_the_scenarios_the_docs_name() -> None:
    names = {path.name for path in SHIPPED}
    assert {
        "clean.toml",
        "sags-and-swells.toml",
        "grid-disturbances.toml",
        "island-grid.toml",
        "thd.toml",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_scenario_validates_and_says_what_it_shows(path: Path) -> None:
    scenario = load_scenario(path)
    assert isinstance(scenario, Scenario)
    assert path.read_text(encoding="utf-8").startswith(f"# {path.name}:")
    assert scenario.description


def test_an_empty_file_is_a_nominal_supply_that_runs_forever() -> None:
    scenario = parse_scenario("")
    assert scenario.supply.nominal_voltage_v == 120.0
    assert scenario.supply.nominal_frequency_hz == 60.0
    assert scenario.supply.duration_s is None
    assert scenario.disturbances == []


def test_disturbances_are_read_by_kind() -> None:
    scenario = parse_scenario(GRID_SAG.replace("depth_pu = 1.4", "depth_pu = 0.4"))
    step, sag = scenario.disturbances[1], scenario.disturbances[2]
    assert isinstance(step, FrequencyStep) and step.delta_hz == 0.1
    assert isinstance(sag, Sag) and sag.depth_pu == 0.4 and sag.ramp_ms == 0.0 and sag.start_phase_deg is None


def test_a_bad_value_names_the_file_the_key_path_and_the_value(tmp_path: Path) -> None:
    path = tmp_path / "grid-sag.toml"
    path.write_text(GRID_SAG, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value) == "scenario grid-sag.toml: disturbances[2].depth_pu = 1.4: must be in [0, 1]"


BAD = {
    "misspelt supply key": ("[supply]\nnoise_vrms = 0.3", "supply.noise_vrms: unknown key"),
    "misspelt disturbance key": (
        '[[disturbances]]\nkind = "sag"\nat_s = 1\ndepht_pu = 0.5\ndepth_pu = 0.5\nduration_s = 1',
        "disturbances[0].depht_pu: unknown key",
    ),
    "unknown kind": (
        '[[disturbances]]\nkind = "dip"\nat_s = 1',
        "disturbances[0].kind = 'dip': must be one of sag,",
    ),
    "no kind": ("[[disturbances]]\nat_s = 1", "disturbances[0].kind: is required"),
    "missing key": ('[[disturbances]]\nkind = "outage"\nat_s = 1', "disturbances[0].duration_s: is required"),
    "text for a number": (
        '[supply]\nnoise_v_rms = "0.3"',
        "supply.noise_v_rms = '0.3': Input should be a valid number",
    ),
    "not finite": (
        "[supply]\nnoise_v_rms = nan",
        "supply.noise_v_rms = nan: Input should be a finite number",
    ),
    "harmonic order": (
        "[[supply.harmonics]]\norder = 51\npercent = 1",
        "supply.harmonics[0].order = 51: must be in [2, 50]",
    ),
    "repeated harmonic": (
        "[[supply.harmonics]]\norder = 5\npercent = 1\n[[supply.harmonics]]\norder = 5\npercent = 2",
        "harmonic orders must be distinct, got [5, 5]",
    ),
    "negative duration": ("[supply]\nduration_s = -1.0", "supply.duration_s = -1.0: must be > 0"),
    "interruption too deep to be one": (
        '[[disturbances]]\nkind = "interruption"\nat_s = 1\nduration_s = 1\nretained_pu = 0.1',
        "disturbances[0].retained_pu = 0.1: must be in [0, 0.1)",
    ),
    "ramps longer than the sag": (
        '[[disturbances]]\nkind = "sag"\nat_s = 1\ndepth_pu = 0.5\nduration_s = 0.2\nramp_ms = 150',
        "disturbances[0].ramp_ms = 150.0: two ramps must fit in duration_s = 0.2",
    ),
    "decay before rise": (
        '[[disturbances]]\nkind = "impulsive_transient"\nat_s = 1\npeak_v = 100\nrise_us = 50\ndecay_us = 5',
        "disturbances[0].decay_us = 5.0: must be longer than rise_us = 50",
    ),
    "after the end": (
        '[supply]\nduration_s = 10\n[[disturbances]]\nkind = "outage"\nat_s = 12\nduration_s = 1',
        "disturbances[0].at_s = 12.0: after the end (supply.duration_s = 10)",
    ),
    "bad start phase": (
        '[[disturbances]]\nkind = "sag"\nat_s = 1\ndepth_pu = 0.5\nduration_s = 1\nstart_phase_deg = 360',
        "disturbances[0].start_phase_deg = 360: must be in [0, 360)",
    ),
    "nested harmonic key": (
        '[[disturbances]]\nkind = "harmonics"\nat_s = 1\nduration_s = 1\nharmonics = [{order = 3, pct = 2}]',
        "disturbances[0].harmonics[0].pct: unknown key",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD.values(), ids=BAD.keys())
def test_a_bad_scenario_is_a_config_error_saying_what_and_where(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"^scenario bad\.toml: ") as caught:
        parse_scenario(text, "bad.toml")
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario("[supply]\nnoise_v_rms = -1\nseed = -2", "two.toml")
    assert "supply.noise_v_rms = -1" in str(caught.value)
    assert "supply.seed = -2" in str(caught.value)


def test_text_that_is_not_toml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"scenario broken.toml: not valid TOML"):
        parse_scenario("[supply\n", "broken.toml")


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.toml"):
        load_scenario(tmp_path / "absent.toml")


@FEW
@given(
    depth_pu=st.floats(0.0, 1.0),
    duration_s=st.floats(0.01, 60.0),
    ramp_share=st.floats(0.0, 0.5),
    start_phase_deg=st.none() | st.floats(0.0, 359.99),
)
def test_any_sag_inside_the_ranges_validates(
    depth_pu: float, duration_s: float, ramp_share: float, start_phase_deg: float | None
) -> None:
    sag = {"kind": "sag", "at_s": 1.0, "depth_pu": depth_pu, "duration_s": duration_s}
    sag["ramp_ms"] = min(ramp_share * duration_s * 1000 * 0.999, 10_000.0)
    if start_phase_deg is not None:
        sag["start_phase_deg"] = start_phase_deg
    assert scenario_from_dict({"disturbances": [sag]}).disturbances[0] == Sag.model_validate(sag)


@FEW
@given(depth_pu=st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not 0.0 <= x <= 1.0))
def test_any_sag_depth_outside_zero_to_one_is_refused(depth_pu: float) -> None:
    sag = {"kind": "sag", "at_s": 1.0, "depth_pu": depth_pu, "duration_s": 1.0}
    with pytest.raises(ConfigError, match=r"disturbances\[0\]\.depth_pu = .*: must be"):
        scenario_from_dict({"disturbances": [sag]}, "hypothesis")
