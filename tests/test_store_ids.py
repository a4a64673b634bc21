"""Event and incident ids: allocated by the database, never repeated across processes or restarts."""

from __future__ import annotations

import multiprocessing

from opq.store import Store, open_store
from opq.store.ids import allocate_ids, last_id


def _allocate_many(url: str, count: int) -> list[int]:
    with open_store(url) as store:
        return [store.allocate_id("event") for _ in range(count)]


def test_ids_survive_a_restart(db_url: str) -> None:
    with open_store(db_url) as first:
        assert [first.allocate_id("event") for _ in range(3)] == [1, 2, 3]
        assert first.allocate_id("incident") == 1
    with open_store(db_url) as second:
        assert second.allocate_id("event") == 4
        assert last_id(second.engine, "incident") == 1


def test_concurrent_processes_never_share_an_id(db_url: str) -> None:
    per_process, processes = 40, 4
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(_allocate_many, [(db_url, per_process)] * processes)
    every_id = [i for ids in results for i in ids]
    assert sorted(every_id) == list(range(1, per_process * processes + 1))


def test_a_block_of_ids_is_consecutive(store: Store) -> None:
    assert list(allocate_ids(store.engine, "incident", 5)) == [1, 2, 3, 4, 5]
    assert store.allocate_id("incident") == 6
