"""The closed vocabularies of incidents: measurement types, classifications, IEEE 1159 durations."""

from __future__ import annotations

from enum import StrEnum


class MeasurementType(StrEnum):
    """Which quantity an incident is a deviation of (opq-original §5.6)."""

    VOLTAGE = "VOLTAGE"
    FREQUENCY = "FREQUENCY"
    THD = "THD"
    TRANSIENT = "TRANSIENT"
    HEALTH = "HEALTH"


class Classification(StrEnum):
    """What an incident is, by IEEE 1159, ITIC and SEMI F47 (the original `IncidentClassification`).

    The original's BIPOLAR_TRANSIENT and UNIPOLAR_TRANSIENT are left out: nothing produced them.
    """

    EXCESSIVE_THD = "EXCESSIVE_THD"
    ITIC_PROHIBITED = "ITIC_PROHIBITED"
    ITIC_NO_DAMAGE = "ITIC_NO_DAMAGE"
    VOLTAGE_SWELL = "VOLTAGE_SWELL"
    VOLTAGE_SAG = "VOLTAGE_SAG"
    VOLTAGE_INTERRUPTION = "VOLTAGE_INTERRUPTION"
    FREQUENCY_SWELL = "FREQUENCY_SWELL"
    FREQUENCY_SAG = "FREQUENCY_SAG"
    FREQUENCY_INTERRUPTION = "FREQUENCY_INTERRUPTION"
    SEMI_F47_VIOLATION = "SEMI_F47_VIOLATION"
    OSCILLATORY_TRANSIENT = "OSCILLATORY_TRANSIENT"
    IMPULSIVE_TRANSIENT = "IMPULSIVE_TRANSIENT"
    ARCING_TRANSIENT = "ARCING_TRANSIENT"
    PERIODIC_NOTCHING = "PERIODIC_NOTCHING"
    MULTIPLE_ZERO_CROSSING_TRANSIENT = "MULTIPLE_ZERO_CROSSING_TRANSIENT"
    OUTAGE = "OUTAGE"
    OVERVOLTAGE = "OVERVOLTAGE"
    UNDERVOLTAGE = "UNDERVOLTAGE"
    UNDEFINED = "UNDEFINED"


class IeeeDuration(StrEnum):
    """IEEE 1159 duration categories of a short-duration variation."""

    INSTANTANEOUS = "INSTANTANEOUS"
    MOMENTARY = "MOMENTARY"
    TEMPORARY = "TEMPORARY"
    SUSTAINED = "SUSTAINED"
    UNDEFINED = "UNDEFINED"
