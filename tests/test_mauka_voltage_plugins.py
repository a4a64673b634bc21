"""The IEEE 1159, ITIC and SEMI F47 plugins on synthetic waveforms: classes, times, settings."""

from __future__ import annotations

import json
import math
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ
from opq.errors import ConfigError
from opq.mauka.plugin import ENTRY_POINT_GROUP, Finding, Plugin, Waveform
from opq.mauka.plugins.ieee1159 import Ieee1159VoltagePlugin
from opq.mauka.plugins.itic import IticPlugin
from opq.mauka.plugins.semi_f47 import SemiF47Plugin
from opq.store.classifications import Classification, IeeeDuration

T0_MS = 1_700_000_000_000
CYCLE_MS = 1000 / 60
PLUGINS = [
    pytest.param(Ieee1159VoltagePlugin, id="ieee1159"),
    pytest.param(IticPlugin, id="itic"),
    pytest.param(SemiF47Plugin, id="semi_f47"),
]
PluginClass = type[Ieee1159VoltagePlugin] | type[IticPlugin] | type[SemiF47Plugin]


def sine_v(
    seconds: float, *, changes: tuple[tuple[int, int, float], ...] = (), noise_v: float = 0.0
) -> npt.NDArray[np.float64]:
    """A 120 V 60 Hz sine at 12 kHz [V], scaled to `pu` over samples [start, end) for each change."""
    n = round(seconds * SAMPLE_RATE_HZ)
    envelope = np.ones(n)
    for start, end, pu in changes:
        envelope[start:end] = pu
    angle = 2 * np.pi * 60 * np.arange(n) / SAMPLE_RATE_HZ + 0.3
    noise = noise_v * np.random.default_rng(7).standard_normal(n)
    return envelope * NOMINAL_VOLTAGE_V * math.sqrt(2) * np.sin(angle) + noise


def waveform(samples_v: npt.NDArray[np.float64]) -> Waveform:
    return Waveform(box_id="1001", start_ms=T0_MS, samples_v=samples_v, event_id=7)


def at_ms(sample: int) -> float:
    return T0_MS + sample * 1000 / SAMPLE_RATE_HZ


def sag(start: int, cycles: float, pu: float, seconds: float = 3.0) -> Waveform:
    return waveform(sine_v(seconds, changes=((start, start + round(cycles * 200), pu),)))


def assert_plain(finding: Finding) -> None:
    """Every metadata value is a plain JSON value, and the vocabularies are the store's."""
    json.dumps(dict(finding.metadata))
    assert all(type(value) in (int, float, str, bool, type(None)) for value in finding.metadata.values())
    assert all(c in set(Classification) for c in finding.classifications)
    assert finding.ieee_duration in set(IeeeDuration)
    assert finding.measurement_type == "VOLTAGE"
    assert finding.box_id == "1001"


@pytest.mark.parametrize("start", [18_000, 18_037, 18_100, 18_163], ids=lambda s: f"start {s % 200}/200 c")
def test_a_mid_cycle_half_pu_sag_is_found_within_a_cycle(start: int) -> None:
    """standards.md §2.1 case (d): start and end within ±1 cycle of the truth."""
    (finding,) = Ieee1159VoltagePlugin().analyze(sag(start, 10, 0.5))
    assert finding.classifications == ("VOLTAGE_SAG",)
    assert finding.ieee_duration == "INSTANTANEOUS"
    assert abs(finding.start_ms - at_ms(start)) <= CYCLE_MS
    assert abs(finding.end_ms - at_ms(start + 2000)) <= CYCLE_MS
    # A window reads below 90 % once a quarter of it is in a half-pu sag, so the start is never late.
    assert finding.start_ms <= at_ms(start)
    assert finding.deviation_from_nominal == pytest.approx(-60.0, abs=1e-6)
    assert finding.metadata["ieee1159_category"] == "2.1.1"
    assert finding.metadata["residual_pu"] == pytest.approx(0.5)
    assert finding.metadata["open_end"] is False
    assert_plain(finding)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2_400, max_value=20_000),
    st.integers(min_value=400, max_value=12_000),
    st.one_of(st.floats(min_value=0.0, max_value=0.88), st.floats(min_value=1.12, max_value=1.6)),
)
def test_any_step_variation_is_found_within_a_cycle(start: int, length: int, pu: float) -> None:
    """standards.md §2.1 case (d) for any phase, length (≥ 2 cycles) and depth of a step sag or swell."""
    changes = ((start, start + length, pu),)
    (finding,) = Ieee1159VoltagePlugin().analyze(waveform(sine_v(3.0, changes=changes)))
    within_ms = CYCLE_MS + 0.5  # and the rounding of finding times to whole ms
    assert abs(finding.start_ms - at_ms(start)) <= within_ms
    assert abs(finding.end_ms - at_ms(start + length)) <= within_ms


@pytest.mark.parametrize("plugin_class", PLUGINS)
def test_a_clean_noisy_sine_gives_no_findings(plugin_class: PluginClass) -> None:
    assert plugin_class().analyze(waveform(sine_v(3.0, noise_v=0.5))) == []


@pytest.mark.parametrize("plugin_class", PLUGINS)
def test_less_than_a_cycle_gives_no_findings(plugin_class: PluginClass) -> None:
    assert plugin_class().analyze(waveform(sine_v(0.01))) == []


def test_an_interruption_is_found_by_all_three() -> None:
    interrupted = sag(6_000, 120, 0.05)  # 2 s at 5 %
    (ieee,) = Ieee1159VoltagePlugin().analyze(interrupted)
    assert (ieee.classifications, ieee.ieee_duration) == (("VOLTAGE_INTERRUPTION",), "MOMENTARY")
    (itic,) = IticPlugin().analyze(interrupted)
    assert itic.classifications == ("ITIC_NO_DAMAGE",)
    assert itic.metadata["itic_region"] == "NO_DAMAGE"
    (semi,) = SemiF47Plugin().analyze(interrupted)
    assert semi.classifications == ("SEMI_F47_VIOLATION",)
    assert semi.metadata["ride_through_percent"] == 80.0
    for finding in (ieee, itic, semi):
        assert (finding.start_ms, finding.end_ms) == (ieee.start_ms, ieee.end_ms)
        assert abs(finding.end_ms - finding.start_ms - 2000) <= CYCLE_MS
        assert_plain(finding)


def test_a_swell_is_itic_prohibited_and_not_a_semi_f47_matter() -> None:
    swelled = sag(6_000, 40, 1.3)
    (ieee,) = Ieee1159VoltagePlugin().analyze(swelled)
    assert (ieee.classifications, ieee.ieee_duration) == (("VOLTAGE_SWELL",), "MOMENTARY")
    assert ieee.deviation_from_nominal == pytest.approx(36.0, abs=1e-6)
    (itic,) = IticPlugin().analyze(swelled)
    assert itic.classifications == ("ITIC_PROHIBITED",)
    assert itic.metadata["magnitude_percent"] == pytest.approx(130.0)
    assert SemiF47Plugin().analyze(swelled) == []


@pytest.mark.parametrize(
    ("pu", "itic", "semi"),
    [
        pytest.param(0.45, ["ITIC_NO_DAMAGE"], ["SEMI_F47_VIOLATION"], id="0.45 pu"),
        pytest.param(0.4, ["ITIC_NO_DAMAGE"], ["SEMI_F47_VIOLATION"], id="0.4 pu"),
        pytest.param(0.6, ["ITIC_NO_DAMAGE"], [], id="0.6 pu"),
        pytest.param(0.75, [], [], id="0.75 pu: no interruption"),
    ],
)
def test_ten_cycle_sags_on_the_curves(pu: float, itic: list[str], semi: list[str]) -> None:
    sagged = sag(18_100, 10, pu)
    assert [f.classifications[0] for f in IticPlugin().analyze(sagged)] == itic
    assert [f.classifications[0] for f in SemiF47Plugin().analyze(sagged)] == semi


def test_a_sag_still_going_at_the_end_is_flagged() -> None:
    ongoing = waveform(sine_v(3.0, changes=((30_000, 36_000, 0.5),)))
    (finding,) = Ieee1159VoltagePlugin().analyze(ongoing)
    assert finding.metadata["open_end"] is True
    assert finding.metadata["open_start"] is False
    assert abs(finding.start_ms - at_ms(30_000)) <= CYCLE_MS
    assert abs(finding.end_ms - at_ms(36_000)) <= CYCLE_MS


def test_settings_change_what_is_found() -> None:
    shallow = sag(18_100, 10, 0.87)
    assert len(Ieee1159VoltagePlugin().analyze(shallow)) == 1
    assert Ieee1159VoltagePlugin({"dip_pu": 0.85}).analyze(shallow) == []
    eu = waveform(sine_v(3.0, changes=((18_100, 20_100, 0.5),)) * 230 / NOMINAL_VOLTAGE_V)
    (finding,) = Ieee1159VoltagePlugin({"nominal_v": 230}).analyze(eu)
    assert finding.deviation_from_nominal == pytest.approx(-115.0, abs=1e-6)


@pytest.mark.parametrize("plugin_class", PLUGINS)
@pytest.mark.parametrize(
    ("settings", "mentions"),
    [
        pytest.param({"dip_threshold": 0.9}, ["dip_threshold", "0.9"], id="unknown key"),
        pytest.param({"dip_pu": 1.5}, ["dip_pu", "1.5"], id="out of range"),
        pytest.param({"dip_pu": "0.9"}, ["dip_pu", "'0.9'"], id="a string"),
        pytest.param({"swell_pu": True}, ["swell_pu", "True"], id="a bool"),
        pytest.param({"nominal_v": math.nan}, ["nominal_v", "nan"], id="nan"),
        pytest.param(
            {"dip_pu": 0.95, "hysteresis_pu": 0.1}, ["dip_pu=0.95", "hysteresis_pu=0.1"], id="together"
        ),
    ],
)
def test_bad_settings_name_the_plugin_key_and_value(
    plugin_class: PluginClass, settings: dict[str, Any], mentions: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        plugin_class(settings)
    message = str(raised.value)
    assert f"plugin {plugin_class.name}" in message
    for mention in mentions:
        assert mention in message


@pytest.mark.parametrize(
    ("plugin_class", "name"),
    [(Ieee1159VoltagePlugin, "ieee1159_voltage"), (IticPlugin, "itic"), (SemiF47Plugin, "semi_f47")],
)
def test_the_plugins_are_plugins_registered_under_their_names(plugin_class: PluginClass, name: str) -> None:
    plugin = plugin_class(None)
    assert isinstance(plugin, Plugin)
    assert plugin.name == name
    (entry_point,) = entry_points(group=ENTRY_POINT_GROUP, name=name)
    assert entry_point.load() is plugin_class
