"""Per-box triggering limits and the test of one measurement against them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opq.protocol.columns import METRICS, MeasurementColumns
from opq.protocol.messages import BoxMeasurement
from opq.store.models import TriggerThresholds


@dataclass(frozen=True)
class Limits:
    """The band a box's measurements must stay in to be nominal.

    RMS voltage [V], frequency [Hz], THD [ratio, 0.05 = 5 %] and transient [V, the largest
    high-passed excursion]: a measurement is abnormal when a min falls below a low limit or a max
    rises above a high limit.
    """

    v_low_v: float
    v_high_v: float
    f_low_hz: float
    f_high_hz: float
    thd_high_ratio: float
    transient_high_v: float


def limits_of(thresholds: TriggerThresholds) -> Limits:
    """The limits a box's thresholds (reference values and percent bands) stand for."""
    t = thresholds
    return Limits(
        v_low_v=t.ref_v * (1 - t.threshold_percent_v_low / 100),
        v_high_v=t.ref_v * (1 + t.threshold_percent_v_high / 100),
        f_low_hz=t.ref_f * (1 - t.threshold_percent_f_low / 100),
        f_high_hz=t.ref_f * (1 + t.threshold_percent_f_high / 100),
        thd_high_ratio=t.threshold_percent_thd_high / 100,
        transient_high_v=t.ref_v * t.threshold_percent_transient_high / 100,
    )


def abnormal_metrics(m: BoxMeasurement, limits: Limits) -> list[str]:
    """One short reason per metric of `m` outside `limits`, e.g. "rms min 70.2 V < 114.0 V"; [] if nominal.

    Only `min` is tested against a low limit and only `max` against a high one (as OPQ did). A metric
    the measurement does not carry is not abnormal, nor is a NaN value (every comparison with NaN is
    false): a box without `f` or `thd` during an interruption is caught by its `rms` min, which is
    near 0 V then. THD and transient have no low limit.
    """
    reasons: list[str] = []
    rms = m.metrics.get("rms")
    if rms is not None:
        _test_band(reasons, "rms", rms.min, rms.max, limits.v_low_v, limits.v_high_v, "{:.1f} V")
    f = m.metrics.get("f")
    if f is not None:
        _test_band(reasons, "f", f.min, f.max, limits.f_low_hz, limits.f_high_hz, "{:.2f} Hz")
    thd = m.metrics.get("thd")
    if thd is not None and thd.max > limits.thd_high_ratio:
        reasons.append(f"thd max {thd.max * 100:.1f} % > {limits.thd_high_ratio * 100:.1f} %")
    trans = m.metrics.get("trans")
    if trans is not None and trans.max > limits.transient_high_v:
        reasons.append(f"trans max {trans.max:.1f} V > {limits.transient_high_v:.1f} V")
    return reasons


def abnormal_rows(columns: MeasurementColumns, limits: Sequence[Limits]) -> npt.NDArray[np.bool_]:
    """Per row, whether `abnormal_metrics` finds anything in row i against `limits[i]` (same rules)."""
    if len(columns) == 0:
        return np.zeros(0, dtype=np.bool_)
    distinct = {id(each): each for each in limits}
    rows = distinct.values() if len(distinct) == 1 else limits
    bounds = np.array([_bounds(each) for each in rows])
    v_low, v_high, f_low, f_high, thd_high, transient_high = bounds.T
    stats = columns.stats
    rms, f, thd, trans = (stats[:, METRICS.index(name)] for name in ("rms", "f", "thd", "trans"))
    # A missing metric is NaN, and every comparison with NaN is false: nominal.
    with np.errstate(invalid="ignore"):
        abnormal: npt.NDArray[np.bool_] = (
            (rms[:, 0] < v_low)
            | (rms[:, 1] > v_high)
            | (f[:, 0] < f_low)
            | (f[:, 1] > f_high)
            | (thd[:, 1] > thd_high)
            | (trans[:, 1] > transient_high)
        )
    return abnormal


def _bounds(limits: Limits) -> tuple[float, ...]:
    return (
        limits.v_low_v,
        limits.v_high_v,
        limits.f_low_hz,
        limits.f_high_hz,
        limits.thd_high_ratio,
        limits.transient_high_v,
    )


def _test_band(
    reasons: list[str], name: str, low: float, high: float, low_limit: float, high_limit: float, unit: str
) -> None:
    parts = []
    if low < low_limit:
        parts.append(f"min {unit.format(low)} < {unit.format(low_limit)}")
    if high > high_limit:
        parts.append(f"max {unit.format(high)} > {unit.format(high_limit)}")
    if parts:
        reasons.append(f"{name} " + ", ".join(parts))
