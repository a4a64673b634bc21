"""The analysis plugin interface: what a plugin is given, what it returns, and how it is found.

A plugin is a small pure class: it gets one box's waveform (with features computed once and shared
by every plugin) and returns findings. It opens no socket or database, reads no clock and configures
no logging; the host turns findings into stored incidents (ids, location, measurements, trimmed
waveform). Plugins register under the entry-point group `opq.mauka.plugins`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ValidationError

from opq.domain import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.domain.ieee1159 import Variation, VariationThresholds, rms_variations
from opq.errors import ConfigError

ENTRY_POINT_GROUP: Final = "opq.mauka.plugins"

MeasurementType = Literal["VOLTAGE", "FREQUENCY", "THD", "TRANSIENT", "HEALTH"]

SAMPLE_PERIOD_MS: Final = 1000.0 / SAMPLE_RATE_HZ
"""Time between two samples [ms]."""


@dataclass(frozen=True, eq=False)
class Waveform:
    """One box's captured waveform [V] and where it came from.

    Sample i was taken at `start_ms + i · SAMPLE_PERIOD_MS`. Only whole 200-sample cycles are
    analysed: a trailing part cycle is left out of the features.
    """

    box_id: str
    start_ms: float
    samples_v: npt.NDArray[np.float64] = field(repr=False)
    event_id: int | None = None
    location: str | None = None

    def time_ms(self, sample_index: float) -> float:
        """When sample `sample_index` was taken [ms since epoch]."""
        return self.start_ms + sample_index * SAMPLE_PERIOD_MS

    @cached_property
    def features(self) -> Features:
        """The features every plugin shares, computed on first use."""
        return Features(self)


class Features:
    """Features of one waveform, each computed once on first use (see opq.mauka.features)."""

    def __init__(self, waveform: Waveform) -> None:
        self.waveform = waveform
        whole = waveform.samples_v.shape[-1] // SAMPLES_PER_CYCLE * SAMPLES_PER_CYCLE
        self.samples_v: npt.NDArray[np.float64] = np.asarray(waveform.samples_v[:whole], dtype=np.float64)
        self._rms_variations: dict[VariationThresholds, list[Variation]] = {}

    @cached_property
    def cycle_rms_v(self) -> npt.NDArray[np.float64]:
        """RMS of each 200-sample cycle [V]; value k covers samples [200k, 200k + 200)."""
        from opq.mauka import features

        return features.cycle_rms_v(self.samples_v)

    @cached_property
    def half_cycle_rms_v(self) -> npt.NDArray[np.float64]:
        """Urms(1/2) of IEC 61000-4-30 5.4.2 [V]: one-cycle RMS refreshed every half cycle.

        Value k covers samples [100k, 100k + 200).
        """
        from opq.mauka import features

        return features.half_cycle_rms_v(self.samples_v)

    @cached_property
    def cycle_frequency_hz(self) -> npt.NDArray[np.float64]:
        """Frequency [Hz] refreshed every cycle over two cycles: value k covers cycles [k, k + 2).

        cycles − 1 values; NaN where there is too little voltage to measure.
        """
        from opq.mauka import features

        return features.cycle_frequency_hz(self.samples_v)

    @cached_property
    def window_thd_ratio(self) -> npt.NDArray[np.float64]:
        """THD of each 12-cycle (≈200 ms) window [ratio]; a trailing part window is left out."""
        from opq.mauka import features

        return features.window_thd_ratio(self.samples_v)

    def rms_variations(self, thresholds: VariationThresholds) -> list[Variation]:
        """The IEEE 1159 RMS variations of `half_cycle_rms_v` under these thresholds, found once for
        every plugin asking with the same thresholds (IEEE 1159, ITIC and SEMI F47 all do)."""
        if thresholds not in self._rms_variations:
            self._rms_variations[thresholds] = rms_variations(self.half_cycle_rms_v, thresholds)
        return self._rms_variations[thresholds]

    def flagged(
        self, start_samples: npt.NDArray[np.int64], length_samples: int, nominal_v: float = NOMINAL_VOLTAGE_V
    ) -> npt.NDArray[np.bool_]:
        """Which spans [samples] overlap a dip, swell or interruption (Urms(1/2) outside 0.9–1.1 pu).

        IEC 61000-4-30 flags values measured over such intervals; see `features.flagged`.
        """
        from opq.mauka import features

        return features.flagged(
            self.half_cycle_rms_v, start_samples, length_samples, 0.9 * nominal_v, 1.1 * nominal_v
        )

    @cached_property
    def residual_v(self) -> npt.NDArray[np.float64]:
        """The waveform minus its fundamental (high-pass residual) [V], one value per sample."""
        from opq.mauka import features

        return features.residual_v(self.samples_v)


@dataclass(frozen=True)
class Finding:
    """A classified disturbance a plugin found at one box; the host stores it as an incident."""

    box_id: str
    start_ms: int
    end_ms: int
    measurement_type: MeasurementType
    classifications: tuple[str, ...]
    deviation_from_nominal: float | None = None
    ieee_duration: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Plugin(Protocol):
    """An analysis plugin: built once from its settings, then asked about each waveform."""

    name: str

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        """The disturbances in one box's waveform; [] if none."""
        ...


SettingsModel = TypeVar("SettingsModel", bound=BaseModel)


def plugin_settings(
    plugin_name: str, model: type[SettingsModel], settings: Mapping[str, Any] | None
) -> SettingsModel:
    """A plugin's settings checked by its model; ConfigError names the plugin, each bad key and value."""
    try:
        return model.model_validate(dict(settings or {}))
    except ValidationError as err:
        problems = []
        for item in err.errors():
            message = item["msg"].removeprefix("Value error, ")
            key = ".".join(str(part) for part in item["loc"])
            problems.append(f"{key} = {item.get('input')!r}: {message}" if key else message)
        raise ConfigError(f"plugin {plugin_name}: bad setting " + "; ".join(problems)) from err
