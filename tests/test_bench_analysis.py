"""`opq bench analysis` runs: a real Mauka, real announcements, its figures sane (no timing asserted)."""

from __future__ import annotations

from opq.bench.analysis import run_analysis_bench


def test_the_analysis_bench_times_every_event_and_finds_each_sag() -> None:
    (figures,) = run_analysis_bench([(2, 1.5)], events_per_size=2)
    assert (figures.boxes, figures.seconds, figures.events) == (2, 1.5, 2)
    # A 0.2-s sag to 0.5 pu at each box: IEEE 1159, ITIC and SEMI F47 each find it.
    assert figures.incidents_per_event == 6
    assert 0 < figures.median_ms <= figures.p99_ms <= figures.max_ms
