"""Finding the analysis plugins through their entry points and building each from its own settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from opq.config import MaukaSettings
from opq.errors import ConfigError
from opq.mauka.plugin import ENTRY_POINT_GROUP, Plugin

logger = logging.getLogger(__name__)


def registered_plugins(group: str = ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    """The plugins installed packages declare, by entry-point name."""
    return _by_name(entry_points(group=group))


def load_plugins(settings: MaukaSettings, available: Iterable[EntryPoint] | None = None) -> list[Plugin]:
    """Every registered plugin not in `disabled_plugins`, built with its settings, by name.

    `available` defaults to the entry points of `opq.mauka.plugins`. A name in `plugins` or
    `disabled_plugins` that no entry point declares (a typo would silently configure or disable
    nothing), a plugin that cannot be imported or refuses its settings, or one whose `name` differs
    from its entry-point name (incidents are found again by that name) is a ConfigError naming it.
    """
    found = registered_plugins() if available is None else _by_name(available)
    known = ", ".join(sorted(found)) or "none"
    for where, names in (
        ("mauka.plugins", settings.plugins),
        ("mauka.disabled_plugins", settings.disabled_plugins),
    ):
        for name in names:
            if name not in found:
                raise ConfigError(f"{where}: no plugin {name!r} is installed (installed: {known})")
    plugins = []
    for name, entry_point in sorted(found.items()):
        if name in settings.disabled_plugins:
            logger.info("plugin %s is disabled", name)
            continue
        plugins.append(_build(name, entry_point, settings.plugins.get(name)))
    logger.info("plugins: %s", ", ".join(p.name for p in plugins) or "none")
    return plugins


def _by_name(available: Iterable[EntryPoint]) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry_point in available:
        other = found.setdefault(entry_point.name, entry_point)
        # Two packages declaring one name: which one runs must not depend on install order.
        if other.value != entry_point.value:
            raise ConfigError(
                f"plugin {entry_point.name!r} is declared twice: by {other.value} and by {entry_point.value}"
            )
    return found


def _build(name: str, entry_point: EntryPoint, settings: dict[str, object] | None) -> Plugin:
    try:
        plugin_class = entry_point.load()
    except Exception as err:  # an import of third-party code can fail in any way
        raise ConfigError(f"plugin {name!r} ({entry_point.value}) cannot be loaded: {err!r}") from err
    try:
        plugin = plugin_class(settings)
    except ConfigError as err:
        if name in str(err):
            raise
        raise ConfigError(f"plugin {name!r}: {err}") from err
    except Exception as err:
        raise ConfigError(f"plugin {name!r} cannot be configured with {settings!r}: {err!r}") from err
    if not isinstance(plugin, Plugin):
        raise ConfigError(f"plugin {name!r} ({entry_point.value}) has no `name` and `analyze(waveform)`")
    if plugin.name != name:
        raise ConfigError(f"plugin {name!r} ({entry_point.value}) calls itself {plugin.name!r}: use one name")
    return plugin
