"""Events and box events: Makai's waveform captures, each box's part in one, and their deletion."""

from __future__ import annotations

import builtins
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    func,
    literal,
    or_,
    select,
)

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.files import Files, WholeFile, check_whole_file
from opq.store.models import BoxEvent, Event


@dataclass(frozen=True)
class BoxAnswer:
    """One box's data for an event: its `box_events` row, its waveform file and when it arrived.

    `received_ms` [ms since epoch] goes to the event's `latencies_ms`; the file's name must be the
    row's `data_fs_filename`.
    """

    box_event: BoxEvent
    waveform: WholeFile
    received_ms: int


class Events:
    """The events and box_events collections, kept for `lifetime_ms` after an event's end."""

    def __init__(self, engine: Engine, lifetime_ms: int | None = None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms

    def add(self, event: Event) -> None:
        """Store a new event; its id comes from `allocate_ids(engine, "event")`."""
        eid = event.event_id
        where = f"event {eid}"
        _check_window(where, event.target_event_start_timestamp_ms, event.target_event_end_timestamp_ms)
        triggered = _box_ids(event.boxes_triggered, f"{where}: boxes_triggered")
        received = _box_ids(event.boxes_received, f"{where}: boxes_received")
        latencies = _ints(event.latencies_ms, f"{where}: latencies_ms")
        strays = [box for box in received if box not in triggered]
        if strays:
            raise InvalidValue(f"{where}: boxes {strays} were received but never triggered")
        if len(latencies) != len(received):
            raise InvalidValue(
                f"{where}: {len(latencies)} latencies_ms for {len(received)} boxes_received; "
                "they must pair up one to one"
            )
        end = event.target_event_end_timestamp_ms
        ev = schema.events
        with translated(f"add {where}"), write_transaction(self._engine) as conn:
            if _event_exists(conn, eid):
                raise Conflict(f"{where} already exists")
            conn.execute(
                ev.insert().values(
                    event_id=eid,
                    description=event.description,
                    boxes_triggered=triggered,
                    boxes_received=received,
                    latencies_ms=latencies,
                    target_event_start_timestamp_ms=event.target_event_start_timestamp_ms,
                    target_event_end_timestamp_ms=end,
                    expire_at=None if self._lifetime_ms is None else end + self._lifetime_ms,
                    completed_ms=event.completed_ms,
                    continues_event_id=event.continues_event_id,
                )
            )

    def record_box_event(self, box_event: BoxEvent, latency_ms: int) -> None:
        """Store one box's part of an event and append the box, with its latency, to the event."""
        eid, box = box_event.event_id, box_event.box_id
        where = f"event {eid}, box {box!r}"
        values = _box_event_row(box_event)
        latency = _ints([latency_ms], f"{where}: latency_ms")[0]
        ev = schema.events
        with translated(f"record box {box!r} of event {eid}"), write_transaction(self._engine) as conn:
            triggered, received, latencies = _boxes_for_update(conn, eid)
            if box not in triggered:
                raise InvalidValue(f"{where}: the box is not among boxes_triggered {triggered}")
            if box in received:
                raise Conflict(f"{where}: the box's data was already recorded")
            conn.execute(schema.box_events.insert().values(**values))
            conn.execute(
                ev.update()
                .where(ev.c.event_id == eid)
                .values(boxes_received=[*received, box], latencies_ms=[*latencies, latency])
            )

    def record_box_answers(
        self,
        event_id: int,
        answers: Sequence[BoxAnswer],
        files: Files,
        *,
        completed_ms: int | None = None,
    ) -> None:
        """Store several boxes' parts of an event with their waveforms (through `files`) in one
        transaction, appending the boxes and arrival times to the event; with `completed_ms`, mark
        the event complete in that transaction too. All of it or, on any error, none of it.

        Every value is checked before anything is written (InvalidValue); a box already recorded or
        a file name taken is a Conflict, a missing event NotFound.
        """
        rows, arrivals = [], []
        boxes = [answer.box_event.box_id for answer in answers]
        if len(set(boxes)) != len(boxes):
            raise InvalidValue(f"event {event_id}: boxes {boxes} answer more than once")
        for answer in answers:
            rows.append(_box_event_row(answer.box_event))
            where = f"event {event_id}, box {answer.box_event.box_id!r}"
            if answer.box_event.event_id != event_id:
                raise InvalidValue(f"{where}: the box event is of event {answer.box_event.event_id}")
            if answer.waveform.filename != answer.box_event.data_fs_filename:
                raise InvalidValue(
                    f"{where}: waveform {answer.waveform.filename!r} is not the box event's "
                    f"data_fs_filename {answer.box_event.data_fs_filename!r}"
                )
            check_whole_file(answer.waveform)
            arrivals.append(_ints([answer.received_ms], f"{where}: received_ms")[0])
        completed = (
            None if completed_ms is None else _ints([completed_ms], f"event {event_id}: completed_ms")[0]
        )
        ev = schema.events
        action = f"record {len(answers)} boxes of event {event_id}"
        with translated(action), write_transaction(self._engine) as conn:
            triggered, received, latencies = _boxes_for_update(conn, event_id)
            strays = [box for box in boxes if box not in triggered]
            if strays:
                raise InvalidValue(
                    f"event {event_id}: boxes {strays} are not among boxes_triggered {triggered}"
                )
            again = [box for box in boxes if box in received]
            if again:
                raise Conflict(f"event {event_id}: the data of boxes {again} was already recorded")
            if rows:
                conn.execute(schema.box_events.insert(), rows)
                files.write_whole(conn, [answer.waveform for answer in answers])
            values: dict[str, Any] = {
                "boxes_received": [*received, *boxes],
                "latencies_ms": [*latencies, *arrivals],
            }
            if completed is not None:
                values["completed_ms"] = completed
            conn.execute(ev.update().where(ev.c.event_id == event_id).values(**values))

    def complete(self, event_id: int, completed_ms: int) -> None:
        """Mark an event's acquisition finished: no more box data will be added to it."""
        ev = schema.events
        with translated(f"complete event {event_id}"), write_transaction(self._engine) as conn:
            done = conn.execute(
                ev.update().where(ev.c.event_id == event_id).values(completed_ms=completed_ms)
            ).rowcount
        if not done:
            raise NotFound(f"no event {event_id}")

    def keep_until(self, event_id: int, expire_at: int | None) -> None:
        """Make an event (with its box events and waveforms) live at least until expire_at [ms].

        None keeps it for ever. A lifetime is only ever lengthened: what one incident needs is not
        taken from what another needs.
        """
        ev = schema.events
        update = ev.update().where(ev.c.event_id == event_id)
        if expire_at is not None:
            update = update.where(ev.c.expire_at < expire_at)
        with translated(f"extend the lifetime of event {event_id}"), write_transaction(self._engine) as conn:
            if not _event_exists(conn, event_id):
                raise NotFound(f"no event {event_id}")
            conn.execute(update.values(expire_at=expire_at))

    def record_analysis(self, event_id: int, analyzed_ms: int, plugins: dict[str, Any]) -> None:
        """Record that analysis finished with an event, and how each plugin fared (replacing any before)."""
        a = schema.event_analyses
        with translated(f"record the analysis of event {event_id}"), write_transaction(self._engine) as conn:
            if not _event_exists(conn, event_id):
                raise NotFound(f"no event {event_id}")
            conn.execute(a.delete().where(a.c.event_id == event_id))
            conn.execute(a.insert().values(event_id=event_id, analyzed_ms=analyzed_ms, plugins=plugins))

    def analysis(self, event_id: int) -> tuple[int, dict[str, Any]] | None:
        """When an event was analysed and how each plugin fared; None if it was not (yet)."""
        a = schema.event_analyses
        with translated(f"read the analysis of event {event_id}"), self._engine.connect() as conn:
            row = conn.execute(select(a.c.analyzed_ms, a.c.plugins).where(a.c.event_id == event_id)).first()
        return None if row is None else (int(row.analyzed_ms), dict(row.plugins))

    def unanalyzed(self, limit: int = 1000) -> builtins.list[int]:
        """Ids of completed events that analysis has not finished with, oldest id first."""
        check_limit(limit)
        ev, a = schema.events, schema.event_analyses
        analyzed = select(a.c.event_id).where(a.c.event_id == ev.c.event_id).exists()
        query = (
            select(ev.c.event_id)
            .where(ev.c.completed_ms.is_not(None), ~analyzed)
            .order_by(ev.c.event_id)
            .limit(limit)
        )
        with translated("list events not yet analysed"), self._engine.connect() as conn:
            return [int(value) for value in conn.execute(query).scalars()]

    def get(self, event_id: int) -> Event:
        """The event with this id; NotFound if there is none."""
        ev = schema.events
        with translated(f"read event {event_id}"), self._engine.connect() as conn:
            row = conn.execute(select(ev).where(ev.c.event_id == event_id)).first()
        if row is None:
            raise NotFound(f"no event {event_id}")
        return _event(row)

    def box_events(self, event_id: int) -> list[BoxEvent]:
        """Every box's part of an event, by box id; NotFound if the event does not exist."""
        be = schema.box_events
        query = select(be).where(be.c.event_id == event_id).order_by(be.c.box_id)
        with translated(f"read the box events of event {event_id}"), self._engine.connect() as conn:
            if not _event_exists(conn, event_id):
                raise NotFound(f"no event {event_id}")
            return [_box_event(row) for row in conn.execute(query)]

    def box_event(self, event_id: int, box_id: str) -> BoxEvent:
        """One box's part of an event; NotFound if that box's data was not recorded."""
        be = schema.box_events
        query = select(be).where(be.c.event_id == event_id, be.c.box_id == box_id)
        with translated(f"read box {box_id!r} of event {event_id}"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no box event of box {box_id!r} in event {event_id}")
        return _box_event(row)

    def list(
        self,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        box_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Event]:
        """Events overlapping [start_ms, end_ms], newest target start first, then highest id.

        box_id keeps events in which that box was triggered; before_id continues a listing after
        the event with that id (the last of the previous page).
        """
        check_limit(limit)
        ev = schema.events
        start, eid = ev.c.target_event_start_timestamp_ms, ev.c.event_id
        query = select(ev).order_by(start.desc(), eid.desc()).limit(limit)
        if start_ms is not None:
            query = query.where(ev.c.target_event_end_timestamp_ms >= start_ms)
        if end_ms is not None:
            query = query.where(start <= end_ms)
        if box_id is not None:
            query = query.where(self._triggered(box_id))
        with translated("list events"), self._engine.connect() as conn:
            if before_id is not None:
                query = query.where(keyset_before(conn, start, eid, before_id, "event"))
            return [_event(row) for row in conn.execute(query)]

    def ids_after(self, event_id: int) -> builtins.list[int]:
        """Ids of the events stored with an id above event_id, ascending."""
        eid = schema.events.c.event_id
        query = select(eid).where(eid > event_id).order_by(eid)
        with translated(f"list event ids after {event_id}"), self._engine.connect() as conn:
            return [int(value) for value in conn.execute(query).scalars()]

    def count(self, since_ms: int | None = None) -> int:
        """How many events there are, or how many have a target start at or after since_ms."""
        ev = schema.events
        query = select(func.count()).select_from(ev)
        if since_ms is not None:
            query = query.where(ev.c.target_event_start_timestamp_ms >= since_ms)
        with translated("count events"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_box_events(self, since_ms: int | None = None) -> int:
        """How many box events there are, or how many start at or after since_ms."""
        be = schema.box_events
        query = select(func.count()).select_from(be)
        if since_ms is not None:
            query = query.where(be.c.event_start_timestamp_ms >= since_ms)
        with translated("count box events"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delete(self, event_id: int) -> None:
        """Delete an event, its box events, and its waveform files that no incident refers to."""
        f, c = schema.files, schema.chunks
        # A file an incident points at outlives the event: the incident is kept longer.
        own_files = and_(f.c.event_id == event_id, f.c.incident_id.is_(None))
        with translated(f"delete event {event_id}"), write_transaction(self._engine) as conn:
            if not _event_exists(conn, event_id):
                raise NotFound(f"no event {event_id}")
            conn.execute(c.delete().where(c.c.files_id.in_(select(f.c.id).where(own_files))))
            conn.execute(f.delete().where(own_files))
            conn.execute(schema.box_events.delete().where(schema.box_events.c.event_id == event_id))
            analyses = schema.event_analyses
            conn.execute(analyses.delete().where(analyses.c.event_id == event_id))
            conn.execute(schema.events.delete().where(schema.events.c.event_id == event_id))

    def _triggered(self, box_id: str) -> ColumnElement[bool]:
        # Neither backend has a portable "JSON array contains", so each uses its own table function.
        postgres = self._engine.dialect.name == "postgresql"
        unnest = func.json_array_elements_text if postgres else func.json_each
        members = unnest(schema.events.c.boxes_triggered).table_valued("value")
        return select(literal(1)).select_from(members).where(members.c.value == box_id).exists()


def check_limit(limit: int) -> None:
    """A page holds at least one row."""
    if limit < 1:
        raise InvalidValue(f"limit {limit} must be a positive number of rows")


def keyset_before(
    conn: Connection, start: Column[int], row_id: Column[int], before_id: int, what: str
) -> ColumnElement[bool]:
    """Rows after `before_id` in (start desc, id desc) order: the next page of a listing."""
    pivot = conn.execute(select(start).where(row_id == before_id)).scalar_one_or_none()
    if pivot is None:
        raise NotFound(f"no {what} {before_id} to continue the listing from")
    return or_(start < pivot, and_(start == pivot, row_id < before_id))


def _check_window(where: str, start_ms: int, end_ms: int) -> None:
    if start_ms > end_ms:
        raise InvalidValue(f"{where}: start {start_ms} ms is after end {end_ms} ms")


def _box_ids(values: Iterable[object], where: str) -> list[str]:
    boxes = list(values)
    if not all(isinstance(box, str) and box for box in boxes):
        raise InvalidValue(f"{where}: {boxes!r} must hold non-empty box id strings")
    if len(set(boxes)) != len(boxes):
        raise InvalidValue(f"{where}: {boxes!r} lists a box twice")
    return [str(box) for box in boxes]


def _ints(values: Iterable[object], where: str) -> list[int]:
    try:
        # operator.index takes ints (numpy's too) and refuses floats and strings.
        return [operator.index(value) for value in values]  # type: ignore[arg-type]
    except TypeError as err:
        raise InvalidValue(f"{where}: {err}; integers [ms] are expected") from err


def _box_event_row(box_event: BoxEvent) -> dict[str, Any]:
    """The box_events row of a box event, its values checked (InvalidValue saying which is wrong)."""
    where = f"event {box_event.event_id}, box {box_event.box_id!r}"
    _box_ids([box_event.box_id], f"{where}: box_id")
    _check_window(where, box_event.event_start_timestamp_ms, box_event.event_end_timestamp_ms)
    return {
        "event_id": box_event.event_id,
        "box_id": box_event.box_id,
        "event_start_timestamp_ms": box_event.event_start_timestamp_ms,
        "event_end_timestamp_ms": box_event.event_end_timestamp_ms,
        "window_timestamps_ms": _ints(box_event.window_timestamps_ms, f"{where}: window_timestamps_ms"),
        "location": box_event.location,
        "data_fs_filename": box_event.data_fs_filename,
    }


def _boxes_for_update(conn: Connection, event_id: int) -> tuple[list[str], list[str], list[int]]:
    """An event's boxes_triggered, boxes_received and latencies_ms, locked; NotFound if there is none."""
    ev = schema.events
    # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers): two boxes
    # answering at once must not both append to the same old lists and lose one.
    query = (
        select(ev.c.boxes_triggered, ev.c.boxes_received, ev.c.latencies_ms)
        .where(ev.c.event_id == event_id)
        .with_for_update()
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no event {event_id}")
    return list(row.boxes_triggered), list(row.boxes_received), list(row.latencies_ms)


def _event_exists(conn: Connection, event_id: int) -> bool:
    ev = schema.events
    return conn.execute(select(ev.c.event_id).where(ev.c.event_id == event_id)).first() is not None


def _event(row: Row[Any]) -> Event:
    return Event(
        event_id=row.event_id,
        target_event_start_timestamp_ms=row.target_event_start_timestamp_ms,
        target_event_end_timestamp_ms=row.target_event_end_timestamp_ms,
        boxes_triggered=tuple(row.boxes_triggered),
        boxes_received=tuple(row.boxes_received),
        latencies_ms=tuple(row.latencies_ms),
        description=row.description,
        completed_ms=row.completed_ms,
        continues_event_id=row.continues_event_id,
    )


def _box_event(row: Row[Any]) -> BoxEvent:
    return BoxEvent(
        event_id=row.event_id,
        box_id=row.box_id,
        event_start_timestamp_ms=row.event_start_timestamp_ms,
        event_end_timestamp_ms=row.event_end_timestamp_ms,
        window_timestamps_ms=tuple(row.window_timestamps_ms),
        location=row.location,
        data_fs_filename=row.data_fs_filename,
    )
