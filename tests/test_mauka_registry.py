"""Loading plugins from entry points: settings by name, disabled plugins, and every way it can go wrong."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from opq.config import MaukaSettings
from opq.errors import ConfigError
from opq.mauka.plugin import ENTRY_POINT_GROUP
from opq.mauka.registry import load_plugins, registered_plugins
from tests.mauka_site import SagPlugin


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


AVAILABLE = [
    point("sag", "tests.mauka_site:SagPlugin"),
    point("tagging", "tests.mauka_site:TaggingPlugin"),
    point("broken", "tests.mauka_site:BrokenPlugin"),
]


def test_plugins_are_built_by_name_with_their_own_settings() -> None:
    settings = MaukaSettings(plugins={"sag": {"threshold_v": 80.0}}, disabled_plugins=["broken"])
    plugins = load_plugins(settings, AVAILABLE)
    assert [p.name for p in plugins] == ["sag", "tagging"]
    assert isinstance(plugins[0], SagPlugin) and plugins[0].threshold_v == 80.0


@pytest.mark.parametrize(
    ("settings", "available", "message"),
    [
        pytest.param(
            MaukaSettings(plugins={"sagg": {}}), AVAILABLE, "mauka.plugins: no plugin 'sagg'", id="typo"
        ),
        pytest.param(
            MaukaSettings(disabled_plugins=["brokn"]), AVAILABLE, "disabled_plugins: no plugin", id="off"
        ),
        pytest.param(
            MaukaSettings(plugins={"sag": {"threshold_v": -1}}),
            AVAILABLE,
            "plugin sag: threshold_v",
            id="refused",
        ),
        pytest.param(
            MaukaSettings(plugins={"sag": {"threshold_v": "high"}}),
            AVAILABLE,
            "plugin 'sag' cannot be",
            id="raised",
        ),
        pytest.param(MaukaSettings(), [point("gone", "tests.no_such_module:Gone")], "'gone'", id="import"),
        pytest.param(
            MaukaSettings(), [point("swell", "tests.mauka_site:SagPlugin")], "calls itself", id="name"
        ),
        pytest.param(
            MaukaSettings(),
            [point("not_a_plugin", "tests.mauka_site:NotAPlugin")],
            "no `name` and",
            id="shape",
        ),
        pytest.param(
            MaukaSettings(),
            [*AVAILABLE, point("sag", "tests.mauka_site:TaggingPlugin")],
            "declared twice",
            id="twice",
        ),
    ],
)
def test_a_bad_plugin_or_setting_is_a_config_error_naming_it(
    settings: MaukaSettings, available: list[EntryPoint], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_plugins(settings, available)


def test_the_package_declares_its_plugins() -> None:
    assert set(registered_plugins()) >= {
        "ieee1159_voltage",
        "itic",
        "semi_f47",
        "frequency_variation",
        "thd",
        "transient",
    }
