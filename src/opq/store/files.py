"""Waveform files in the GridFS layout: streamed in fixed-size chunks, checked on read."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from opq.clock import wall_clock_ms
from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.file_streams import Bytes, FileReader, FileWriter, stored_file
from opq.store.models import StoredFile

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 255 * 1024


def check_filename(filename: str) -> None:
    """A file name is 1 to 255 characters, not all white space."""
    if not filename.strip() or len(filename) > 255:
        raise InvalidValue(
            f"file name {filename!r} is not valid: use 1 to 255 characters, not all white space"
        )


@dataclass(frozen=True)
class WholeFile:
    """A small file written at once inside another record's transaction (`Files.write_whole`)."""

    filename: str
    data: bytes
    event_id: int | None = None
    box_id: str | None = None
    incident_id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def check_whole_file(file: WholeFile) -> None:
    """InvalidValue if `write_whole` would refuse the file for its name or metadata."""
    check_filename(file.filename)
    try:
        json.dumps(file.metadata)
    except (TypeError, ValueError) as err:
        raise InvalidValue(f"file {file.filename!r}: metadata is not JSON: {err}") from err


class Files:
    """The files and chunks collections: waveforms of events and incidents, any size."""

    def __init__(
        self,
        engine: Engine,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if chunk_size < 1:
            raise InvalidValue(f"chunk size {chunk_size} must be a positive number of bytes")
        self._engine = engine
        self.chunk_size = chunk_size
        self._clock_ms = clock_ms

    def open_writer(
        self,
        filename: str,
        *,
        event_id: int | None = None,
        box_id: str | None = None,
        incident_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> FileWriter:
        """Start a new file; it becomes visible only when the writer closes without error."""
        check_filename(filename)
        document = dict(metadata or {})
        try:
            json.dumps(document)
        except (TypeError, ValueError) as err:
            raise InvalidValue(f"file {filename!r}: metadata is not JSON: {err}") from err
        f = schema.files
        with translated(f"create file {filename!r}"), write_transaction(self._engine) as conn:
            taken = conn.execute(select(f.c.length).where(f.c.filename == filename)).first()
            if taken is not None:
                state = "is being written" if taken.length is None else "already exists"
                raise Conflict(f"file {filename!r} {state}")
            # Until the upload finishes, length is NULL and upload_date_ms holds when it started.
            file_id = conn.execute(
                f.insert()
                .values(
                    filename=filename,
                    chunk_size=self.chunk_size,
                    upload_date_ms=self._clock_ms(),
                    event_id=event_id,
                    box_id=box_id,
                    incident_id=incident_id,
                    metadata=document,
                )
                .returning(f.c.id)
            ).scalar_one()
        return FileWriter(self._engine, file_id, filename, self.chunk_size, self._clock_ms)

    def put(
        self,
        filename: str,
        data: Bytes | Iterable[Bytes],
        *,
        event_id: int | None = None,
        box_id: str | None = None,
        incident_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StoredFile:
        """Store a whole file from bytes or from an iterable of pieces."""
        pieces = [data] if isinstance(data, Bytes) else data
        writer = self.open_writer(
            filename, event_id=event_id, box_id=box_id, incident_id=incident_id, metadata=metadata
        )
        with writer:
            for piece in pieces:
                writer.write(piece)
        return writer.close()

    def write_whole(self, conn: Connection, files: Sequence[WholeFile]) -> None:
        """Write finished files with their chunks on `conn`, the caller's write transaction.

        They become visible when it commits and vanish with it if it rolls back, so a file and the
        record naming it are written together or not at all. Conflict if a name is taken.
        """
        for file in files:
            check_whole_file(file)
        if not files:
            return
        f, now_ms, size = schema.files, self._clock_ms(), self.chunk_size
        names = [file.filename for file in files]
        if len(set(names)) != len(names):
            raise InvalidValue(f"file names {names} are not all different")
        taken = conn.execute(select(f.c.filename).where(f.c.filename.in_(names))).first()
        if taken is not None:
            raise Conflict(f"file {taken.filename!r} already exists")
        conn.execute(
            f.insert(),
            [
                {
                    "filename": file.filename,
                    "length": len(file.data),
                    "chunk_size": size,
                    "upload_date_ms": now_ms,
                    "md5": hashlib.md5(file.data, usedforsecurity=False).hexdigest(),
                    "event_id": file.event_id,
                    "box_id": file.box_id,
                    "incident_id": file.incident_id,
                    "metadata": dict(file.metadata),
                }
                for file in files
            ],
        )
        found = conn.execute(select(f.c.filename, f.c.id).where(f.c.filename.in_(names)))
        file_ids = {row.filename: row.id for row in found}
        chunks = [
            {"files_id": file_ids[file.filename], "n": n, "data": file.data[start : start + size]}
            for file in files
            for n, start in enumerate(range(0, len(file.data), size))
        ]
        if chunks:
            conn.execute(schema.chunks.insert(), chunks)

    def open_reader(self, filename: str) -> FileReader:
        """The finished file opened for streaming reads; NotFound if there is none."""
        return FileReader(self._engine, self.get(filename))

    def read_bytes(self, filename: str) -> bytes:
        """The whole content of a finished file, checked against its md5."""
        with self.open_reader(filename) as reader:
            return reader.read()

    def get(self, filename: str) -> StoredFile:
        """The finished file's record; NotFound if there is none."""
        check_filename(filename)
        f = schema.files
        query = select(f).where(f.c.filename == filename, f.c.length.is_not(None))
        with translated(f"read file {filename!r}"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no file {filename!r}")
        return stored_file(row)

    def exists(self, filename: str) -> bool:
        """Whether a finished file has this name."""
        try:
            self.get(filename)
        except NotFound:
            return False
        return True

    def find(
        self,
        *,
        event_id: int | None = None,
        box_id: str | None = None,
        incident_id: int | None = None,
    ) -> list[StoredFile]:
        """Finished files matching every field given (all files if none is), by filename."""
        f = schema.files
        query = select(f).where(f.c.length.is_not(None)).order_by(f.c.filename)
        if event_id is not None:
            query = query.where(f.c.event_id == event_id)
        if box_id is not None:
            query = query.where(f.c.box_id == box_id)
        if incident_id is not None:
            query = query.where(f.c.incident_id == incident_id)
        with translated("find files"), self._engine.connect() as conn:
            return [stored_file(row) for row in conn.execute(query)]

    def delete(self, filename: str) -> None:
        """Delete a finished file and its chunks; NotFound if there is none."""
        check_filename(filename)
        f = schema.files
        query = select(f.c.id).where(f.c.filename == filename, f.c.length.is_not(None))
        with translated(f"delete file {filename!r}"), write_transaction(self._engine) as conn:
            file_id = conn.execute(query).scalar_one_or_none()
            if file_id is None:
                raise NotFound(f"no file {filename!r}")
            _delete_files(conn, [file_id])

    def delete_unfinished(self, *, started_before_ms: int) -> int:
        """Delete uploads begun before a time and never finished (their writer died); how many."""
        f = schema.files
        query = select(f.c.id).where(f.c.length.is_(None), f.c.upload_date_ms < started_before_ms)
        with translated("delete unfinished files"), write_transaction(self._engine) as conn:
            file_ids = conn.execute(query).scalars().all()
            _delete_files(conn, file_ids)
        return len(file_ids)


def _delete_files(conn: Connection, file_ids: Sequence[int]) -> None:
    # Chunks go explicitly too: the foreign key's cascade needs PRAGMA foreign_keys on SQLite.
    if file_ids:
        conn.execute(schema.chunks.delete().where(schema.chunks.c.files_id.in_(file_ids)))
        conn.execute(schema.files.delete().where(schema.files.c.id.in_(file_ids)))
