"""PLACEHOLDER being written by a helper."""

from __future__ import annotations

from sqlalchemy import Engine


class HealthRecords:
    def __init__(self, engine: Engine, lifetime_ms: int | None = None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms


class SystemStats:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
