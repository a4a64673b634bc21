"""The disturbances of the capture benchmark, and whether Makai's default thresholds can see each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class Injected:
    """One disturbance of the benchmark; `expected` says whether the default thresholds can see it."""

    name: str
    spec: dict[str, Any]
    expected: bool
    why: str = ""
    shared: bool = False
    """At every box of the fleet (a feeder-wide event), not only at the first one."""


DISTURBANCES: Final = (
    Injected("sag to 0.5 pu, 100 ms", {"kind": "sag", "depth_pu": 0.5, "duration_s": 0.1}, True),
    Injected("sag to 0.8 pu, 500 ms", {"kind": "sag", "depth_pu": 0.8, "duration_s": 0.5}, True),
    Injected("sag to 0.9 pu, 2 s", {"kind": "sag", "depth_pu": 0.9, "duration_s": 2.0}, True),
    Injected("sag to 0.3 pu, 3 cycles", {"kind": "sag", "depth_pu": 0.3, "duration_s": 0.05}, True),
    Injected("sag to 0.1 pu, 1 cycle", {"kind": "sag", "depth_pu": 0.1, "duration_s": 1 / 60}, True),
    Injected("swell to 1.15 pu, 500 ms", {"kind": "swell", "height_pu": 1.15, "duration_s": 0.5}, True),
    Injected("interruption, 1 s", {"kind": "interruption", "duration_s": 1.0}, True),
    Injected(
        "frequency step −0.5 Hz, 2 s", {"kind": "frequency_step", "delta_hz": -0.5, "duration_s": 2.0}, True
    ),
    Injected(
        "harmonics: 5th 6 %, 7th 4 %, 2 s",
        {
            "kind": "harmonics",
            "duration_s": 2.0,
            "harmonics": [{"order": 5, "percent": 6.0}, {"order": 7, "percent": 4.0}],
        },
        True,
    ),
    Injected(
        "impulsive transient +150 V",
        {"kind": "impulsive_transient", "peak_v": 150.0, "rise_us": 2.0, "decay_us": 150.0},
        True,
    ),
    Injected(
        "oscillatory transient 60 V, 900 Hz",
        {"kind": "oscillatory_transient", "peak_v": 60.0, "frequency_hz": 900.0, "decay_ms": 2.0},
        True,
    ),
    Injected(
        "sag to 0.6 pu, 200 ms, at every box",
        {"kind": "sag", "depth_pu": 0.6, "duration_s": 0.2},
        True,
        shared=True,
    ),
    Injected(
        "flicker 1 % p-p at 8.8 Hz, 5 s",
        {"kind": "flicker", "depth_percent": 1.0, "frequency_hz": 8.8, "duration_s": 5.0},
        False,
        "RMS moves ±0.5 %, inside the ±5 % voltage band",
    ),
    Injected(
        "frequency step −0.2 Hz, 2 s",
        {"kind": "frequency_step", "delta_hz": -0.2, "duration_s": 2.0},
        False,
        "inside the ±0.5 % (±0.3 Hz) frequency band",
    ),
    Injected(
        "sag to 0.98 pu, 1 s",
        {"kind": "sag", "depth_pu": 0.98, "duration_s": 1.0},
        False,
        "inside the ±5 % voltage band",
    ),
    Injected(
        "outage, 3 s",
        {"kind": "outage", "duration_s": 3.0},
        False,
        "the box sends nothing; triggering sees measurements only (an outage is Mauka's to find)",
    ),
)
