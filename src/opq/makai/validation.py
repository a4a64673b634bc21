"""What a measurement must be to be kept, and the reasons one is dropped."""

from __future__ import annotations

import math
from typing import Final, Literal

from opq.protocol import BoxMeasurement, MetricStats
from opq.store.models import Measurement

DropReason = Literal[
    "malformed",
    "wrong_box",
    "revoked",
    "unknown_metric",
    "not_a_number",
    "out_of_range",
    "too_old",
    "ahead_of_clock",
    "duplicate",
    "buffer_full",
    "too_fast",
    "out_of_order",
    "internal_error",
]
DROP_REASONS: Final[tuple[DropReason, ...]] = DropReason.__args__  # type: ignore[attr-defined]

METRICS: Final = frozenset({"rms", "f", "thd", "trans"})

# Physical bounds, far outside any real supply but inside what a sane box can report.
_RANGES: Final[dict[str, tuple[float, float]]] = {
    "rms": (0.0, 1_000.0),  # [V]
    "f": (1.0, 1_000.0),  # [Hz]
    "thd": (0.0, 100.0),  # [ratio]
    "trans": (0.0, 10_000.0),  # [V]
}


def check_measurement(
    m: BoxMeasurement, sender: str, now_ms: int, *, max_age_ms: int, max_ahead_ms: int
) -> DropReason | None:
    """Why `m`, received from the box `sender` (its CURVE key's box), must be dropped; None to keep it."""
    if m.box_id != sender:
        return "wrong_box"
    if not m.metrics.keys() <= METRICS or "rms" not in m.metrics:
        return "unknown_metric"
    for name, stats in m.metrics.items():
        reason = _check_stats(name, stats)
        if reason is not None:
            return reason
    if m.timestamp_ms < now_ms - max_age_ms:
        return "too_old"
    if m.timestamp_ms > now_ms + max_ahead_ms:
        return "ahead_of_clock"
    return None


def stored(m: BoxMeasurement) -> Measurement:
    """The stored form of a checked measurement: each metric's average (None if the box sent none)."""
    metrics = m.metrics
    f, thd, trans = metrics.get("f"), metrics.get("thd"), metrics.get("trans")
    return Measurement(
        m.box_id,
        m.timestamp_ms,
        metrics["rms"].average,
        None if f is None else f.average,
        None if thd is None else thd.average,
        None if trans is None else trans.average,
    )


def _check_stats(name: str, stats: MetricStats) -> DropReason | None:
    values = (stats.min, stats.max, stats.average)
    if not all(math.isfinite(value) for value in values):
        return "not_a_number"
    low, high = _RANGES[name]
    # float32 on the wire: allow its rounding between min, average and max.
    slack = 1e-6 * max(1.0, abs(stats.max))
    if not (low <= stats.min and stats.max <= high and stats.min <= stats.average + slack):
        return "out_of_range"
    if stats.average > stats.max + slack:
        return "out_of_range"
    return None
