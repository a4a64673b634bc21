"""The frequency, THD and transient Mauka plugins: settings, entry points and findings from waveforms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest

from opq.domain import SAMPLE_RATE_HZ
from opq.errors import ConfigError
from opq.mauka.plugin import ENTRY_POINT_GROUP, Finding, Plugin, Waveform
from opq.mauka.plugins.frequency import FrequencyVariationPlugin
from opq.mauka.plugins.thd import ThdPlugin
from opq.mauka.plugins.transient import TransientPlugin
from tests.test_frequency_variations import step_profile, waveform_at
from tests.test_thd_variations import distorted
from tests.test_transients import SAMPLE, impulse, ringing, sine

START_MS = 1_700_000_000_000.0
PLUGINS = {"frequency_variation": FrequencyVariationPlugin, "thd": ThdPlugin, "transient": TransientPlugin}


def box_waveform(samples: np.ndarray[Any, np.dtype[np.float64]]) -> Waveform:
    return Waveform(box_id="7", start_ms=START_MS, samples_v=samples, event_id=42)


def plain_json(value: object) -> bool:
    """True if `value` is made only of JSON's own Python types (no numpy scalars or arrays)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(plain_json(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def check_finding(finding: Finding, measurement_type: str) -> None:
    assert finding.box_id == "7"
    assert finding.measurement_type == measurement_type
    assert type(finding.start_ms) is int and type(finding.end_ms) is int
    assert finding.start_ms <= finding.end_ms
    assert type(finding.deviation_from_nominal) is float
    assert plain_json(dict(finding.metadata))
    json.dumps(dict(finding.metadata), allow_nan=False)


# -------------------------------------------------------------------------- interface and settings


@pytest.mark.parametrize(("name", "cls"), PLUGINS.items(), ids=PLUGINS)
def test_the_plugins_are_registered_and_satisfy_the_interface(name: str, cls: type) -> None:
    (entry,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name]
    assert entry.load() is cls
    plugin = cls()
    assert isinstance(plugin, Plugin)
    assert plugin.name == name
    assert cls(None).settings == cls({}).settings


@pytest.mark.parametrize(
    ("name", "settings", "key", "value"),
    [
        pytest.param(
            "frequency_variation", {"sag_hz": 61.0}, "sag_hz", "61.0", id="frequency-sag-above-nominal"
        ),
        pytest.param(
            "frequency_variation",
            {"min_duration_cycles": 0},
            "min_duration_cycles",
            "0",
            id="frequency-no-duration",
        ),
        pytest.param(
            "frequency_variation", {"swell_hz": "high"}, "swell_hz", "'high'", id="frequency-not-a-number"
        ),
        pytest.param(
            "frequency_variation", {"hysteresis": 0.02}, "hysteresis", "0.02", id="frequency-unknown-key"
        ),
        pytest.param("thd", {"threshold_percent": -1}, "threshold_percent", "-1", id="thd-negative"),
        pytest.param(
            "thd", {"hysteresis_percent": 6.0}, "hysteresis_percent", "6.0", id="thd-hysteresis-past-limit"
        ),
        pytest.param("thd", {"threshold_ratio": 0.05}, "threshold_ratio", "0.05", id="thd-unknown-key"),
        pytest.param("transient", {"noise_floor_v": 0}, "noise_floor_v", "0", id="transient-zero-floor"),
        pytest.param("transient", {"max_lull_ms": float("nan")}, "max_lull_ms", "nan", id="transient-nan"),
        pytest.param("transient", {"floor": 6}, "floor", "6", id="transient-unknown-key"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_plugin_key_and_value(
    name: str, settings: Mapping[str, Any], key: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        PLUGINS[name](settings)
    message = str(caught.value)
    assert f"plugin {name}" in message
    assert key in message and value in message


# --------------------------------------------------------------------------------------- findings


def test_a_frequency_sag_is_one_finding_in_time() -> None:
    start_s, duration_s = 2.013, 5.0
    plugin = FrequencyVariationPlugin()
    (finding,) = plugin.analyze(box_waveform(waveform_at(step_profile(59.8, start_s, duration_s))))
    check_finding(finding, "FREQUENCY")
    assert finding.classifications == ("FREQUENCY_SAG",)
    cycle_ms = 1000 / 60
    assert abs(finding.start_ms - (START_MS + start_s * 1000)) <= 2 * cycle_ms
    assert abs(finding.end_ms - (START_MS + (start_s + duration_s) * 1000)) <= 2 * cycle_ms
    assert finding.deviation_from_nominal == pytest.approx(-0.2, abs=0.005)
    assert finding.ieee_duration == "TEMPORARY"
    assert finding.metadata["extreme_hz"] == pytest.approx(59.8, abs=0.005)


def test_frequency_settings_change_what_is_found() -> None:
    waveform = box_waveform(waveform_at(step_profile(59.95, 2.0, 1.0, total_s=4.0)))
    assert FrequencyVariationPlugin().analyze(waveform) == []
    (finding,) = FrequencyVariationPlugin({"sag_hz": 59.97, "hysteresis_hz": 0.005}).analyze(waveform)
    assert finding.classifications == ("FREQUENCY_SAG",) and finding.ieee_duration == "MOMENTARY"


def test_excessive_thd_is_one_finding_in_percent() -> None:
    start_s, duration_s = 2.1, 8.0
    waveform = box_waveform(distorted({5: 0.045, 7: 0.03}, start_s, duration_s))
    (finding,) = ThdPlugin().analyze(waveform)
    check_finding(finding, "THD")
    assert finding.classifications == ("EXCESSIVE_THD",)
    assert abs(finding.start_ms - (START_MS + start_s * 1000)) <= 200
    assert abs(finding.end_ms - (START_MS + (start_s + duration_s) * 1000)) <= 200
    assert finding.deviation_from_nominal == pytest.approx(5.41, abs=0.1)
    assert finding.metadata["max_thd_percent"] == finding.deviation_from_nominal
    assert finding.ieee_duration == "TEMPORARY"
    assert ThdPlugin({"threshold_percent": 6.0}).analyze(waveform) == []


def test_an_impulse_is_one_transient_finding() -> None:
    disturbance = impulse(SAMPLE_RATE_HZ, SAMPLE - 0.12, -120.0, 0.1 / 2.2, 1.0)
    waveform = box_waveform(sine() + disturbance)
    (finding,) = TransientPlugin().analyze(waveform)
    check_finding(finding, "TRANSIENT")
    assert finding.classifications == ("IMPULSIVE_TRANSIENT",)
    assert finding.ieee_duration is None
    assert abs(finding.start_ms - waveform.time_ms(SAMPLE)) <= 1
    assert finding.deviation_from_nominal == pytest.approx(-120.0, rel=0.2)
    assert finding.metadata["polarity"] == "NEGATIVE"
    assert finding.metadata["ieee1159_category"] == "1.1.2"
    assert TransientPlugin({"noise_floor_v": 200.0}).analyze(waveform) == []


def test_ringing_is_one_oscillatory_finding() -> None:
    waveform = box_waveform(sine() + ringing(SAMPLE_RATE_HZ, SAMPLE, 75.0, 900.0, 2.0))
    (finding,) = TransientPlugin().analyze(waveform)
    check_finding(finding, "TRANSIENT")
    assert finding.classifications == ("OSCILLATORY_TRANSIENT",)
    assert finding.metadata["frequency_hz"] == pytest.approx(900.0, rel=0.1)
    assert finding.metadata["decay_time_constant_ms"] == pytest.approx(2.0, rel=0.3)
    assert finding.metadata["ieee1159_category"] == "1.2.1"


@pytest.mark.parametrize(("name", "cls"), PLUGINS.items(), ids=PLUGINS)
def test_a_clean_waveform_gives_no_finding(name: str, cls: type) -> None:
    assert cls().analyze(box_waveform(sine(10.0))) == []


@pytest.mark.parametrize(("name", "cls"), PLUGINS.items(), ids=PLUGINS)
def test_no_voltage_and_a_short_waveform_give_no_finding(name: str, cls: type) -> None:
    assert cls().analyze(box_waveform(np.zeros(SAMPLE_RATE_HZ))) == []
    assert cls().analyze(box_waveform(sine(0.01))) == []  # under a cycle: no features at all
