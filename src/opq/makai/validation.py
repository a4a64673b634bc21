"""What a measurement must be to be kept, and the reasons one is dropped: judged a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from opq.protocol import BoxMeasurement
from opq.protocol.columns import METRICS, MeasurementColumns
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

# Physical bounds per metric (in `METRICS` order), far outside any real supply but inside what a
# sane box can report: rms [V], f [Hz], thd [ratio], trans [V].
_LOW: Final = np.array([0.0, 1.0, 0.0, 0.0])
_HIGH: Final = np.array([1_000.0, 1_000.0, 100.0, 10_000.0])
_RMS: Final = METRICS.index("rms")


def check_columns(
    columns: MeasurementColumns, senders: Sequence[str], now_ms: int, *, max_age_ms: int, max_ahead_ms: int
) -> list[DropReason | None]:
    """Per row, why it must be dropped (None to keep it); `senders[i]` is the box whose key sent row i.

    Reasons are tested in this order: wrong box, unknown metric (or no `rms`), a NaN or infinite
    value, a value out of range (or min > average > max), too old, ahead of the clock.
    """
    n = len(columns)
    if n == 0:
        return []
    stats = columns.stats
    present = columns.present
    lows, highs, averages = stats[:, :, 0], stats[:, :, 1], stats[:, :, 2]
    with np.errstate(invalid="ignore"):
        not_a_number = np.any(present & ~np.isfinite(stats).all(axis=2), axis=1)
        # float32 on the wire: allow its rounding between min, average and max.
        slack = 1e-6 * np.maximum(1.0, np.abs(highs))
        inside = (lows >= _LOW) & (highs <= _HIGH) & (lows <= averages + slack) & (averages <= highs + slack)
    out_of_range = np.any(present & ~inside, axis=1)
    timestamps = columns.timestamps_ms
    checks: list[tuple[DropReason, npt.NDArray[np.bool_]]] = [
        ("wrong_box", np.array([a != b for a, b in zip(columns.box_ids, senders, strict=True)], dtype=bool)),
        ("unknown_metric", (columns.unknown_metrics > 0) | ~present[:, _RMS]),
        ("not_a_number", np.asarray(not_a_number)),
        ("out_of_range", np.asarray(out_of_range)),
        ("too_old", timestamps < now_ms - max_age_ms),
        ("ahead_of_clock", timestamps > now_ms + max_ahead_ms),
    ]
    reasons: list[DropReason | None] = [None] * n
    bad = np.zeros(n, dtype=bool)
    for reason, flagged in checks:
        for row in np.flatnonzero(flagged & ~bad).tolist():
            reasons[row] = reason
        bad |= flagged
    return reasons


def check_measurement(
    m: BoxMeasurement, sender: str, now_ms: int, *, max_age_ms: int, max_ahead_ms: int
) -> DropReason | None:
    """Why `m`, received from the box `sender` (its CURVE key's box), must be dropped; None to keep it."""
    columns = MeasurementColumns.of([m])
    return check_columns(columns, [sender], now_ms, max_age_ms=max_age_ms, max_ahead_ms=max_ahead_ms)[0]


StoredRow = tuple[str, int, float, float | None, float | None, float | None]
"""A measurement as the store takes it: box, timestamp [ms], then the averages of rms, f, thd, trans."""


def stored_rows(columns: MeasurementColumns) -> list[StoredRow]:
    """The stored form of checked measurements: each metric's average (None if the box sent none)."""
    averages: list[list[Any]] = [columns.stats[:, k, 2].tolist() for k in range(len(METRICS))]
    for k in range(1, len(METRICS)):  # rms is always there: checked
        missing = ~columns.present[:, k]
        if missing.any():
            column = averages[k]
            for row in np.flatnonzero(missing).tolist():
                column[row] = None
    return list(zip(columns.box_ids, columns.timestamps_ms.tolist(), *averages, strict=True))


def stored(m: BoxMeasurement) -> Measurement:
    """The stored form of one checked measurement."""
    return Measurement(*stored_rows(MeasurementColumns.of([m]))[0])
