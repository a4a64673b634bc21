"""Labeled recordings for `opq bench detection`: a case, the classes it must give, and its disturbances."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from opq.domain.ieee1159 import Classification
from opq.mauka.plugin import Finding

LEAD_S: Final = 3.0
"""Clean supply before the first disturbance [s]: the box's filters settle and Makai sees nominal first."""
TAIL_S: Final = 3.0
"""Clean supply after the last disturbance [s]: the return to nominal closes the capture."""
START_MS: Final = 1_700_000_000_000
"""Time of every recording's first sample [ms since epoch]."""
CYCLES_PER_MEASUREMENT: Final = 10
CYCLE_S: Final = 1 / 60
NOISE_V_RMS: Final = 0.4
ISLAND_SUPPLY: Final = {
    "noise_v_rms": NOISE_V_RMS,
    "drift": {"amplitude_v": 1.5, "period_s": 300.0},
    "wander": {"amplitude_hz": 0.1, "period_s": 20.0, "shape": "random"},
    "harmonics": [{"order": 3, "percent": 1.0}, {"order": 5, "percent": 1.0}],
}
"""A clean island-grid supply: scenarios/island-grid.toml with its frequency wander cut to ±0.1 Hz."""
_VOLTAGE_CLASSES: Final = frozenset(get_args(Classification))
_TRANSIENT_TIME_CONSTANTS: Final = 14.0  # the simulator cuts a transient off after this many

Disturbance = Mapping[str, Any]
"""One disturbance as a scenario file writes it (`opq.box.scenario`)."""


@dataclass(frozen=True)
class Expectation:
    """What one disturbance must give: `classes` over [start_s, end_s] [s from the recording's start].

    Class keys are the findings' classifications, with the IEEE 1159 duration appended to the RMS
    variation classes ("VOLTAGE_SAG/MOMENTARY"). `allowed` classes may appear there without
    counting as false (a transient's extra zero crossings depend on where on the wave it lands).
    """

    start_s: float
    end_s: float
    classes: tuple[str, ...]
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One labeled recording: its disturbances, what they must give, and why it is ambiguous (if so)."""

    name: str
    group: str
    disturbances: tuple[Disturbance, ...]
    expected: tuple[Expectation, ...]
    ambiguous: str | None = None
    """Which boundary the case sits on; ambiguous cases are reported apart from the target."""
    supply: Mapping[str, Any] = field(default_factory=dict)
    """Added to the supply (drift, wander, harmonics); noise, seed and phase come from the runner."""

    @property
    def duration_s(self) -> float:
        """Length of the recording [s]: the last disturbance's end plus TAIL_S, in whole seconds."""
        ends = [e.end_s for e in self.expected] + [_end_s(d) for d in self.disturbances]
        return float(math.ceil(max(ends, default=LEAD_S) + TAIL_S))


def _end_s(d: Disturbance) -> float:
    if d["kind"] == "impulsive_transient":
        return float(d["at_s"] + _TRANSIENT_TIME_CONSTANTS * d["decay_us"] / 1e6)
    if d["kind"] == "oscillatory_transient":
        return float(d["at_s"] + _TRANSIENT_TIME_CONSTANTS * d["decay_ms"] / 1e3)
    return float(d["at_s"] + d["duration_s"])


def expect(d: Disturbance, *classes: str, allowed: tuple[str, ...] = ()) -> Expectation:
    """The classes `d` must give over its own time span."""
    return Expectation(float(d["at_s"]), _end_s(d), classes, allowed)


def sag(pu: float, seconds: float, *, at_s: float = LEAD_S, ramp_ms: float = 0.0) -> Disturbance:
    """A sag to `pu` [pu of nominal] for `seconds`, ramps included (`opq.box.scenario.Sag`)."""
    return {"kind": "sag", "at_s": at_s, "depth_pu": pu, "duration_s": seconds, "ramp_ms": ramp_ms}


def swell(pu: float, seconds: float, *, at_s: float = LEAD_S, ramp_ms: float = 0.0) -> Disturbance:
    """A swell to `pu` [pu of nominal] for `seconds`, ramps included."""
    return {"kind": "swell", "at_s": at_s, "height_pu": pu, "duration_s": seconds, "ramp_ms": ramp_ms}


def interruption(
    seconds: float, *, retained_pu: float = 0.0, at_s: float = LEAD_S, ramp_ms: float = 0.0
) -> Disturbance:
    """An interruption to `retained_pu` for `seconds`, during which the box keeps recording."""
    return {
        "kind": "interruption",
        "at_s": at_s,
        "retained_pu": retained_pu,
        "duration_s": seconds,
        "ramp_ms": ramp_ms,
    }


def frequency(kind: str, delta_hz: float, seconds: float, *, at_s: float = LEAD_S) -> Disturbance:
    """A frequency_step, frequency_deviation or frequency_wander of `delta_hz` [Hz] for `seconds`."""
    return {"kind": kind, "at_s": at_s, "delta_hz": delta_hz, "duration_s": seconds}


def harmonics(seconds: float, *orders: tuple[int, float], at_s: float = LEAD_S) -> Disturbance:
    """Harmonics (order, percent of the fundamental) added for `seconds`."""
    listed = [{"order": order, "percent": percent} for order, percent in orders]
    return {"kind": "harmonics", "at_s": at_s, "duration_s": seconds, "harmonics": listed}


def impulse(peak_v: float, rise_us: float, decay_us: float, *, at_s: float = LEAD_S) -> Disturbance:
    """A double-exponential impulse of `peak_v` [V], time constants [µs]."""
    return {
        "kind": "impulsive_transient",
        "at_s": at_s,
        "peak_v": peak_v,
        "rise_us": rise_us,
        "decay_us": decay_us,
    }


def ring(peak_v: float, frequency_hz: float, decay_ms: float, *, at_s: float = LEAD_S) -> Disturbance:
    """A damped ring of `peak_v` [V] at `frequency_hz`, decaying with time constant `decay_ms`."""
    return {
        "kind": "oscillatory_transient",
        "at_s": at_s,
        "peak_v": peak_v,
        "frequency_hz": frequency_hz,
        "decay_ms": decay_ms,
    }


def outage(seconds: float, *, at_s: float = LEAD_S) -> Disturbance:
    """The box loses power (and sends nothing) for `seconds`."""
    return {"kind": "outage", "at_s": at_s, "duration_s": seconds}


def either(*keys: str) -> str:
    """A class key satisfied by any of `keys`: the two sides of a boundary."""
    return "|".join(keys)


def one(
    name: str,
    group: str,
    d: Disturbance,
    *classes: str,
    allowed: tuple[str, ...] = (),
    ambiguous: str | None = None,
) -> Case:
    """A case of one disturbance (no classes: it must give nothing)."""
    return Case(name, group, (d,), (expect(d, *classes, allowed=allowed),), ambiguous)


def class_keys(finding: Finding) -> tuple[str, ...]:
    """A finding's classifications, the IEEE 1159 RMS-variation classes with their duration appended."""
    return tuple(
        f"{c}/{finding.ieee_duration}" if c in _VOLTAGE_CLASSES else c for c in finding.classifications
    )


def seconds_of(timestamp_ms: int) -> float:
    """A time [ms since epoch] as seconds from the start of a recording."""
    return round((timestamp_ms - START_MS) / 1000, 4)
