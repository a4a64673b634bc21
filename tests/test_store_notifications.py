"""Notifications on every backend: per-user feeds, delivered and unseen flags, expiry."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from opq.errors import InvalidValue, NotFound
from opq.store import Store, schema
from opq.store.models import UserProfile
from opq.store.notifications import Notifications
from opq.store.users import Users

ALICE = "alice@example.org"
BOB = "bob@example.org"
NOBODY = "nobody@example.org"
DOWN = "system service down"
INCIDENT = "new incident"


@pytest.fixture
def users(store: Store) -> Users:
    """Alice and Bob, with hashes cheap to make."""
    users = Users(store.engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for username in (ALICE, BOB):
        users.add(UserProfile(username=username), "a fine password")
    return users


def test_add_returns_new_ids_and_for_user_reads_newest_first(store: Store, users: Users) -> None:
    first = store.notifications.add(ALICE, DOWN, {"summary": "makai down"}, 1_000)
    second = store.notifications.add(ALICE, INCIDENT, {"summary": "sag", "box_id": "1000"}, 3_000)
    third = store.notifications.add(ALICE, DOWN, {"summary": "mauka down"}, 2_000)
    assert len({first, second, third}) == 3
    feed = store.notifications.for_user(ALICE)
    assert [(n.notification_id, n.timestamp_ms) for n in feed] == [
        (second, 3_000),
        (third, 2_000),
        (first, 1_000),
    ]
    assert feed[0].username == ALICE
    assert feed[0].type == INCIDENT
    assert feed[0].data == {"summary": "sag", "box_id": "1000"}
    assert not feed[0].delivered
    assert store.notifications.count() == 3


def test_equal_timestamps_read_newest_id_first(store: Store, users: Users) -> None:
    ids = [store.notifications.add(ALICE, DOWN, {"n": n}, 1_000) for n in range(3)]
    assert [n.notification_id for n in store.notifications.for_user(ALICE)] == ids[::-1]


def test_each_user_reads_only_their_own(store: Store, users: Users) -> None:
    store.notifications.add(ALICE, DOWN, {}, 1_000)
    bobs = store.notifications.add(BOB, INCIDENT, {}, 2_000)
    assert [n.notification_id for n in store.notifications.for_user(BOB)] == [bobs]


def test_adding_flags_the_user_and_mark_seen_clears_only_them(store: Store, users: Users) -> None:
    store.notifications.add(ALICE, DOWN, {}, 1_000)
    store.notifications.add(BOB, DOWN, {}, 1_000)
    assert users.get(ALICE).unseen_notifications
    store.notifications.mark_seen(ALICE)
    assert not users.get(ALICE).unseen_notifications
    assert users.get(BOB).unseen_notifications
    store.notifications.add(ALICE, DOWN, {}, 2_000)
    assert users.get(ALICE).unseen_notifications


def test_mark_delivered_and_undelivered_only(store: Store, users: Users) -> None:
    ids = [store.notifications.add(ALICE, DOWN, {"n": n}, 1_000 + n) for n in range(4)]
    assert store.notifications.mark_delivered([ids[0], ids[2], ids[2], 999_999]) == 2
    undelivered = store.notifications.for_user(ALICE, undelivered_only=True)
    assert [n.notification_id for n in undelivered] == [ids[3], ids[1]]
    delivered = {n.notification_id: n.delivered for n in store.notifications.for_user(ALICE)}
    assert delivered == {ids[0]: True, ids[1]: False, ids[2]: True, ids[3]: False}
    assert store.notifications.mark_delivered([]) == 0


def test_limit_keeps_the_newest(store: Store, users: Users) -> None:
    for n in range(5):
        store.notifications.add(ALICE, DOWN, {}, 1_000 + n)
    feed = store.notifications.for_user(ALICE, limit=2)
    assert [n.timestamp_ms for n in feed] == [1_004, 1_003]


def test_a_limit_below_one_is_refused(store: Store, users: Users) -> None:
    with pytest.raises(InvalidValue, match="limit"):
        store.notifications.for_user(ALICE, limit=0)


def test_unknown_users_are_not_found_and_nothing_is_written(store: Store, users: Users) -> None:
    with pytest.raises(NotFound, match=NOBODY):
        store.notifications.add(NOBODY, DOWN, {}, 1_000)
    with pytest.raises(NotFound, match=NOBODY):
        store.notifications.for_user(NOBODY)
    with pytest.raises(NotFound, match=NOBODY):
        store.notifications.mark_seen(NOBODY)
    assert store.notifications.count() == 0


@pytest.mark.parametrize(
    ("type_", "data", "named"),
    [
        ("", {}, "type"),
        ("   ", {}, "type"),
        ("x" * 65, {}, "type"),
        (DOWN, {"boxes": {"1000", "1001"}}, "JSON"),
        (DOWN, {"deviation": float("nan")}, "JSON"),
        (DOWN, ["not", "a", "dict"], "dict"),
    ],
    ids=["empty-type", "blank-type", "long-type", "set", "nan", "list"],
)
def test_invalid_notifications_are_refused_and_leave_nothing(
    store: Store, users: Users, type_: str, data: Any, named: str
) -> None:
    with pytest.raises(InvalidValue, match=named):
        store.notifications.add(ALICE, type_, data, 1_000)
    assert store.notifications.count() == 0
    assert not users.get(ALICE).unseen_notifications


@pytest.mark.parametrize(
    ("lifetime_ms", "expire_at"),
    [(None, None), (604_800_000, 604_801_000)],
    ids=["forever", "a-week"],
)
def test_expiry_follows_the_lifetime(
    store: Store, users: Users, lifetime_ms: int | None, expire_at: int | None
) -> None:
    notification_id = Notifications(store.engine, lifetime_ms).add(ALICE, DOWN, {}, 1_000)
    n = schema.notifications
    with store.engine.connect() as conn:
        stored = conn.execute(select(n.c.expire_at).where(n.c.id == notification_id)).scalar_one()
    assert stored == expire_at
