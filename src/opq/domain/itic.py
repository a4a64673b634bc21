"""The ITIC (CBEMA) curve, 2000 revision, as data, and which of its regions a voltage variation falls in."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Final, Literal

from opq.domain.constants import NOMINAL_FREQUENCY_HZ

IticRegion = Literal["PROHIBITED", "NO_DAMAGE", "NO_INTERRUPTION"]

ITIC_SOURCE: Final = (
    "ITI (CBEMA) Curve Application Note, Information Technology Industry Council, 2000 revision "
    "(120 V, 60 Hz); vertices as seeded by openXDA and used by OPQ Mauka's itic_plugin.py "
    "(standards.md §2.3, opq-original.md §5.5.2)"
)

_CYCLE_MS: Final = 1000 / NOMINAL_FREQUENCY_HZ

Curve = tuple[tuple[float, float], ...]

ITIC_UPPER_CURVE: Final[Curve] = (
    (0.01 * _CYCLE_MS, 500.0),
    (1.0, 200.0),
    (3.0, 140.0),
    (3.0, 120.0),
    (500.0, 120.0),
    (500.0, 110.0),
    (math.inf, 110.0),
)
"""Vertices (duration [ms], magnitude [% of nominal]) of the upper curve: above it is PROHIBITED.

Nothing shorter than its first vertex (0.01 cycle) is prohibited.
"""

ITIC_LOWER_CURVE: Final[Curve] = (
    (0.0, 0.0),
    (20.0, 0.0),
    (20.0, 70.0),
    (500.0, 70.0),
    (500.0, 80.0),
    (10_000.0, 80.0),
    (10_000.0, 90.0),
    (math.inf, 90.0),
)
"""Vertices (duration [ms], magnitude [% of nominal]) of the lower curve: below it is NO_DAMAGE.

A dropout to 0 % for up to 20 ms is within the no-interruption region.
"""


def itic_region(duration_ms: float, magnitude_percent: float) -> IticRegion:
    """The ITIC region of a voltage of `magnitude_percent` [% of nominal] lasting `duration_ms` [ms].

    PROHIBITED above the upper curve, NO_DAMAGE below the lower one, NO_INTERRUPTION between them;
    a point exactly on either curve, including on a vertical step, is NO_INTERRUPTION (at a step the
    curve takes its more tolerant value, e.g. 120 % and 70 % at exactly 500 ms). The sloped part of
    the upper curve (0.01 cycle to 3 ms) is interpolated linearly in log(duration), since the ITIC
    curve is drawn on a logarithmic time axis; variations found from Urms(1/2) last at least 8.3 ms
    and never reach that part.
    """
    if not duration_ms >= 0 or not magnitude_percent >= 0:
        raise ValueError(
            f"need duration_ms >= 0 and magnitude_percent >= 0, got {duration_ms}, {magnitude_percent}"
        )
    if magnitude_percent > _curve_percent(ITIC_UPPER_CURVE, duration_ms, before=math.inf):
        return "PROHIBITED"
    if magnitude_percent < _curve_percent(ITIC_LOWER_CURVE, duration_ms, before=0.0):
        return "NO_DAMAGE"
    return "NO_INTERRUPTION"


def _curve_percent(curve: Curve, duration_ms: float, *, before: float) -> float:
    """The curve's magnitude [%] at `duration_ms`: segments are (x0, x1], so a step takes its left value."""
    for (x0, y0), (x1, y1) in pairwise(curve):
        if x0 < duration_ms <= x1:
            if y0 == y1:
                return y0
            fraction = math.log(duration_ms / x0) / math.log(x1 / x0)
            return y0 + fraction * (y1 - y0)
    return before
