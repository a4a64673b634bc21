"""IEC 61000-4-30 flagging: THD and frequency over a dip, swell or interruption are left out."""

from __future__ import annotations

import numpy as np
import pytest

from opq.mauka.features import flagged
from opq.mauka.plugin import Waveform
from opq.mauka.plugins.frequency import FrequencyVariationPlugin
from opq.mauka.plugins.thd import ThdPlugin

RATE_HZ = 12_000


def waveform(
    residual_pu: float, start_s: float = 1.07, length_s: float = 1.03, seconds: float = 3.0
) -> Waveform:
    t = np.arange(0, seconds, 1 / RATE_HZ)
    v = 120 * np.sqrt(2) * np.sin(2 * np.pi * 60 * t)
    v[(t >= start_s) & (t < start_s + length_s)] *= residual_pu
    v += np.random.default_rng(3).normal(0, 0.4, len(t))
    return Waveform("1", 0.0, v)


@pytest.mark.parametrize(
    ("residual_pu", "edge_thd"),
    [(0.02, 0.05), (0.5, 0.01), (1.3, 0.005)],
    ids=["interruption", "sag", "swell"],
)
def test_the_edges_of_a_voltage_variation_give_no_thd_or_frequency_incident(
    residual_pu: float, edge_thd: float
) -> None:
    w = waveform(residual_pu)
    # The windows holding an edge read far more THD than the clean ones (an interruption's, over
    # 5 %: what the demo showed as EXCESSIVE_THD before flagging) ...
    assert np.nanmax(w.features.window_thd_ratio) > edge_thd
    assert ThdPlugin().analyze(w) == []  # ... and flagging leaves them out
    assert FrequencyVariationPlugin().analyze(w) == []


def test_harmonics_outside_a_dip_are_still_found() -> None:
    t = np.arange(0, 3.0, 1 / RATE_HZ)
    v = 120 * np.sqrt(2) * (np.sin(2 * np.pi * 60 * t) + 0.06 * np.sin(2 * np.pi * 300 * t))
    findings = ThdPlugin().analyze(Waveform("1", 0.0, v))
    assert len(findings) == 1 and findings[0].classifications == ("EXCESSIVE_THD",)


def test_a_span_is_flagged_when_any_half_cycle_window_touching_it_is_outside() -> None:
    # Urms(1/2) value j covers samples [100j, 100j + 200); value 10 (samples 1000..1199) is low.
    urms = np.full(30, 120.0)
    urms[10] = 100.0
    starts = np.array([0, 801, 1199, 1200, 2000], dtype=np.int64)
    assert flagged(urms, starts, 200, 108.0, 132.0).tolist() == [False, True, True, False, False]
    # A NaN (no voltage information) does not flag.
    urms[10] = np.nan
    assert not flagged(urms, starts, 200, 108.0, 132.0).any()
