"""Waveform files in the GridFS layout: round trips, visibility and integrity, on every backend."""

from __future__ import annotations

import hashlib
import itertools
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from opq.errors import Conflict, InvalidValue, NotFound, StorageError
from opq.store import Store, schema
from opq.store.files import DEFAULT_CHUNK_SIZE, Files

CHUNK = 1024
MIB = 1024 * 1024
_names = itertools.count()


@pytest.fixture
def files(store: Store) -> Files:
    """Files with small chunks, so a few KiB already span several."""
    return Files(store.engine, chunk_size=CHUNK, clock_ms=lambda: 1_700_000_000_000)


def content(length: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(length)


def chunk_rows(store: Store, file_id: int | None = None) -> list[tuple[int, int, int]]:
    """(files_id, n, size) of stored chunks, of one file or of all."""
    c = schema.chunks
    query = select(c.c.files_id, c.c.n, func.length(c.c.data)).order_by(c.c.files_id, c.c.n)
    if file_id is not None:
        query = query.where(c.c.files_id == file_id)
    with store.engine.connect() as conn:
        return [(row[0], row[1], row[2]) for row in conn.execute(query)]


def file_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.files)).scalar_one())


@pytest.mark.parametrize(
    "length",
    [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 17],
    ids=lambda n: f"{n}B",
)
def test_round_trip(store: Store, files: Files, length: int) -> None:
    data = content(length)
    stored = files.put("event_1_box1", data)
    assert stored.length == length
    assert stored.chunk_size == CHUNK
    assert stored.md5 == hashlib.md5(data).hexdigest()
    assert stored.upload_date_ms == 1_700_000_000_000
    assert files.get("event_1_box1") == stored
    assert files.read_bytes("event_1_box1") == data
    sizes = [size for _, _, size in chunk_rows(store, stored.file_id)]
    expected = [CHUNK] * (length // CHUNK) + ([length % CHUNK] if length % CHUNK else [])
    assert sizes == expected
    with files.open_reader("event_1_box1") as reader:
        assert list(reader.chunks()) == [data[i : i + CHUNK] for i in range(0, length, CHUNK)]


def test_writes_of_any_size_make_the_same_chunks(store: Store, files: Files) -> None:
    data = content(7 * CHUNK + 3)
    cuts = [0, 1, 2, CHUNK - 1, CHUNK + 5, 3 * CHUNK, 3 * CHUNK, 6 * CHUNK + 1, len(data)]
    with files.open_writer("pieces") as writer:
        for start, end in itertools.pairwise(cuts):
            assert writer.write(data[start:end]) == end - start
    assert files.read_bytes("pieces") == data
    assert chunk_rows(store) == [(writer.file_id, n, CHUNK) for n in range(7)] + [(writer.file_id, 7, 3)]


def test_reads_of_any_size(files: Files) -> None:
    data = content(3 * CHUNK + 10)
    files.put("f", data)
    with files.open_reader("f") as reader:
        assert reader.read(0) == b""
        assert reader.read(5) == data[:5]
        assert reader.read1() == data[5:CHUNK]
        assert reader.read(2 * CHUNK + 3) == data[CHUNK : 3 * CHUNK + 3]
        assert reader.tell() == 3 * CHUNK + 3
        assert reader.read() == data[3 * CHUNK + 3 :]
        assert reader.read() == b""
        assert reader.read1(10) == b""
    with files.open_reader("f") as reader:
        target = bytearray(CHUNK + 1)
        assert reader.readinto(target) == CHUNK + 1
        assert bytes(target) == data[: CHUNK + 1]
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read()


def test_large_file_streams_through_bounded_memory(store: Store) -> None:
    files = Files(store.engine)
    piece_bytes, pieces = MIB + 7, 17
    expected = hashlib.md5()
    tracemalloc.start()
    try:
        with files.open_writer("event_9_box1") as writer:
            for i in range(pieces):
                piece = content(piece_bytes, seed=i)
                expected.update(piece)
                writer.write(piece)
                del piece
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read = hashlib.md5()
        with files.open_reader("event_9_box1") as reader:
            sizes = []
            for part in reader.chunks():
                read.update(part)
                sizes.append(len(part))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    length = piece_bytes * pieces
    assert length > 16 * MIB
    stored = files.get("event_9_box1")
    assert stored.length == length
    assert stored.chunk_size == DEFAULT_CHUNK_SIZE
    assert stored.md5 == expected.hexdigest() == read.hexdigest()
    assert sum(sizes) == length
    assert max(sizes) == DEFAULT_CHUNK_SIZE
    assert len(chunk_rows(store, stored.file_id)) == -(-length // DEFAULT_CHUNK_SIZE)
    # The file never sat in memory whole, neither on the way in nor on the way out.
    assert write_peak < 8 * MIB
    assert read_peak < 4 * MIB


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=3000),
    chunk_size=st.integers(min_value=1, max_value=1100),
    piece_sizes=st.lists(st.integers(min_value=1, max_value=700), max_size=8),
)
def test_any_bytes_any_chunk_size_round_trip(
    store: Store, data: bytes, chunk_size: int, piece_sizes: list[int]
) -> None:
    files = Files(store.engine, chunk_size=chunk_size)
    name = f"h{next(_names)}"
    with files.open_writer(name) as writer:
        start = 0
        for size in piece_sizes:
            writer.write(data[start : start + size])
            start += size
        writer.write(data[start:])
    assert files.read_bytes(name) == data
    assert files.get(name).md5 == hashlib.md5(data).hexdigest()
    with files.open_reader(name) as reader:
        assert b"".join(iter(lambda: reader.read(chunk_size + 1), b"")) == data


def test_metadata_and_find(files: Files) -> None:
    a = files.put("a", b"1", event_id=3, box_id="1000", metadata={"sample_rate_hz": 12_000})
    b = files.put("b", [b"2", b"3"], event_id=3, box_id="1001")
    c = files.put("c", [bytearray(b"4"), memoryview(b"56")], incident_id=7, box_id="1000")
    assert (a.event_id, a.box_id, a.incident_id) == (3, "1000", None)
    assert files.get("a").metadata == {"sample_rate_hz": 12_000}
    assert c.metadata == {}
    assert files.read_bytes("c") == b"456"
    assert files.find(event_id=3) == [a, b]
    assert files.find(box_id="1000") == [a, c]
    assert files.find(event_id=3, box_id="1000") == [a]
    assert files.find(incident_id=7) == [c]
    assert files.find(event_id=4) == []
    assert files.find() == [a, b, c]


def test_metadata_must_be_json(files: Files) -> None:
    with pytest.raises(InvalidValue, match="'f': metadata is not JSON"):
        files.open_writer("f", metadata={"when": object()})
    assert not files.exists("f")


def test_duplicate_filename_conflicts_and_keeps_the_original(store: Store, files: Files) -> None:
    original = files.put("event_3_1000", content(3000))
    with pytest.raises(Conflict, match="'event_3_1000' already exists"):
        files.put("event_3_1000", content(5000, seed=1))
    assert file_rows(store) == 1
    assert len(chunk_rows(store)) == 3
    assert files.get("event_3_1000") == original
    assert files.read_bytes("event_3_1000") == content(3000)


def test_filename_of_an_unfinished_upload_is_taken(files: Files) -> None:
    with files.open_writer("f") as writer:
        writer.write(b"x")
        with pytest.raises(Conflict, match="'f' is being written"):
            files.open_writer("f")
    assert files.read_bytes("f") == b"x"


def test_an_error_inside_the_writer_leaves_nothing(store: Store, files: Files) -> None:
    with pytest.raises(RuntimeError, match="capture failed"), files.open_writer("f") as writer:
        writer.write(content(2 * MIB))  # past the flush threshold, so chunks were committed
        assert chunk_rows(store)
        raise RuntimeError("capture failed")
    assert file_rows(store) == 0
    assert chunk_rows(store) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")
    files.put("f", b"the name is free again")


def test_a_failed_write_discards_the_file(store: Store, files: Files) -> None:
    writer = files.open_writer("f")
    with store.engine.begin() as conn:  # a chunk 0 in the way makes the first flush fail
        conn.execute(schema.chunks.insert().values(files_id=writer.file_id, n=0, data=b"x"))
    with pytest.raises(StorageError, match="write file 'f'"):
        writer.write(content(2 * MIB))
    assert (file_rows(store), chunk_rows(store)) == (0, [])
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_abort_leaves_nothing(store: Store, files: Files) -> None:
    writer = files.open_writer("f")
    writer.write(content(2 * MIB))
    writer.abort()
    assert (file_rows(store), chunk_rows(store)) == (0, [])
    with pytest.raises(ValueError, match="aborted"):
        writer.close()


def test_an_unfinished_upload_is_invisible_and_blocks_no_one(files: Files) -> None:
    writer = files.open_writer("f", event_id=1)
    writer.write(content(2 * MIB))
    assert not files.exists("f")
    assert files.find() == []
    assert files.find(event_id=1) == []
    with pytest.raises(NotFound):
        files.get("f")
    with pytest.raises(NotFound):
        files.open_reader("f")
    with pytest.raises(NotFound):
        files.delete("f")
    # No transaction is held open between writes: other writers go on meanwhile.
    files.put("g", b"other")
    stored = writer.close()
    assert files.find() == [stored, files.get("g")]
    assert stored.md5 == hashlib.md5(content(2 * MIB)).hexdigest()


def test_abandoned_uploads_are_deleted_by_age(store: Store) -> None:
    now = [1000]
    files = Files(store.engine, chunk_size=CHUNK, clock_ms=lambda: now[0])
    files.open_writer("old").write(content(2 * MIB))
    now[0] = 2000
    files.open_writer("new").write(b"x")
    done = files.put("done", b"y")
    assert files.delete_unfinished(started_before_ms=1500) == 1
    assert file_rows(store) == 2
    assert chunk_rows(store) == [(done.file_id, 0, 1)]
    assert files.read_bytes("done") == b"y"


def _corrupt(store: Store, file_id: int, n: int, data: bytes | None) -> None:
    c = schema.chunks
    where = (c.c.files_id == file_id) & (c.c.n == n)
    with store.engine.begin() as conn:
        if data is None:
            conn.execute(c.delete().where(where))
        else:
            conn.execute(c.update().where(where).values(data=data))


@pytest.mark.parametrize(
    ("n", "data", "problem"),
    [
        (2, None, "chunk 2 is missing"),
        (0, None, "chunk 0 is missing"),
        (3, None, "chunk 3 is missing"),
        (1, b"short", f"chunk 1 has 5 bytes, not {CHUNK}"),
        (3, b"\x00" * 11, "chunk 3 has 11 bytes, not 10"),
        (1, b"\x00" * CHUNK, "content has md5"),
        (3, b"\x00" * 10, "content has md5"),
    ],
    ids=["middle-missing", "first-missing", "last-missing", "short", "long-last", "bytes", "last"],
)
def test_corruption_is_an_error_not_wrong_bytes(
    store: Store, files: Files, n: int, data: bytes | None, problem: str
) -> None:
    stored = files.put("event_3_1000", content(3 * CHUNK + 10))
    _corrupt(store, stored.file_id, n, data)
    with pytest.raises(StorageError, match=f"file 'event_3_1000': {problem}"):
        files.read_bytes("event_3_1000")
    with files.open_reader("event_3_1000") as reader:
        with pytest.raises(StorageError, match=problem):
            for _ in reader.chunks():
                pass
        # The error sticks: reading on never reaches a quiet end of file.
        with pytest.raises(StorageError, match=problem):
            reader.read()


def test_stray_chunks_are_an_error(store: Store, files: Files) -> None:
    for name, length in (("empty", 0), ("full", 2 * CHUNK)):
        stored = files.put(name, content(length))
        with store.engine.begin() as conn:
            conn.execute(schema.chunks.insert().values(files_id=stored.file_id, n=9, data=b"x"))
        with pytest.raises(StorageError, match=f"file '{name}': 1 stray chunk"):
            files.read_bytes(name)


def test_a_bad_last_chunk_is_caught_before_it_is_handed_out(store: Store, files: Files) -> None:
    stored = files.put("f", content(2 * CHUNK))
    _corrupt(store, stored.file_id, 0, b"\x00" * CHUNK)
    with files.open_reader("f") as reader:
        assert len(reader.read(CHUNK)) == CHUNK
        with pytest.raises(StorageError, match="md5"):
            reader.read(1)
        with pytest.raises(StorageError, match="md5"):
            reader.read()


def test_unknown_and_invalid_names(store: Store, files: Files) -> None:
    for call in (files.get, files.open_reader, files.read_bytes, files.delete):
        with pytest.raises(NotFound, match="no file 'nope'"):
            call("nope")
    assert not files.exists("nope")
    for bad in ("", "   ", "x" * 256):
        with pytest.raises(InvalidValue, match="file name"):
            files.open_writer(bad)
        with pytest.raises(InvalidValue):
            files.get(bad)
    with pytest.raises(InvalidValue, match="chunk size"):
        Files(store.engine, chunk_size=0)


def test_delete_removes_the_file_and_its_chunks(store: Store, files: Files) -> None:
    kept = files.put("kept", content(2 * CHUNK, seed=1))
    gone = files.put("gone", content(3 * CHUNK))
    files.delete("gone")
    assert not files.exists("gone")
    assert {files_id for files_id, _, _ in chunk_rows(store)} == {kept.file_id}
    assert chunk_rows(store, gone.file_id) == []
    with pytest.raises(NotFound):
        files.delete("gone")
    assert files.put("gone", b"again").length == 5
    assert files.read_bytes("kept") == content(2 * CHUNK, seed=1)


def test_store_has_files(store: Store) -> None:
    stored = store.files.put("event_1_1000", b"abc", event_id=1)
    assert store.files.read_bytes("event_1_1000") == b"abc"
    assert stored.chunk_size == DEFAULT_CHUNK_SIZE
