"""The simulated supply as data: a scenario file (TOML) of a supply and timed disturbances, validated."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from opq.errors import ConfigError


def _within(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> AfterValidator:
    """A validator with a message naming the interval: "must be in [0, 1]", "must be > 0"."""
    if math.isinf(high):
        rule = f"must be {'>' if low_open else '>='} {low:g}"
    else:
        rule = f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: float) -> float:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def _distinct_orders(harmonics: list[Harmonic]) -> list[Harmonic]:
    orders = [harmonic.order for harmonic in harmonics]
    if len(set(orders)) != len(orders):
        raise ValueError(f"harmonic orders must be distinct, got {orders}")
    return harmonics


Seconds = Annotated[float, _within(0, low_open=True)]
"""A duration [s] longer than zero."""
StartS = Annotated[float, _within(0)]
"""An offset from the scenario start [s]."""
PhaseDeg = Annotated[float, _within(0, 360, high_open=True)]
"""A point on the wave of the fundamental [degrees, 0 = rising zero crossing]."""
RampMs = Annotated[float, _within(0, 10_000)]
Seed = Annotated[int, _within(0, 2**63 - 1)]
DeltaHz = Annotated[float, _within(-3, 3)]
PeakV = Annotated[float, _within(-6000, 6000)]


class _Model(BaseModel):
    # strict: a TOML string is not a number; extra="forbid": a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Harmonic(_Model):
    """One harmonic of the supply voltage, relative to the fundamental (IEEE 1159 5.2: 0–20 %)."""

    order: Annotated[int, _within(2, 50)]
    percent: Annotated[float, _within(0, 20)]
    phase_deg: Annotated[float, _within(-360, 360)] = 0.0
    """Phase of sin(order·θ + phase) against the fundamental sin(θ) [degrees]."""


Harmonics = Annotated[list[Harmonic], AfterValidator(_distinct_orders)]


class Drift(_Model):
    """Slow sinusoidal drift of the voltage [V] around nominal (tap changes, load over the day)."""

    amplitude_v: Annotated[float, _within(0, 24)]
    period_s: Annotated[float, _within(10)]


class Wander(_Model):
    """Slow wander of the grid frequency: a sine, or a bounded pseudo-random wander from a seed.

    "random" is a sum of 8 sinusoids of random period (period_s/4 to 4·period_s) and phase whose
    amplitudes add up to amplitude_hz, so the frequency never leaves ±amplitude_hz; it looks like
    a random walk but has a closed-form phase, so any time can be computed directly.
    """

    amplitude_hz: Annotated[float, _within(0, 1)]
    period_s: Annotated[float, _within(1)]
    shape: Literal["sine", "random"] = "sine"
    seed: Seed | None = None
    """Seed of the random wander; None uses the supply's seed."""


class Supply(_Model):
    """The undisturbed supply at the outlet."""

    nominal_voltage_v: Annotated[float, _within(0, 1000, low_open=True)] = 120.0
    nominal_frequency_hz: Annotated[float, _within(45, 65)] = 60.0
    noise_v_rms: Annotated[float, _within(0, 10)] = 0.0
    """White Gaussian noise [V rms] (ADC, AMC1100 and the mains' own broadband noise)."""
    phase_deg: Annotated[float, _within(-360, 360)] = 0.0
    """Phase of the fundamental at the scenario start [degrees]."""
    drift: Drift | None = None
    wander: Wander | None = None
    harmonics: Harmonics = []
    seed: Seed = 0
    duration_s: Seconds | None = None
    """Length of the scenario [s]; None runs forever."""
    start_ms: Annotated[int, _within(0)] | None = None
    """Time of the first sample [ms since the epoch, UTC]; None takes the time the simulator starts."""


class _Timed(_Model):
    at_s: StartS
    """When the disturbance starts [s after the scenario start]."""


class _VoltageEvent(_Timed):
    duration_s: Seconds
    """From the start of the ramp in to the end of the ramp out [s] (as OPQ's sim recipes count)."""
    ramp_ms: RampMs = 0.0
    """Linear ramp into and out of the event [ms]; 0 is a step."""
    start_phase_deg: PhaseDeg | None = None
    """Start at the first instant from at_s at which the fundamental has this phase."""


class Sag(_VoltageEvent):
    """A sag (dip): IEEE 1159 2.1.1 / 2.2.2 / 2.3.2 by duration."""

    kind: Literal["sag"]
    depth_pu: Annotated[float, _within(0, 1)]
    """The retained voltage [pu] (IEEE 1159 magnitude): 0.5 leaves half the voltage."""


class Swell(_VoltageEvent):
    """A swell: IEEE 1159 2.1.2 / 2.2.3 / 2.3.3; above ≈1.27 pu the box's ADC clips."""

    kind: Literal["swell"]
    height_pu: Annotated[float, _within(1, 2)]


class Interruption(_VoltageEvent):
    """An interruption (IEEE 1159 2.2.1 / 2.3.1 / 3.1) during which the box keeps recording."""

    kind: Literal["interruption"]
    retained_pu: Annotated[float, _within(0, 0.1, high_open=True)] = 0.0


class HarmonicsEpisode(_Timed):
    """Harmonics added to the supply's for a while (a rectifier load switched on)."""

    kind: Literal["harmonics"]
    duration_s: Seconds
    harmonics: Annotated[Harmonics, Field(min_length=1)]


class FrequencyStep(_Timed):
    """The frequency steps by delta_hz for duration_s, then back."""

    kind: Literal["frequency_step"]
    delta_hz: DeltaHz
    duration_s: Seconds


class FrequencyDeviation(_Timed):
    """A smooth excursion (raised cosine) of the frequency to delta_hz and back over duration_s."""

    kind: Literal["frequency_deviation"]
    delta_hz: DeltaHz
    duration_s: Seconds


class FrequencyWander(_Timed):
    """A sinusoidal wander of the frequency (±amplitude_hz, period_s) for duration_s."""

    kind: Literal["frequency_wander"]
    amplitude_hz: Annotated[float, _within(0, 3)]
    period_s: Annotated[float, _within(0.1)]
    duration_s: Seconds


class ImpulsiveTransient(_Timed):
    """A double-exponential impulse peak_v·k·(e^(−t/decay) − e^(−t/rise)), added to the voltage."""

    kind: Literal["impulsive_transient"]
    peak_v: PeakV
    rise_us: Annotated[float, _within(0, 10_000, low_open=True)]
    """Time constant of the front [µs]."""
    decay_us: Annotated[float, _within(0, 1e6, low_open=True)]
    """Time constant of the tail [µs]; longer than rise_us."""
    start_phase_deg: PhaseDeg | None = None


class OscillatoryTransient(_Timed):
    """A damped ring peak_v·k·e^(−t/decay)·sin(2π·f·t) added to the voltage (IEEE 1159 1.2.1)."""

    kind: Literal["oscillatory_transient"]
    peak_v: PeakV
    frequency_hz: Annotated[float, _within(100, 5000)]
    decay_ms: Annotated[float, _within(0, 1000, low_open=True)]
    """Time constant of the decay [ms]."""
    start_phase_deg: PhaseDeg | None = None


class Flicker(_Timed):
    """Amplitude modulation (IEEE 1159 6.0); depth is ΔV/V peak to peak, as IEC 61000-4-15 counts it."""

    kind: Literal["flicker"]
    depth_percent: Annotated[float, _within(0, 20, low_open=True)]
    frequency_hz: Annotated[float, _within(0, 25, low_open=True)]
    duration_s: Seconds
    waveform: Literal["sine", "square"] = "sine"


class Outage(_Timed):
    """The power is off and so is the box: no cycles at all for duration_s."""

    kind: Literal["outage"]
    duration_s: Seconds


Disturbance = Annotated[
    Sag
    | Swell
    | Interruption
    | HarmonicsEpisode
    | FrequencyStep
    | FrequencyDeviation
    | FrequencyWander
    | ImpulsiveTransient
    | OscillatoryTransient
    | Flicker
    | Outage,
    Field(discriminator="kind"),
]
DISTURBANCE_KINDS: tuple[str, ...] = tuple(
    get_args(model.model_fields["kind"].annotation)[0] for model in get_args(get_args(Disturbance)[0])
)
"""The values of `kind`, in the order of the union."""


class Scenario(_Model):
    """A simulated supply: the steady supply and its disturbances, in time order or not."""

    description: str = ""
    supply: Supply = Supply()
    disturbances: list[Disturbance] = []


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; any problem raises ConfigError naming the file, key and value."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"scenario {path}: cannot read it: {err.strerror or err}") from err
    return parse_scenario(text, path.name)


def parse_scenario(text: str, name: str = "<string>") -> Scenario:
    """Validate a scenario from TOML text; `name` labels the error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"scenario {name}: not valid TOML: {err}") from err
    return scenario_from_dict(data, name)


def scenario_from_dict(data: Mapping[str, Any], name: str = "<dict>") -> Scenario:
    """Validate a scenario from a mapping shaped like the TOML file."""
    try:
        scenario = Scenario.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(f"scenario {name}: " + "; ".join(_describe(err))) from err
    problems = _inconsistencies(scenario)
    if problems:
        raise ConfigError(f"scenario {name}: " + "; ".join(problems))
    return scenario


def _describe(err: ValidationError) -> list[str]:
    problems = []
    for item in err.errors():
        loc = item["loc"]
        # A discriminated union puts the tag in the location: disturbances.2.sag.depth_pu.
        tagged = len(loc) > 2 and loc[0] == "disturbances" and loc[2] in DISTURBANCE_KINDS
        parts = [*loc[:2], *loc[3:]] if tagged else list(loc)
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")
        kind = item["type"]
        if kind == "missing":
            problems.append(f"{path}: is required")
        elif kind == "union_tag_not_found":
            problems.append(f"{path}.kind: is required, one of {', '.join(DISTURBANCE_KINDS)}")
        elif kind == "union_tag_invalid":
            tag = item.get("ctx", {}).get("tag")
            problems.append(f"{path}.kind = {tag!r}: must be one of {', '.join(DISTURBANCE_KINDS)}")
        elif kind == "extra_forbidden":
            problems.append(f"{path}: unknown key (misspelt?)")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{path} = {item.get('input')!r}: {message}")
    return problems


def _inconsistencies(scenario: Scenario) -> list[str]:
    """Rules spanning several keys, with the key path of the value to change."""
    checks: list[Callable[[int, Disturbance], str | None]] = [_ramps_fit, _decay_after_rise]
    problems = [
        problem
        for index, disturbance in enumerate(scenario.disturbances)
        for check in checks
        if (problem := check(index, disturbance))
    ]
    end_s = scenario.supply.duration_s
    if end_s is not None:
        problems += [
            f"disturbances[{i}].at_s = {d.at_s!r}: after the end (supply.duration_s = {end_s:g})"
            for i, d in enumerate(scenario.disturbances)
            if d.at_s >= end_s
        ]
    return problems


def _ramps_fit(index: int, disturbance: Disturbance) -> str | None:
    if (
        isinstance(disturbance, Sag | Swell | Interruption)
        and 2 * disturbance.ramp_ms > 1000 * disturbance.duration_s
    ):
        return (
            f"disturbances[{index}].ramp_ms = {disturbance.ramp_ms!r}: two ramps must fit in "
            f"duration_s = {disturbance.duration_s:g}"
        )
    return None


def _decay_after_rise(index: int, disturbance: Disturbance) -> str | None:
    if isinstance(disturbance, ImpulsiveTransient) and disturbance.decay_us <= disturbance.rise_us:
        return (
            f"disturbances[{index}].decay_us = {disturbance.decay_us!r}: must be longer than "
            f"rise_us = {disturbance.rise_us:g}"
        )
    return None
