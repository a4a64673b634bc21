"""On-box measurements: cadence, the four metrics, rate changes, interruptions and gaps."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.box.measuring import MeasurementBuilder
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.source import SourceCycle
from opq.protocol import BoxMeasurement

T0 = 1_700_000_000_000
CALIBRATION = 152.5
PEAK_V = 120 * math.sqrt(2)

Shape = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


def sine(frequency_hz: float = 60.0, third_percent: float = 0.0) -> Shape:
    def volts(t_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        phase = 2 * np.pi * frequency_hz * t_s
        return PEAK_V * (np.sin(phase) + third_percent / 100 * np.sin(3 * phase))

    return volts


def cycles(
    n: int, shape: Shape | None = None, *, first: int = 0, start_ms: int = T0
) -> Iterator[SourceCycle]:
    """Cycles `first` .. `first + n - 1` of a waveform [V] sampled at 12 kS/s, as ADC counts."""
    shape = shape or sine()
    for i in range(first, first + n):
        t_s = (np.arange(200) + 200 * i) / 12_000
        counts = np.rint(shape(t_s) * CALIBRATION).astype(np.int16)
        yield SourceCycle(start_ms + round(i * CYCLE_DURATION_MS), counts)


def run(builder: MeasurementBuilder, stream: Iterator[SourceCycle]) -> list[BoxMeasurement]:
    return [m for m in map(builder.add, stream) if m is not None]


def test_a_clean_supply_gives_six_measurements_a_second() -> None:
    builder = MeasurementBuilder("7", CALIBRATION)
    out = run(builder, cycles(61))
    assert len(out) == 6  # the 61st cycle is the context the 6th waited for
    # Each stamped with the end of its 10 cycles (cycle 10·k + 9 starts at its time, lasts 16.67 ms).
    assert [m.timestamp_ms for m in out] == [T0 + round((10 * k + 10) * CYCLE_DURATION_MS) for k in range(6)]
    for m in out:
        assert m.box_id == "7"
        assert set(m.metrics) == {"rms", "f", "thd", "trans"}
        assert m.metrics["rms"].average == pytest.approx(120, abs=0.01)
        assert m.metrics["f"].average == pytest.approx(60, abs=1e-3)
        assert m.metrics["thd"].max < 1e-3
        assert m.metrics["trans"].max < 0.1  # quantization only; the first cycle has no context before it


def test_the_metrics_follow_the_waveform() -> None:
    out = run(MeasurementBuilder("1", CALIBRATION), cycles(121, sine(59.9, third_percent=5)))
    for m in out[1:]:
        assert m.metrics["f"].average == pytest.approx(59.9, abs=2e-3)
        assert m.metrics["thd"].average == pytest.approx(0.05, abs=5e-4)
        assert m.metrics["rms"].average == pytest.approx(120 * math.hypot(1, 0.05), rel=2e-3)


def test_a_transient_shows_in_its_measurement_only() -> None:
    def spiky(t_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        v = sine()(t_s)
        return v + np.where(np.abs(t_s - 0.225) < 0.0002, 100.0, 0.0)  # cycle 13 of measurement 1

    out = run(MeasurementBuilder("1", CALIBRATION), cycles(31, spiky))
    assert out[1].metrics["trans"].max > 30
    assert out[0].metrics["trans"].max < 1
    assert out[2].metrics["trans"].max < 1


def test_an_interruption_leaves_out_frequency_and_thd() -> None:
    def interrupted(t_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(t_s < 1 / 3, sine()(t_s), 0.0)  # off from cycle 20

    out = run(MeasurementBuilder("1", CALIBRATION), cycles(61, interrupted))
    assert set(out[0].metrics) == {"rms", "f", "thd", "trans"}
    dark = out[4]
    assert set(dark.metrics) == {"rms", "trans"}
    assert dark.metrics["rms"].max == 0
    assert all(not math.isnan(s.average) for m in out for s in m.metrics.values())


def test_a_rate_change_sets_the_cadence() -> None:
    builder = MeasurementBuilder("1", CALIBRATION)
    first = run(builder, cycles(21))
    assert builder.set_rate(60) == 10
    assert builder.cycles_per_measurement == 60
    later = run(builder, cycles(180, first=21))
    times = [m.timestamp_ms for m in first + later]
    assert np.diff(times).tolist() == [166, 1000, 1000, 1000]  # 10 cycles, then 60-cycle measurements


def test_a_lower_rate_ends_the_measurement_in_progress() -> None:
    builder = MeasurementBuilder("1", CALIBRATION, 60)
    assert run(builder, cycles(30)) == []
    builder.set_rate(10)
    out = run(builder, cycles(1, first=30))
    assert len(out) == 1
    assert out[0].timestamp_ms == T0 + 500  # all 30 cycles


@pytest.mark.parametrize("bad", [0, -1, 3601, 2.5, True, "10"], ids=repr)
def test_a_rate_out_of_bounds_is_refused(bad: object) -> None:
    builder = MeasurementBuilder("1", CALIBRATION)
    with pytest.raises(ValueError, match="measurement rate"):
        builder.set_rate(bad)  # type: ignore[arg-type]
    assert builder.cycles_per_measurement == 10


def test_one_cycle_measurements_still_carry_frequency_and_thd() -> None:
    out = run(MeasurementBuilder("1", CALIBRATION, 1), cycles(40))
    assert len(out) == 39
    assert all({"f", "thd"} <= set(m.metrics) for m in out[12:])


def test_a_gap_ends_the_measurement_early_and_no_window_spans_it() -> None:
    builder = MeasurementBuilder("1", CALIBRATION)
    before = run(builder, cycles(15))
    after = run(builder, cycles(12, first=600))  # 10 s of silence
    assert [m.timestamp_ms for m in before] == [T0 + 167]
    assert after[0].timestamp_ms == T0 + 250  # cycles 10..14, flushed when the gap showed
    assert after[1].timestamp_ms == T0 + round(610 * CYCLE_DURATION_MS)
    assert after[1].metrics["f"].average == pytest.approx(60, abs=1e-3)


def test_flush_sends_what_is_left_at_the_end() -> None:
    builder = MeasurementBuilder("1", CALIBRATION)
    run(builder, cycles(25))
    last = builder.flush()
    assert last is not None
    assert last.timestamp_ms == T0 + round(25 * CYCLE_DURATION_MS)
    assert builder.flush() is None


@settings(max_examples=25, deadline=None)
@given(rate=st.integers(1, 70), n=st.integers(0, 150))
def test_every_cycle_is_in_exactly_one_measurement(rate: int, n: int) -> None:
    builder = MeasurementBuilder("1", CALIBRATION, rate)
    out = run(builder, cycles(n))
    last = builder.flush()
    out += [last] if last is not None else []
    assert len(out) == -(-n // rate)
    ends = [T0 + round(min(n, rate * (k + 1)) * CYCLE_DURATION_MS) for k in range(len(out))]
    assert [m.timestamp_ms for m in out] == ends
    assert all("rms" in m.metrics for m in out)


@pytest.mark.parametrize("frequency_hz", [57.0, 58.7, 61.4, 63.0], ids=lambda f: f"{f}Hz")
def test_the_rms_is_over_whole_periods_off_60_hz(frequency_hz: float) -> None:
    # A 200-sample block off 60 Hz reads up to 2.6 % off; a period of the measured frequency does not.
    out = run(MeasurementBuilder("1", CALIBRATION, 12), cycles(61, sine(frequency_hz, third_percent=4)))
    truth_v = 120 * math.hypot(1, 0.04)
    for m in out:
        rms = m.metrics["rms"]
        assert abs(rms.min - truth_v) <= 0.001 * 120 and abs(rms.max - truth_v) <= 0.001 * 120
        assert m.metrics["f"].average == pytest.approx(frequency_hz, abs=2e-3)


def test_an_interruption_falls_back_to_the_box_cycle_rms() -> None:
    def interrupted(t_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(t_s < 1 / 3, sine(58.0)(t_s), 1.0)  # 1 V of DC from cycle 20: no frequency

    out = run(MeasurementBuilder("1", CALIBRATION), cycles(61, interrupted))
    assert out[0].metrics["rms"].average == pytest.approx(120, rel=1e-3)
    dark = out[4]
    assert "f" not in dark.metrics
    assert dark.metrics["rms"].min == dark.metrics["rms"].max == pytest.approx(1.0, abs=0.01)


def _same(a: list[BoxMeasurement], b: list[BoxMeasurement]) -> None:
    assert [m.timestamp_ms for m in a] == [m.timestamp_ms for m in b]
    for x, y in zip(a, b, strict=True):
        assert set(x.metrics) == set(y.metrics)
        for name, stats in x.metrics.items():
            other = y.metrics[name]
            # A block's span reaches further, so a crossing or two at its edges may join a fit.
            for value, expected in (
                (stats.min, other.min),
                (stats.max, other.max),
                (stats.average, other.average),
            ):
                assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    rate=st.integers(1, 70),
    n=st.integers(0, 200),
    block=st.integers(1, 90),
    gap_at=st.integers(0, 200),
)
def test_blocks_of_cycles_give_the_measurements_of_cycle_by_cycle(
    rate: int, n: int, block: int, gap_at: int
) -> None:
    shape = sine(59.3, third_percent=3)
    stream = list(cycles(min(gap_at, n), shape)) + list(cycles(n - min(gap_at, n), shape, first=gap_at + 100))
    one_by_one = MeasurementBuilder("1", CALIBRATION, rate)
    expected = run(one_by_one, iter(stream))
    last = one_by_one.flush()
    expected += [last] if last is not None else []

    blocks = MeasurementBuilder("1", CALIBRATION, rate)
    got: list[BoxMeasurement] = []
    for first in range(0, len(stream), block):
        chunk = stream[first : first + block]
        got += blocks.add_cycles([c.timestamp_ms for c in chunk], np.stack([c.counts for c in chunk]))
    last = blocks.flush()
    got += [last] if last is not None else []
    _same(got, expected)


def test_add_cycles_refuses_mismatched_timestamps() -> None:
    with pytest.raises(ValueError, match="3 timestamps for 2 cycles"):
        MeasurementBuilder("1", CALIBRATION).add_cycles([T0, T0 + 17, T0 + 33], np.zeros((2, 200), np.int16))
