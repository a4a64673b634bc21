"""Per-box triggering limits and the test of one measurement against them."""

from __future__ import annotations

from dataclasses import dataclass

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
