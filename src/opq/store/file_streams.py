"""Streams of the GridFS-layout file store: a writer that commits chunks as they fill, a checking reader."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select

from opq.errors import StorageError
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import StoredFile

logger = logging.getLogger(__name__)

# A writer commits its full chunks about once per this many bytes: few, short transactions.
_FLUSH_BYTES = 1024 * 1024
Bytes = bytes | bytearray | memoryview


class FileWriter:
    """A file being written: full chunks go to the database as they fill, a batch at a time."""

    def __init__(
        self,
        engine: Engine,
        file_id: int,
        filename: str,
        chunk_size: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self._engine = engine
        self.file_id = file_id
        self.filename = filename
        self._chunk_size = chunk_size
        self._clock_ms = clock_ms
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._length = 0
        self._chunk_count = 0
        self._partial = bytearray()
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._info: StoredFile | None = None
        self._aborted = False

    def write(self, data: Bytes) -> int:
        """Append bytes to the file; returns how many. A failed write discards the whole file."""
        if self._info is not None or self._aborted:
            raise ValueError(f"file {self.filename!r} is closed for writing")
        view = memoryview(data).cast("B")
        count = len(view)
        self._md5.update(view)
        self._length += count
        try:
            self._split(view)
        except BaseException:
            self._discard_quietly()
            raise
        return count

    def _split(self, view: memoryview) -> None:
        size = self._chunk_size
        if self._partial:
            take = min(size - len(self._partial), len(view))
            self._partial += view[:take]
            view = view[take:]
            if len(self._partial) == size:
                self._add_chunk(bytes(self._partial))
                self._partial.clear()
        while len(view) >= size:
            self._add_chunk(bytes(view[:size]))
            view = view[size:]
        self._partial += view

    def close(self) -> StoredFile:
        """Write the last chunk and make the file visible; on failure, delete what was written."""
        if self._info is not None:
            return self._info
        if self._aborted:
            raise ValueError(f"file {self.filename!r} was aborted")
        f = schema.files
        try:
            if self._partial:
                self._add_chunk(bytes(self._partial))
                self._partial.clear()
            with translated(f"finish file {self.filename!r}"), write_transaction(self._engine) as conn:
                self._flush(conn)
                finished = conn.execute(
                    f.update()
                    .where(f.c.id == self.file_id, f.c.length.is_(None))
                    .values(
                        length=self._length,
                        md5=self._md5.hexdigest(),
                        upload_date_ms=self._clock_ms(),
                    )
                )
                if finished.rowcount != 1:
                    raise StorageError(f"file {self.filename!r} was deleted while being written")
                row = conn.execute(select(f).where(f.c.id == self.file_id)).one()
        except BaseException:
            self._discard_quietly()
            raise
        self._info = stored_file(row)
        return self._info

    def abort(self) -> None:
        """Give the file up: delete it and every chunk written so far."""
        if self._info is not None:
            raise ValueError(f"file {self.filename!r} is finished: delete it through Files")
        self._aborted = True
        self._partial.clear()
        self._pending.clear()
        f, c = schema.files, schema.chunks
        with (
            translated(f"discard unfinished file {self.filename!r}"),
            write_transaction(self._engine) as conn,
        ):
            conn.execute(c.delete().where(c.c.files_id == self.file_id))
            conn.execute(f.delete().where(f.c.id == self.file_id, f.c.length.is_(None)))

    def _discard_quietly(self) -> None:
        # Called while another error propagates, which matters more than this one.
        try:
            self.abort()
        except StorageError:
            logger.warning("could not discard unfinished file %r", self.filename, exc_info=True)

    def _add_chunk(self, data: bytes) -> None:
        self._pending.append({"files_id": self.file_id, "n": self._chunk_count, "data": data})
        self._chunk_count += 1
        self._pending_bytes += len(data)
        if self._pending_bytes >= _FLUSH_BYTES:
            with translated(f"write file {self.filename!r}"), write_transaction(self._engine) as conn:
                self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        if self._pending:
            conn.execute(schema.chunks.insert(), self._pending)
        self._pending = []
        self._pending_bytes = 0

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if exc_type is None:
            self.close()
        elif self._info is None and not self._aborted:
            self._discard_quietly()


class FileReader(io.BufferedIOBase):
    """A finished file opened for reading: chunks are fetched one at a time and checked.

    A missing, misplaced or wrongly sized chunk raises StorageError when reached; a wrong md5 raises
    it when the last chunk is fetched, before any of that chunk is handed out.
    """

    def __init__(self, engine: Engine, info: StoredFile) -> None:
        super().__init__()
        self._engine = engine
        self.info = info
        self._chunk_count = -(-info.length // info.chunk_size)
        self._next_n = 0
        self._verified = False
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._buffer = b""
        self._offset = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes (all the rest if size is negative or None); b"" at the end."""
        self._check_open()
        wanted = -1 if size is None or size < 0 else size
        parts = []
        while wanted != 0 and (self._offset < len(self._buffer) or self._fetch()):
            part = self._take(wanted)
            parts.append(part)
            wanted = -1 if wanted < 0 else wanted - len(part)
        return b"".join(parts)

    def read1(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes from at most one chunk."""
        self._check_open()
        if size == 0 or (self._offset == len(self._buffer) and not self._fetch()):
            return b""
        return self._take(size)

    def chunks(self) -> Iterator[bytes]:
        """The rest of the file, a stored chunk at a time."""
        while part := self.read1():
            yield part

    def close(self) -> None:
        self._buffer = b""
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"file {self.info.filename!r} is closed")

    def _take(self, size: int) -> bytes:
        end = len(self._buffer) if size < 0 else min(self._offset + size, len(self._buffer))
        part = self._buffer[self._offset : end]
        self._offset = end
        self._position += len(part)
        return part

    def _fetch(self) -> bool:
        """Load the next chunk into the buffer; False at the end of the file."""
        info, c, n = self.info, schema.chunks, self._next_n
        if n >= self._chunk_count:
            if not self._verified:
                with translated(f"read file {info.filename!r}"), self._engine.connect() as conn:
                    self._verify_whole(conn)
            return False
        query = select(c.c.data).where(c.c.files_id == info.file_id, c.c.n == n)
        with translated(f"read file {info.filename!r}"), self._engine.connect() as conn:
            data = conn.execute(query).scalar_one_or_none()
            if data is None:
                raise StorageError(f"file {info.filename!r}: chunk {n} is missing")
            expected = min(info.chunk_size, info.length - n * info.chunk_size)
            if len(data) != expected:
                raise StorageError(f"file {info.filename!r}: chunk {n} has {len(data)} bytes, not {expected}")
            if n == self._chunk_count - 1:
                self._verify_whole(conn, data)
            else:
                self._md5.update(data)
        self._next_n = n + 1
        self._buffer, self._offset = bytes(data), 0
        return True

    def _verify_whole(self, conn: Connection, last_chunk: bytes = b"") -> None:
        info, c = self.info, schema.chunks
        stray = conn.execute(
            select(func.count())
            .select_from(c)
            .where(c.c.files_id == info.file_id, ~c.c.n.between(0, self._chunk_count - 1))
        ).scalar_one()
        if stray:
            raise StorageError(
                f"file {info.filename!r}: {stray} stray chunk(s) beyond its {info.length} bytes"
            )
        md5 = self._md5.copy()
        md5.update(last_chunk)
        if md5.hexdigest() != info.md5:
            raise StorageError(f"file {info.filename!r}: content has md5 {md5.hexdigest()}, not {info.md5}")
        self._md5, self._verified = md5, True


def stored_file(row: Row[Any]) -> StoredFile:
    values = row._mapping
    return StoredFile(
        file_id=values["id"],
        filename=values["filename"],
        length=values["length"],
        chunk_size=values["chunk_size"],
        upload_date_ms=values["upload_date_ms"],
        md5=values["md5"],
        event_id=values["event_id"],
        box_id=values["box_id"],
        incident_id=values["incident_id"],
        metadata=dict(values["metadata"]),
    )
