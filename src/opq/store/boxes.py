"""The opq_boxes collection: registered boxes, their keys, their location history, their unplugged flag."""

from __future__ import annotations

import math
import re

from sqlalchemy import Column, Connection, Engine, select

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import Box, LocationStint

# The OPQ Box v3 wire carries box ids as 32-bit integers, so ids are their decimal text.
_BOX_ID = re.compile(r"^(0|[1-9][0-9]{0,9})$")
_MAX_BOX_ID = 2**31 - 1
# Z85 encodes a 32-byte Curve25519 key as 40 characters of this alphabet.
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def check_public_key(public_key: str) -> None:
    """A CurveZMQ public key as Z85 text: exactly 40 characters of the Z85 alphabet."""
    if not _Z85_KEY.match(public_key):
        raise InvalidValue(f"public key {public_key!r} is not a Z85-encoded Curve25519 key (40 characters)")


class Boxes:
    """Boxes the cloud accepts data from."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, box: Box) -> None:
        """Register a box; id, name and key must be new, its location must exist."""
        if not _BOX_ID.match(box.box_id) or int(box.box_id) > _MAX_BOX_ID:
            raise InvalidValue(
                f"box id {box.box_id!r} is not valid: use a whole number from 0 to {_MAX_BOX_ID} "
                "without leading zeros (the OPQ Box protocol sends ids as integers)"
            )
        if not box.name.strip():
            raise InvalidValue(f"box {box.box_id!r} needs a name")
        if not (math.isfinite(box.calibration_constant) and box.calibration_constant > 0):
            raise InvalidValue(
                f"box {box.box_id!r}: calibration constant {box.calibration_constant} must be a "
                "positive number of ADC counts per volt"
            )
        if box.public_key is not None:
            check_public_key(box.public_key)
        b = schema.opq_boxes
        with translated(f"add box {box.box_id!r}"), write_transaction(self._engine) as conn:
            for column, value, what in (
                (b.c.box_id, box.box_id, "box id"),
                (b.c.name, box.name, "box name"),
                (b.c.public_key, box.public_key, "public key"),
            ):
                if value is not None and _taken(conn, column, value):
                    raise Conflict(f"{what} {value!r} is already registered")
            if box.location is not None:
                _check_location(conn, box.location)
            conn.execute(
                b.insert().values(
                    box_id=box.box_id,
                    name=box.name,
                    description=box.description,
                    calibration_constant=box.calibration_constant,
                    location=box.location,
                    location_start_time_ms=box.location_start_time_ms,
                    public_key=box.public_key,
                    unplugged=box.unplugged,
                )
            )
            if box.location is not None and box.location_start_time_ms is not None:
                conn.execute(
                    schema.box_location_archive.insert().values(
                        box_id=box.box_id,
                        location=box.location,
                        location_start_time_ms=box.location_start_time_ms,
                    )
                )

    def get(self, box_id: str) -> Box:
        """The box with this id, with its location history; NotFound if unknown."""
        with translated(f"read box {box_id!r}"), self._engine.connect() as conn:
            boxes = _read_boxes(conn, box_id)
        if not boxes:
            raise NotFound(f"no box {box_id!r}")
        return boxes[0]

    def list(self) -> list[Box]:
        """Every box, by id."""
        with translated("list boxes"), self._engine.connect() as conn:
            return _read_boxes(conn)

    def move(self, box_id: str, location: str, start_time_ms: int) -> None:
        """Put the box at a new location from start_time_ms on, appending to its history."""
        b = schema.opq_boxes
        with translated(f"move box {box_id!r} to {location!r}"), write_transaction(self._engine) as conn:
            current = conn.execute(select(b.c.location_start_time_ms).where(b.c.box_id == box_id)).first()
            if current is None:
                raise NotFound(f"no box {box_id!r}")
            _check_location(conn, location)
            if current[0] is not None and start_time_ms <= current[0]:
                raise InvalidValue(
                    f"box {box_id!r}: the move at {start_time_ms} ms must come after its current "
                    f"location began ({current[0]} ms)"
                )
            conn.execute(
                b.update()
                .where(b.c.box_id == box_id)
                .values(location=location, location_start_time_ms=start_time_ms)
            )
            conn.execute(
                schema.box_location_archive.insert().values(
                    box_id=box_id, location=location, location_start_time_ms=start_time_ms
                )
            )

    def location_at(self, box_id: str, timestamp_ms: int) -> str | None:
        """Where the box was at a time, from its history (None before its first location)."""
        a = schema.box_location_archive
        query = (
            select(a.c.location)
            .where(a.c.box_id == box_id, a.c.location_start_time_ms <= timestamp_ms)
            .order_by(a.c.location_start_time_ms.desc())
            .limit(1)
        )
        with translated(f"read the location of box {box_id!r}"), self._engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def set_unplugged(self, box_id: str, unplugged: bool) -> None:
        """Mark a box unplugged (or in maintenance), so its silence is no outage; or plugged in again."""
        self._update(box_id, f"mark box {box_id!r} unplugged={unplugged}", unplugged=unplugged)

    def set_public_key(self, box_id: str, public_key: str | None) -> None:
        """Give a box a new CurveZMQ key, or revoke its key with None."""
        if public_key is not None:
            check_public_key(public_key)
        self._update(box_id, f"set the key of box {box_id!r}", public_key=public_key)

    def public_keys(self) -> dict[str, str]:
        """Every registered key (Z85) and the box it belongs to: the ingest allow-list."""
        b = schema.opq_boxes
        query = select(b.c.public_key, b.c.box_id).where(b.c.public_key.is_not(None))
        with translated("read box keys"), self._engine.connect() as conn:
            return {key: box_id for key, box_id in conn.execute(query)}

    def _update(self, box_id: str, action: str, **values: object) -> None:
        b = schema.opq_boxes
        with translated(action), write_transaction(self._engine) as conn:
            if "public_key" in values and values["public_key"] is not None:
                owner = conn.execute(
                    select(b.c.box_id).where(b.c.public_key == values["public_key"])
                ).scalar_one_or_none()
                if owner not in (None, box_id):
                    raise Conflict(f"public key {values['public_key']!r} belongs to box {owner!r}")
            if conn.execute(b.update().where(b.c.box_id == box_id).values(**values)).rowcount == 0:
                raise NotFound(f"no box {box_id!r}")


def _taken(conn: Connection, column: Column[str], value: str) -> bool:
    return conn.execute(select(column).where(column == value)).first() is not None


def _check_location(conn: Connection, slug: str) -> None:
    loc = schema.locations
    if conn.execute(select(loc.c.slug).where(loc.c.slug == slug)).first() is None:
        raise NotFound(f"no location {slug!r}")


def _read_boxes(conn: Connection, box_id: str | None = None) -> list[Box]:
    b, a = schema.opq_boxes, schema.box_location_archive
    query = select(b).order_by(b.c.box_id)
    history = select(a).order_by(a.c.box_id, a.c.location_start_time_ms)
    if box_id is not None:
        query = query.where(b.c.box_id == box_id)
        history = history.where(a.c.box_id == box_id)
    stints: dict[str, list[LocationStint]] = {}
    for row in conn.execute(history):
        stints.setdefault(row.box_id, []).append(LocationStint(row.location, row.location_start_time_ms))
    return [
        Box(
            box_id=row.box_id,
            name=row.name,
            calibration_constant=row.calibration_constant,
            description=row.description,
            location=row.location,
            location_start_time_ms=row.location_start_time_ms,
            public_key=row.public_key,
            unplugged=row.unplugged,
            location_archive=tuple(stints.get(row.box_id, ())),
        )
        for row in conn.execute(query)
    ]
