"""The labeled cases of `opq bench detection`: synthetic disturbances and the classes they must give."""

from __future__ import annotations

from typing import Final

from opq.bench.detection_labels import (
    CYCLE_S,
    ISLAND_SUPPLY,
    LEAD_S,
    Case,
    Disturbance,
    Expectation,
    either,
    expect,
    frequency,
    harmonics,
    impulse,
    interruption,
    one,
    outage,
    ring,
    sag,
    swell,
)

_MZC: Final = "MULTIPLE_ZERO_CROSSING_TRANSIENT"

# Class keys, spelt once.
SAG_I, SAG_M, SAG_T = "VOLTAGE_SAG/INSTANTANEOUS", "VOLTAGE_SAG/MOMENTARY", "VOLTAGE_SAG/TEMPORARY"
SWELL_I, SWELL_M, SWELL_T = (
    "VOLTAGE_SWELL/INSTANTANEOUS",
    "VOLTAGE_SWELL/MOMENTARY",
    "VOLTAGE_SWELL/TEMPORARY",
)
INT_M, INT_T, INT_S = (
    "VOLTAGE_INTERRUPTION/MOMENTARY",
    "VOLTAGE_INTERRUPTION/TEMPORARY",
    "VOLTAGE_INTERRUPTION/SUSTAINED",
)
UNDER_S, OVER_S = "UNDERVOLTAGE/SUSTAINED", "OVERVOLTAGE/SUSTAINED"
NO_DAMAGE, PROHIBITED, SEMI = "ITIC_NO_DAMAGE", "ITIC_PROHIBITED", "SEMI_F47_VIOLATION"
F_SWELL, F_SAG, F_INT = "FREQUENCY_SWELL", "FREQUENCY_SAG", "FREQUENCY_INTERRUPTION"
THD, IMPULSIVE, OSCILLATORY, OUTAGE = (
    "EXCESSIVE_THD",
    "IMPULSIVE_TRANSIENT",
    "OSCILLATORY_TRANSIENT",
    "OUTAGE",
)

_C10 = 10 * CYCLE_S
_LATER = LEAD_S + 2.0

# IEEE 1159 2.1.1-3.3 well inside each cell. The ITIC region and SEMI F47 verdict each magnitude
# and duration implies are expected too (standards.md §2.3, §2.4): 0.6 pu is below ITIC's 70 %
# (20-500 ms) and 80 % (0.5-10 s) but above F47's 50 % up to 200 ms; the ADC clips above 1.27 pu.
IEEE1159_CASES: Final = (
    one("2.1.1 sag 0.6 pu 10 c", "ieee1159", sag(0.6, _C10), SAG_I, NO_DAMAGE),
    one(
        "2.1.1 sag 0.3 pu 200 ms, 2-c ramps", "ieee1159", sag(0.3, 0.2, ramp_ms=33.3), SAG_I, NO_DAMAGE, SEMI
    ),
    one("2.1.2 swell 1.16 pu 10 c", "ieee1159", swell(1.16, _C10), SWELL_I),
    one("2.1.2 swell 1.25 pu 10 c", "ieee1159", swell(1.25, _C10), SWELL_I, PROHIBITED),
    one("2.2.1 interruption 0 pu 1.5 s", "ieee1159", interruption(1.5), INT_M, NO_DAMAGE, SEMI),
    one(
        "2.2.1 interruption 0.05 pu 1 s, 8-ms ramps",
        "ieee1159",
        interruption(1.0, retained_pu=0.05, ramp_ms=8.0),
        INT_M,
        NO_DAMAGE,
        SEMI,
    ),
    one("2.2.2 sag 0.6 pu 1.5 s", "ieee1159", sag(0.6, 1.5), SAG_M, NO_DAMAGE, SEMI),
    one("2.2.3 swell 1.2 pu 1.5 s", "ieee1159", swell(1.2, 1.5), SWELL_M, PROHIBITED),
    one("2.3.1 interruption 0 pu 6 s", "ieee1159", interruption(6.0), INT_T, NO_DAMAGE, SEMI),
    one("2.3.1 interruption 0 pu 30 s", "ieee1159", interruption(30.0), INT_T, NO_DAMAGE, SEMI),
    one("2.3.2 sag 0.6 pu 6 s", "ieee1159", sag(0.6, 6.0), SAG_T, NO_DAMAGE, SEMI),
    one("2.3.2 sag 0.5 pu 30 s", "ieee1159", sag(0.5, 30.0), SAG_T, NO_DAMAGE, SEMI),
    one("2.3.3 swell 1.15 pu 6 s", "ieee1159", swell(1.15, 6.0), SWELL_T, PROHIBITED),
    one("2.3.3 swell 1.15 pu 30 s", "ieee1159", swell(1.15, 30.0), SWELL_T, PROHIBITED),
    one("3.1 interruption 0 pu 90 s", "ieee1159", interruption(90.0), INT_S, NO_DAMAGE, SEMI),
    # Past 10 s ITIC's lower curve and the extended F47 curve are at 90 %.
    one("3.2 undervoltage 0.85 pu 90 s", "ieee1159", sag(0.85, 90.0), UNDER_S, NO_DAMAGE, SEMI),
    one("3.3 overvoltage 1.15 pu 90 s", "ieee1159", swell(1.15, 90.0), OVER_S, PROHIBITED),
)

# The test points of standards.md §2.3 (ITIC) and §2.4 (SEMI F47), with their IEEE 1159 class.
CURVE_CASES: Final = (
    one("ITIC 0.6 pu 100 ms: no damage", "itic", sag(0.6, 0.1), SAG_I, NO_DAMAGE),
    one("ITIC 0.75 pu 100 ms: no interruption", "itic", sag(0.75, 0.1), SAG_I),
    one("ITIC 1.25 pu 100 ms: prohibited", "itic", swell(1.25, 0.1), SWELL_I, PROHIBITED),
    one("ITIC 1.15 pu 0.3 s: no interruption", "itic", swell(1.15, 0.3), SWELL_I),
    one("ITIC 1.15 pu 1 s: prohibited", "itic", swell(1.15, 1.0), SWELL_M, PROHIBITED),
    one("ITIC 0.85 pu 5 s: no interruption", "itic", sag(0.85, 5.0), SAG_T),
    one("ITIC 0.75 pu 5 s: no damage", "itic", sag(0.75, 5.0), SAG_T, NO_DAMAGE, SEMI),
    one("ITIC 0.85 pu 20 s: no damage", "itic", sag(0.85, 20.0), SAG_T, NO_DAMAGE, SEMI),
    one("F47 0.55 pu 150 ms: rides through", "semi_f47", sag(0.55, 0.15), SAG_I, NO_DAMAGE),
    one("F47 0.45 pu 150 ms: violation", "semi_f47", sag(0.45, 0.15), SAG_I, NO_DAMAGE, SEMI),
    one("F47 0.75 pu 400 ms: rides through", "semi_f47", sag(0.75, 0.4), SAG_I),
    one("F47 0.65 pu 400 ms: violation", "semi_f47", sag(0.65, 0.4), SAG_I, NO_DAMAGE, SEMI),
    one("F47 0.85 pu 0.9 s: rides through", "semi_f47", sag(0.85, 0.9), SAG_M),
    one("F47 0.75 pu 0.9 s: violation", "semi_f47", sag(0.75, 0.9), SAG_M, NO_DAMAGE, SEMI),
)

# The frequency plugin's limits: 60.1 / 59.9 / 58 Hz for at least 12 cycles (Makai triggers at ±0.3 Hz).
FREQUENCY_CASES: Final = (
    one("+0.5 Hz step 2 s", "frequency", frequency("frequency_step", 0.5, 2.0), F_SWELL),
    one("-0.5 Hz step 2 s", "frequency", frequency("frequency_step", -0.5, 2.0), F_SAG),
    one("-2.5 Hz step 2 s", "frequency", frequency("frequency_step", -2.5, 2.0), F_INT),
    one("-0.6 Hz excursion over 4 s", "frequency", frequency("frequency_deviation", -0.6, 4.0), F_SAG),
    one("+0.2 Hz step 5 s", "frequency", frequency("frequency_step", 0.2, 5.0), F_SWELL),
    one("-0.2 Hz step 5 s", "frequency", frequency("frequency_step", -0.2, 5.0), F_SAG),
    one("+0.5 Hz for 6 c: shorter than 12 c", "frequency", frequency("frequency_step", 0.5, 0.1)),
    one(
        "wander ±0.05 Hz, 5 s period, 20 s",
        "frequency",
        {
            "kind": "frequency_wander",
            "at_s": LEAD_S,
            "amplitude_hz": 0.05,
            "period_s": 5.0,
            "duration_s": 20.0,
        },
    ),
)

THD_CASES: Final = (
    one("THD 7.8 % (5th 6 %, 7th 5 %) 2 s", "thd", harmonics(2.0, (5, 6.0), (7, 5.0)), THD),
    one("THD 8 % (3rd) 5 s", "thd", harmonics(5.0, (3, 8.0)), THD),
    one("THD 10 % (5th 8 %, 7th 6 %) 1 s", "thd", harmonics(1.0, (5, 8.0), (7, 6.0)), THD),
    one("THD 2.8 % 5 s: below 5 %", "thd", harmonics(5.0, (3, 2.0), (5, 2.0))),
)

TRANSIENT_CASES: Final = (
    one("impulse +100 V 5/200 µs", "transient", impulse(100.0, 5.0, 200.0), IMPULSIVE, allowed=(_MZC,)),
    one("impulse -60 V 50/1200 µs", "transient", impulse(-60.0, 50.0, 1200.0), IMPULSIVE, allowed=(_MZC,)),
    one("impulse +300 V 2/50 µs", "transient", impulse(300.0, 2.0, 50.0), IMPULSIVE, allowed=(_MZC,)),
    one("ring 60 V 1 kHz τ 2 ms", "transient", ring(60.0, 1000.0, 2.0), OSCILLATORY, allowed=(_MZC,)),
    one("ring 80 V 3 kHz τ 1 ms", "transient", ring(80.0, 3000.0, 1.0), OSCILLATORY, allowed=(_MZC,)),
    one("ring 100 V 500 Hz τ 5 ms", "transient", ring(100.0, 500.0, 5.0), OSCILLATORY, allowed=(_MZC,)),
    one("impulse +2 V: under the noise floor", "transient", impulse(2.0, 5.0, 200.0)),
)

# Mauka's host declares an outage after outage_after_s (60 s) without a measurement.
OUTAGE_CASES: Final = (
    one("outage 90 s", "outage", outage(90.0), OUTAGE),
    one("outage 5 min", "outage", outage(300.0), OUTAGE),
    one("outage 20 s: shorter than outage_after_s", "outage", outage(20.0)),
)


def _combination(name: str, *parts: tuple[Disturbance, tuple[str, ...]]) -> Case:
    return Case(
        name,
        "combination",
        tuple(d for d, _ in parts),
        tuple(
            expect(d, *classes, allowed=(_MZC,) if IMPULSIVE in classes or OSCILLATORY in classes else ())
            for d, classes in parts
        ),
    )


COMBINATION_CASES: Final = (
    _combination(
        "sag 0.6 pu 1 s inside a -0.5 Hz step of 3 s",
        (frequency("frequency_step", -0.5, 3.0), (F_SAG,)),
        (sag(0.6, 1.0, at_s=LEAD_S + 1.0), (SAG_M, NO_DAMAGE, SEMI)),
    ),
    _combination(
        "swell 1.15 pu 1 s inside THD 8 % of 3 s",
        (harmonics(3.0, (5, 6.0), (7, 5.3)), (THD,)),
        (swell(1.15, 1.0, at_s=LEAD_S + 1.0), (SWELL_M, PROHIBITED)),
    ),
    _combination(
        "impulse +100 V inside a 0.5 pu sag of 2 s",
        (sag(0.5, 2.0), (SAG_M, NO_DAMAGE, SEMI)),
        (impulse(100.0, 5.0, 200.0, at_s=LEAD_S + 1.0), (IMPULSIVE,)),
    ),
    _combination(
        "interruption 1 s, then a 80 V 1 kHz ring 100 ms after",
        (interruption(1.0), (INT_M, NO_DAMAGE, SEMI)),
        (ring(80.0, 1000.0, 2.0, at_s=LEAD_S + 1.1), (OSCILLATORY,)),
    ),
    _combination(
        "+0.4 Hz step 3 s with THD 8 %",
        (frequency("frequency_step", 0.4, 3.0), (F_SWELL,)),
        (harmonics(3.0, (3, 8.0)), (THD,)),
    ),
    _combination(
        "two sags 2 s apart: 0.6 pu 10 c, 0.5 pu 20 c",
        (sag(0.6, _C10), (SAG_I, NO_DAMAGE)),
        (sag(0.5, 20 * CYCLE_S, at_s=_LATER), (SAG_I, NO_DAMAGE, SEMI)),
    ),
)

CLEAN_CASES: Final = (
    Case("clean island grid 30 s", "clean", (), (Expectation(LEAD_S, 30.0, ()),), supply=ISLAND_SUPPLY),
)

# On or next to a boundary: which side the chain lands on depends on noise and the point on wave.
AMBIGUOUS_CASES: Final = (
    one("sag 0.9 pu 10 c", "ieee1159", sag(0.9, _C10), SAG_I, ambiguous="on the 0.9 pu dip threshold"),
    one(
        "swell 1.1 pu 10 c", "ieee1159", swell(1.1, _C10), SWELL_I, ambiguous="on the 1.1 pu swell threshold"
    ),
    one(
        "sag 0.1 pu 1.5 s",
        "ieee1159",
        sag(0.1, 1.5),
        either(SAG_M, INT_M),
        NO_DAMAGE,
        SEMI,
        ambiguous="on the 0.1 pu sag / interruption edge",
    ),
    one(
        "sag 0.6 pu 30 c",
        "ieee1159",
        sag(0.6, 30 * CYCLE_S),
        either(SAG_I, SAG_M),
        NO_DAMAGE,
        SEMI,
        ambiguous="on the 30-cycle instantaneous / momentary edge",
    ),
    one(
        "sag 0.6 pu 3 s",
        "ieee1159",
        sag(0.6, 3.0),
        either(SAG_M, SAG_T),
        NO_DAMAGE,
        SEMI,
        ambiguous="on the 3-s momentary / temporary edge",
    ),
    one(
        "undervoltage 0.85 pu 60 s",
        "ieee1159",
        sag(0.85, 60.0),
        either(SAG_T, UNDER_S),
        NO_DAMAGE,
        SEMI,
        ambiguous="on the 1-min temporary / sustained edge",
    ),
    one(
        "swell 1.4 pu 1.5 s",
        "ieee1159",
        swell(1.4, 1.5),
        SWELL_M,
        PROHIBITED,
        ambiguous="the ADC clips above 1.27 pu",
    ),
    one(
        "ITIC 0.7 pu 100 ms",
        "itic",
        sag(0.7, 0.1),
        SAG_I,
        allowed=(NO_DAMAGE,),
        ambiguous="on ITIC's 70 % lower curve",
    ),
    one(
        "ITIC 0 pu 15 ms dropout",
        "itic",
        interruption(0.015),
        either(INT_M, SAG_I),
        allowed=(NO_DAMAGE, SEMI),
        ambiguous="under one cycle: Urms(1/2) spreads it to 0.3 pu over 1-2 cycles",
    ),
    one(
        "F47 0.5 pu 150 ms",
        "semi_f47",
        sag(0.5, 0.15),
        SAG_I,
        NO_DAMAGE,
        allowed=(SEMI,),
        ambiguous="on F47's 50 % step",
    ),
    one(
        "F47 0.3 pu 10 ms",
        "semi_f47",
        sag(0.3, 0.01),
        SAG_I,
        allowed=(NO_DAMAGE, SEMI),
        ambiguous="under one cycle (F47 and ITIC exempt it; Urms(1/2) cannot resolve it)",
    ),
    one(
        "+0.5 Hz for 12 c",
        "frequency",
        frequency("frequency_step", 0.5, 0.2),
        F_SWELL,
        ambiguous="the plugin's 12-cycle minimum",
    ),
    one(
        "THD 5.3 % 2 s",
        "thd",
        harmonics(2.0, (5, 5.3)),
        THD,
        ambiguous="0.3 pp above the 5 % limit (Makai triggers on THD > 5 % too)",
    ),
    one("outage 65 s", "outage", outage(65.0), OUTAGE, ambiguous="5 s past outage_after_s (60 s)"),
)

CASES: Final[tuple[Case, ...]] = (
    *IEEE1159_CASES,
    *CURVE_CASES,
    *FREQUENCY_CASES,
    *THD_CASES,
    *TRANSIENT_CASES,
    *OUTAGE_CASES,
    *COMBINATION_CASES,
    *CLEAN_CASES,
    *AMBIGUOUS_CASES,
)
"""Every labeled case; the runner plays each with several seeds and points on wave."""
