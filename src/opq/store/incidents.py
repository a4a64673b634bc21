"""Incidents: classified disturbances at one box, with their classifications and annotations."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, func, select

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.classifications import Classification, MeasurementType
from opq.store.engine import translated, write_transaction
from opq.store.events import check_limit, keyset_before
from opq.store.files import Files, WholeFile, check_whole_file
from opq.store.incident_rows import annotation_row, incident_rows, json_plain, vocabulary_member
from opq.store.models import Annotation, Incident


@dataclass(frozen=True)
class TrendsKept:
    """One box's trends stamped in [start_ms, end_ms] live at least until expire_at [ms; None: for ever]."""

    box_id: str
    start_ms: int
    end_ms: int
    expire_at: int | None


@dataclass(frozen=True)
class IncidentBatch:
    """An analysis's incidents and what goes with them, written in one transaction (`add_batch`).

    `files` are the incidents' trimmed waveforms; `trends_kept` and `events_kept` (event id →
    expire_at, None for ever) lengthen the lifetimes of what the incidents reference, as
    `Trends.keep_until` and `Events.keep_until` do.
    """

    incidents: Sequence[Incident]
    files: Sequence[WholeFile] = ()
    trends_kept: Sequence[TrendsKept] = ()
    events_kept: Mapping[int, int | None] = field(default_factory=dict)


class Incidents:
    """The incidents collection, kept for `lifetime_ms` after an incident's end."""

    def __init__(self, engine: Engine, lifetime_ms: int | None = None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms

    def add(self, incident: Incident) -> None:
        """Store a new incident; its id comes from `allocate_ids(engine, "incident")`."""
        rows = incident_rows([incident], self._lifetime_ms)
        with translated(f"add incident {incident.incident_id}"), write_transaction(self._engine) as conn:
            _insert(conn, *rows)

    def replace(self, incident: Incident) -> None:
        """Store a new version of an incident (same id) in place of the stored one, in one transaction.

        The old version's classifications, annotations and waveform files go; the new one's
        annotations are written, so a caller keeping people's notes passes them on. NotFound if
        there is no incident with its id.
        """
        iid = incident.incident_id
        rows = incident_rows([incident], self._lifetime_ms)
        with translated(f"replace incident {iid}"), write_transaction(self._engine) as conn:
            if not _incident_exists(conn, iid):
                raise NotFound(f"no incident {iid}")
            _delete(conn, [iid])
            _insert(conn, *rows)

    def check(self, incident: Incident) -> None:
        """InvalidValue, saying what is wrong, if `add` would refuse the incident for its values."""
        incident_rows([incident], self._lifetime_ms)

    def add_batch(self, batch: IncidentBatch, files: Files) -> None:
        """Store new incidents, their waveform files (through `files`) and the lifetimes they extend,
        in one transaction: all of it or, on any error, none of it.

        Every value is checked before anything is written (InvalidValue); an id or file name already
        taken is a Conflict, an event to keep that does not exist NotFound.
        """
        rows = incident_rows(batch.incidents, self._lifetime_ms)
        for file in batch.files:
            check_whole_file(file)
        ids = [i.incident_id for i in batch.incidents]
        if len(set(ids)) != len(ids):
            raise InvalidValue(f"incident ids {ids} are not all different")
        t, ev = schema.trends, schema.events
        with translated(f"add {len(ids)} incidents"), write_transaction(self._engine) as conn:
            _insert(conn, *rows)
            files.write_whole(conn, batch.files)
            # Lifetimes are only ever lengthened, as Trends.keep_until and Events.keep_until do.
            for kept in batch.trends_kept:
                update = t.update().where(
                    t.c.box_id == kept.box_id, t.c.timestamp_ms.between(kept.start_ms, kept.end_ms)
                )
                expire = (
                    t.c.expire_at.is_not(None) if kept.expire_at is None else t.c.expire_at < kept.expire_at
                )
                conn.execute(update.where(expire).values(expire_at=kept.expire_at))
            for event_id, expire_at in batch.events_kept.items():
                if conn.execute(select(ev.c.event_id).where(ev.c.event_id == event_id)).first() is None:
                    raise NotFound(f"no event {event_id}")
                update = ev.update().where(ev.c.event_id == event_id)
                if expire_at is not None:
                    update = update.where(ev.c.expire_at < expire_at)
                conn.execute(update.values(expire_at=expire_at))

    def get(self, incident_id: int) -> Incident:
        """The incident with this id; NotFound if there is none."""
        inc = schema.incidents
        query = select(inc).where(inc.c.incident_id == incident_id)
        with translated(f"read incident {incident_id}"), self._engine.connect() as conn:
            found = _read(conn, query)
        if not found:
            raise NotFound(f"no incident {incident_id}")
        return found[0]

    def list(
        self,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        box_id: str | None = None,
        location: str | None = None,
        measurement_type: str | None = None,
        classification: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Incident]:
        """Incidents overlapping [start_ms, end_ms] that match every filter given, newest first.

        Newest is the latest start, then the highest id; before_id continues a listing after
        the incident with that id (the last of the previous page).
        """
        check_limit(limit)
        inc, ic = schema.incidents, schema.incident_classifications
        start, iid = inc.c.start_timestamp_ms, inc.c.incident_id
        query = select(inc).order_by(start.desc(), iid.desc()).limit(limit)
        if start_ms is not None:
            query = query.where(inc.c.end_timestamp_ms >= start_ms)
        if end_ms is not None:
            query = query.where(start <= end_ms)
        # A misspelt vocabulary word would silently match nothing: refuse it instead.
        if measurement_type is not None:
            measurement_type = vocabulary_member(MeasurementType, measurement_type, "measurement_type")
        if classification is not None:
            classification = vocabulary_member(Classification, classification, "classification")
        for column, value in (
            (inc.c.box_id, box_id),
            (inc.c.location, location),
            (inc.c.measurement_type, measurement_type),
        ):
            if value is not None:
                query = query.where(column == value)
        if classification is not None:
            query = query.where(
                select(ic.c.incident_id)
                .where(ic.c.incident_id == iid, ic.c.classification == classification)
                .exists()
            )
        with translated("list incidents"), self._engine.connect() as conn:
            if before_id is not None:
                query = query.where(keyset_before(conn, start, iid, before_id, "incident"))
            return _read(conn, query)

    def for_event(self, event_id: int) -> builtins.list[Incident]:
        """The incidents analysis found in an event, oldest start first."""
        inc = schema.incidents
        query = (
            select(inc)
            .where(inc.c.event_id == event_id)
            .order_by(inc.c.start_timestamp_ms, inc.c.incident_id)
        )
        with translated(f"read the incidents of event {event_id}"), self._engine.connect() as conn:
            return _read(conn, query)

    def annotate(self, incident_id: int, annotation: Annotation) -> None:
        """Add a person's note to an incident."""
        row = annotation_row(incident_id, annotation)
        with translated(f"annotate incident {incident_id}"), write_transaction(self._engine) as conn:
            if not _incident_exists(conn, incident_id):
                raise NotFound(f"no incident {incident_id}")
            conn.execute(schema.incident_annotations.insert().values(row))

    def set_end(self, incident_id: int, end_ms: int, *, metadata: dict[str, Any] | None = None) -> None:
        """Move an incident's end (an outage still going on, or over); `metadata` keys are merged in.

        Its lifetime follows: the incident expires `lifetime_ms` after its new end.
        """
        inc = schema.incidents
        where = f"incident {incident_id}"
        update: dict[str, Any] = {
            "end_timestamp_ms": end_ms,
            "expire_at": None if self._lifetime_ms is None else end_ms + self._lifetime_ms,
        }
        query = select(inc.c.start_timestamp_ms, inc.c.metadata).where(inc.c.incident_id == incident_id)
        with translated(f"set the end of {where}"), write_transaction(self._engine) as conn:
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(f"no {where}")
            if end_ms < row.start_timestamp_ms:
                raise InvalidValue(f"{where}: end {end_ms} ms is before its start {row.start_timestamp_ms}")
            if metadata:
                update["metadata"] = {**row.metadata, **json_plain(metadata, f"{where}: metadata")}
            conn.execute(inc.update().where(inc.c.incident_id == incident_id).values(update))

    def delete_for_event(
        self, event_id: int, *, produced_by: str | Collection[str] | None = None, box_id: str | None = None
    ) -> int:
        """Delete an event's incidents (only plugin(s) `produced_by`'s, only at `box_id`, if given); how many.

        Their classifications, annotations and waveform files go with them, so the event can be
        analyzed again.
        """
        inc = schema.incidents
        query = select(inc.c.incident_id, inc.c.metadata).where(inc.c.event_id == event_id)
        if box_id is not None:
            query = query.where(inc.c.box_id == box_id)
        producers = {produced_by} if isinstance(produced_by, str) else produced_by
        with translated(f"delete the incidents of event {event_id}"), write_transaction(self._engine) as conn:
            ids = [
                iid
                for iid, metadata in conn.execute(query)
                if producers is None or metadata.get("plugin") in producers
            ]
            _delete(conn, ids)
        return len(ids)

    def delete_expired(self, now_ms: int) -> int:
        """Delete the incidents whose lifetime ended by now_ms, with their waveform files; how many."""
        inc = schema.incidents
        query = select(inc.c.incident_id).where(inc.c.expire_at <= now_ms)
        with translated("delete expired incidents"), write_transaction(self._engine) as conn:
            ids = list(conn.execute(query).scalars())
            _delete(conn, ids)
        return len(ids)

    def count(self, since_ms: int | None = None) -> int:
        """How many incidents there are, or how many start at or after since_ms."""
        inc = schema.incidents
        query = select(func.count()).select_from(inc)
        if since_ms is not None:
            query = query.where(inc.c.start_timestamp_ms >= since_ms)
        with translated("count incidents"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _insert(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    classifications: Sequence[dict[str, Any]],
    annotations: Sequence[dict[str, Any]],
) -> None:
    """Insert checked incident rows; Conflict if an id is taken."""
    inc = schema.incidents
    ids = [row["incident_id"] for row in rows]
    if ids and (taken := conn.execute(select(inc.c.incident_id).where(inc.c.incident_id.in_(ids))).first()):
        raise Conflict(f"incident {taken.incident_id} already exists")
    if rows:
        conn.execute(schema.incidents.insert(), list(rows))
    if classifications:
        conn.execute(schema.incident_classifications.insert(), list(classifications))
    if annotations:
        conn.execute(schema.incident_annotations.insert(), list(annotations))


def _delete(conn: Connection, ids: Sequence[int]) -> None:
    """Delete incidents with their classifications, annotations and waveform files."""
    if not ids:
        return
    inc, f, c = schema.incidents, schema.files, schema.chunks
    files = select(f.c.id).where(f.c.incident_id.in_(ids))
    conn.execute(c.delete().where(c.c.files_id.in_(files)))
    conn.execute(f.delete().where(f.c.incident_id.in_(ids)))
    for table in (schema.incident_classifications, schema.incident_annotations, inc):
        conn.execute(table.delete().where(table.c.incident_id.in_(ids)))


def _incident_exists(conn: Connection, incident_id: int) -> bool:
    inc = schema.incidents
    query = select(inc.c.incident_id).where(inc.c.incident_id == incident_id)
    return conn.execute(query).first() is not None


def _read(conn: Connection, query: Select[Any]) -> list[Incident]:
    """The incidents a query selects, with classifications and annotations: one query each."""
    rows = conn.execute(query).all()
    ids = [row.incident_id for row in rows]
    if not ids:
        return []
    ic, ia = schema.incident_classifications, schema.incident_annotations
    classifications: dict[int, list[str]] = {}
    for iid, classification in conn.execute(
        select(ic.c.incident_id, ic.c.classification)
        .where(ic.c.incident_id.in_(ids))
        .order_by(ic.c.incident_id, ic.c.classification)
    ):
        classifications.setdefault(iid, []).append(classification)
    annotations: dict[int, list[Annotation]] = {}
    for row in conn.execute(
        select(ia).where(ia.c.incident_id.in_(ids)).order_by(ia.c.incident_id, ia.c.timestamp_ms, ia.c.id)
    ):
        annotations.setdefault(row.incident_id, []).append(
            Annotation(row.username, row.text, row.timestamp_ms)
        )
    return [
        _incident(row, classifications.get(row.incident_id, ()), annotations.get(row.incident_id, ()))
        for row in rows
    ]


def _incident(row: Row[Any], classifications: Iterable[str], annotations: Sequence[Annotation]) -> Incident:
    return Incident(
        incident_id=row.incident_id,
        box_id=row.box_id,
        start_timestamp_ms=row.start_timestamp_ms,
        end_timestamp_ms=row.end_timestamp_ms,
        measurement_type=row.measurement_type,
        classifications=tuple(classifications),
        event_id=row.event_id,
        location=row.location,
        deviation_from_nominal=row.deviation_from_nominal,
        measurements=tuple(row.measurements),
        gridfs_filename=row.gridfs_filename,
        ieee_duration=row.ieee_duration,
        annotations=tuple(annotations),
        metadata=row.metadata,
    )
