"""Triggering thresholds (the original's makai_config): defaults, per-box overrides, a version."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from opq.errors import InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import TriggerThresholds

logger = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = schema.TRIGGER_FIELDS
REFERENCE_FIELDS = ("ref_f", "ref_v")
assert tuple(f.name for f in fields(TriggerThresholds)) == FIELDS, "schema and model disagree"


def check_field_name(name: str) -> None:
    """One of the fields of TriggerThresholds."""
    if name not in FIELDS:
        raise InvalidValue(f"unknown triggering field {name!r}: use one of {', '.join(FIELDS)}")


def check_threshold(name: str, value: object) -> float:
    """A reference value [Hz or V] is positive, a percentage lies in (0, 100); both finite."""
    check_field_name(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"triggering field {name}: {value!r} is not a finite number")
    if name in REFERENCE_FIELDS:
        if value <= 0:
            raise InvalidValue(f"triggering field {name}: {value} must be greater than 0")
    elif not 0 < value < 100:
        raise InvalidValue(f"triggering field {name}: {value} percent must lie between 0 and 100")
    return float(value)


class Triggering:
    """Thresholds Makai triggers on: one set of defaults, overridden field by field per box."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def defaults(self) -> TriggerThresholds:
        """The default thresholds; the built-in ones until set_defaults is first called."""
        with translated("read the default triggering thresholds"), self._engine.connect() as conn:
            return _defaults(conn)

    def set_defaults(self, thresholds: TriggerThresholds) -> None:
        """Replace the default thresholds of every box without an override of its own."""
        values = {name: check_threshold(name, value) for name, value in asdict(thresholds).items()}
        table = schema.triggering_defaults
        with translated("set the default triggering thresholds"), write_transaction(self._engine) as conn:
            row = {"id": 1, **values, "updated_ms": _next_version(conn)}
            _upsert(conn, table, row, key="id")
        logger.info("default triggering thresholds set to %s", values)

    def set_override(self, box_id: str, **thresholds: float | None) -> None:
        """Override some thresholds of one box; the others keep their current value.

        A field given as None is inherited from the defaults again.
        """
        if not thresholds:
            raise InvalidValue(f"box {box_id!r}: name at least one triggering field to override")
        for name in thresholds:
            check_field_name(name)
        values = {
            name: None if value is None else check_threshold(name, value)
            for name, value in thresholds.items()
        }
        table = schema.triggering_overrides
        with (
            translated(f"override triggering thresholds of box {box_id!r}"),
            write_transaction(self._engine) as conn,
        ):
            _require_box(conn, box_id)
            row = {"box_id": box_id, **values, "updated_ms": _next_version(conn)}
            _upsert(conn, table, row, key="box_id")
        logger.info("triggering thresholds of box %s overridden: %s", box_id, values)

    def clear_override(self, box_id: str) -> None:
        """The box takes every threshold from the defaults again."""
        o = schema.triggering_overrides
        with (
            translated(f"clear triggering overrides of box {box_id!r}"),
            write_transaction(self._engine) as conn,
        ):
            _require_box(conn, box_id)
            # The row stays, emptied, so that its updated_ms still tells version() of the change.
            conn.execute(
                o.update()
                .where(o.c.box_id == box_id)
                .values({**dict.fromkeys(FIELDS), "updated_ms": _next_version(conn)})
            )

    def overrides(self) -> dict[str, dict[str, float]]:
        """Each box with overrides, and the fields it overrides."""
        o = schema.triggering_overrides
        with translated("read triggering overrides"), self._engine.connect() as conn:
            rows = conn.execute(select(o).order_by(o.c.box_id)).all()
        found = {row.box_id: _overridden(row._mapping) for row in rows}
        return {box_id: values for box_id, values in found.items() if values}

    def for_box(self, box_id: str) -> TriggerThresholds:
        """The thresholds in force at one box: its overrides, else the defaults, field by field."""
        o = schema.triggering_overrides
        with (
            translated(f"read triggering thresholds of box {box_id!r}"),
            self._engine.connect() as conn,
        ):
            _require_box(conn, box_id)
            defaults = _defaults(conn)
            row = conn.execute(select(o).where(o.c.box_id == box_id)).first()
        overridden = {} if row is None else _overridden(row._mapping)
        return TriggerThresholds(**{**asdict(defaults), **overridden})

    def version(self) -> int:
        """Grows with every change to defaults or overrides; 0 if none was ever made."""
        with translated("read the triggering version"), self._engine.connect() as conn:
            return _version(conn)


def _defaults(conn: Connection) -> TriggerThresholds:
    d = schema.triggering_defaults
    row = conn.execute(select(*(d.c[name] for name in FIELDS)).where(d.c.id == 1)).first()
    return TriggerThresholds() if row is None else TriggerThresholds(*row)


def _overridden(row: Any) -> dict[str, float]:
    return {name: float(row[name]) for name in FIELDS if row[name] is not None}


def _version(conn: Connection) -> int:
    newest = 0
    for table in (schema.triggering_defaults, schema.triggering_overrides):
        value = conn.execute(select(func.max(table.c.updated_ms))).scalar_one()
        newest = max(newest, int(value or 0))
    return newest


def _next_version(conn: Connection) -> int:
    # Strictly above the current version, even for two changes in one ms or a clock stepping back.
    return max(int(time.time() * 1000), _version(conn) + 1)


def _require_box(conn: Connection, box_id: str) -> None:
    b = schema.opq_boxes
    if conn.execute(select(b.c.box_id).where(b.c.box_id == box_id)).first() is None:
        raise NotFound(f"no box {box_id!r}")


def _upsert(conn: Connection, table: Table, row: dict[str, Any], key: str) -> None:
    # One statement, so two writers at once cannot both insert the row.
    changed = {name: value for name, value in row.items() if name != key}
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(row)
        conn.execute(pg.on_conflict_do_update(index_elements=[key], set_=changed))
    else:
        lite = sqlite.insert(table).values(row)
        conn.execute(lite.on_conflict_do_update(index_elements=[key], set_=changed))
