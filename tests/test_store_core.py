"""Smoke test of the backends (replaced by the full contract suite)."""

from opq.store import Store


def test_ids_are_consecutive(store: Store) -> None:
    assert [store.allocate_id("event") for _ in range(3)] == [1, 2, 3]
