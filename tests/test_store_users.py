"""Users on every backend: profiles, argon2 credentials kept apart, box ownership."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from opq.errors import Conflict, InvalidValue, NotFound, StorageError
from opq.store import Store, schema
from opq.store.models import Box, NotificationPreferences, UserProfile
from opq.store.users import Users

PASSWORD = "correct horse battery staple"
ALICE = UserProfile(
    username="alice@example.org",
    role="admin",
    first_name="Alice",
    last_name="Kahale",
    phone="808-555-0100 Verizon",
    notification_preferences=NotificationPreferences(
        text=True,
        email=False,
        max_per_day="once an hour",
        notification_types=("system service down", "new incident"),
    ),
)
BOB = UserProfile(username="bob@example.org")
NOBODY = "nobody@example.org"
# Cheap argon2 parameters keep the suite fast; the tests of the real parameters use store.users.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def users(store: Store) -> Users:
    """The users of the store, hashing with cheap parameters."""
    return Users(store.engine, hasher=FAST_HASHER)


def _stored_hash(store: Store, username: str) -> str:
    c = schema.user_credentials
    with store.engine.connect() as conn:
        return str(conn.execute(select(c.c.password_hash).where(c.c.username == username)).scalar_one())


def _add_box(store: Store, box_id: str) -> None:
    store.boxes.add(Box(box_id=box_id, name=f"box {box_id}", calibration_constant=152.5))


def test_add_then_get_returns_the_same_profile(users: Users) -> None:
    users.add(ALICE, PASSWORD)
    assert users.get(ALICE.username) == ALICE


def test_default_preferences_round_trip(users: Users) -> None:
    users.add(BOB, PASSWORD)
    assert users.get(BOB.username).notification_preferences == NotificationPreferences()


def test_list_is_sorted_and_count_counts(users: Users) -> None:
    users.add(BOB, PASSWORD)
    users.add(ALICE, PASSWORD)
    assert [p.username for p in users.list()] == [ALICE.username, BOB.username]
    assert users.count() == 2


def test_get_of_an_unknown_user_is_not_found(users: Users) -> None:
    with pytest.raises(NotFound, match=NOBODY):
        users.get(NOBODY)


def test_a_254_character_username_is_accepted(users: Users) -> None:
    username = "a" * 242 + "@example.org"
    assert len(username) == 254
    users.add(UserProfile(username=username), PASSWORD)
    assert users.get(username).username == username


@pytest.mark.parametrize(
    "username",
    [
        "",
        "alice",
        "@example.org",
        "alice@",
        "alice@home@example.org",
        "alice smith@example.org",
        " alice@example.org",
        "a" * 243 + "@example.org",
    ],
    ids=[
        "empty",
        "no-at",
        "no-local-part",
        "no-domain",
        "two-ats",
        "space",
        "leading-space",
        "255",
    ],
)
def test_a_username_that_is_no_email_address_is_refused(users: Users, username: str) -> None:
    with pytest.raises(InvalidValue, match="username"):
        users.add(UserProfile(username=username), PASSWORD)
    assert users.count() == 0


@pytest.mark.parametrize(
    ("profile", "named"),
    [
        (UserProfile(username="c@example.org", role="root"), "role"),  # type: ignore[arg-type]
        (
            UserProfile(
                username="c@example.org",
                notification_preferences=NotificationPreferences(max_per_day="always"),  # type: ignore[arg-type]
            ),
            "max_per_day",
        ),
        (
            UserProfile(
                username="c@example.org",
                notification_preferences=NotificationPreferences(notification_types=("",)),
            ),
            "notification types",
        ),
        (UserProfile(username="c@example.org", first_name="x" * 129), "first_name"),
        (UserProfile(username="c@example.org", phone="1" * 65), "phone"),
    ],
    ids=["role", "max-per-day", "empty-notification-type", "long-first-name", "long-phone"],
)
def test_an_invalid_profile_is_refused_and_nothing_is_written(
    store: Store, users: Users, profile: UserProfile, named: str
) -> None:
    with pytest.raises(InvalidValue, match=named):
        users.add(profile, PASSWORD)
    counts = store.row_counts()
    assert counts["user_profiles"] == counts["user_credentials"] == 0


def test_a_short_password_is_refused_without_being_repeated(store: Store, users: Users) -> None:
    with pytest.raises(InvalidValue, match="at least 8 characters") as raised:
        users.add(BOB, "s3cr3t!")
    assert "s3cr3t!" not in str(raised.value)
    counts = store.row_counts()
    assert counts["user_profiles"] == counts["user_credentials"] == 0


def test_a_duplicate_username_conflicts_and_keeps_the_first(store: Store, users: Users) -> None:
    users.add(ALICE, PASSWORD)
    with pytest.raises(Conflict, match=ALICE.username):
        users.add(UserProfile(username=ALICE.username), "another password")
    assert users.get(ALICE.username) == ALICE
    assert users.verify_password(ALICE.username, PASSWORD)
    assert not users.verify_password(ALICE.username, "another password")
    assert store.row_counts()["user_credentials"] == 1


def test_the_store_keeps_an_argon2id_hash_and_not_the_password(store: Store) -> None:
    store.users.add(ALICE, PASSWORD)
    stored = _stored_hash(store, ALICE.username)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    assert not PasswordHasher().check_needs_rehash(stored)
    assert store.users.verify_password(ALICE.username, PASSWORD)


def test_the_same_password_hashes_differently_for_two_users(store: Store, users: Users) -> None:
    users.add(ALICE, PASSWORD)
    users.add(BOB, PASSWORD)
    assert _stored_hash(store, ALICE.username) != _stored_hash(store, BOB.username)


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        (ALICE.username, PASSWORD, True),
        (ALICE.username, PASSWORD + "x", False),
        (ALICE.username, PASSWORD.upper(), False),
        (ALICE.username, "", False),
        (NOBODY, PASSWORD, False),
    ],
    ids=["right", "longer", "other-case", "empty", "unknown-user"],
)
def test_verify_password(users: Users, username: str, password: str, expected: bool) -> None:
    users.add(ALICE, PASSWORD)
    assert users.verify_password(username, password) is expected


def test_an_outdated_hash_is_rehashed_on_a_successful_login(store: Store, users: Users) -> None:
    users.add(ALICE, PASSWORD)
    outdated = _stored_hash(store, ALICE.username)
    assert not store.users.verify_password(ALICE.username, "wrong password")
    assert _stored_hash(store, ALICE.username) == outdated
    assert store.users.verify_password(ALICE.username, PASSWORD)
    renewed = _stored_hash(store, ALICE.username)
    assert renewed != outdated
    assert not PasswordHasher().check_needs_rehash(renewed)
    assert users.verify_password(ALICE.username, PASSWORD)


def test_set_password_replaces_the_old_one(users: Users) -> None:
    users.add(ALICE, PASSWORD)
    users.set_password(ALICE.username, "a brand new password")
    assert not users.verify_password(ALICE.username, PASSWORD)
    assert users.verify_password(ALICE.username, "a brand new password")


def test_set_password_refuses_a_short_one_and_keeps_the_old(users: Users) -> None:
    users.add(ALICE, PASSWORD)
    with pytest.raises(InvalidValue, match="at least 8"):
        users.set_password(ALICE.username, "short")
    assert users.verify_password(ALICE.username, PASSWORD)


def test_set_password_of_an_unknown_user_is_not_found(users: Users) -> None:
    with pytest.raises(NotFound, match=NOBODY):
        users.set_password(NOBODY, PASSWORD)


def test_set_role(users: Users) -> None:
    users.add(BOB, PASSWORD)
    users.set_role(BOB.username, "admin")
    assert users.get(BOB.username).role == "admin"
    with pytest.raises(InvalidValue, match="role"):
        users.set_role(BOB.username, "root")  # type: ignore[arg-type]
    assert users.get(BOB.username).role == "admin"
    with pytest.raises(NotFound):
        users.set_role(NOBODY, "user")


def test_update_profile_overwrites_everything_but_the_unseen_flag(store: Store, users: Users) -> None:
    users.add(BOB, PASSWORD)
    store.notifications.add(BOB.username, "new incident", {"summary": "sag"}, 1_000)
    changed = UserProfile(
        username=BOB.username,
        role="admin",
        first_name="Bob",
        last_name="Nakamura",
        phone="808-555-0199",
        unseen_notifications=False,
        notification_preferences=NotificationPreferences(text=True, max_per_day="never"),
    )
    users.update_profile(changed)
    assert users.get(BOB.username) == replace(changed, unseen_notifications=True)


def test_update_profile_refuses_bad_values_and_unknown_users(users: Users) -> None:
    users.add(ALICE, PASSWORD)
    with pytest.raises(InvalidValue, match="role"):
        users.update_profile(UserProfile(username=ALICE.username, role="root"))  # type: ignore[arg-type]
    assert users.get(ALICE.username) == ALICE
    with pytest.raises(NotFound):
        users.update_profile(BOB)


def test_delete_removes_credentials_ownerships_and_notifications(store: Store, users: Users) -> None:
    _add_box(store, "1000")
    users.add(ALICE, PASSWORD)
    users.add(BOB, PASSWORD)
    for user in (ALICE, BOB):
        users.add_owner(user.username, "1000")
        store.notifications.add(user.username, "new incident", {"summary": "sag"}, 1_000)
    users.delete(ALICE.username)
    with pytest.raises(NotFound):
        users.get(ALICE.username)
    assert not users.verify_password(ALICE.username, PASSWORD)
    assert users.owners_of("1000") == [BOB.username]
    assert store.notifications.count() == 1
    counts = store.row_counts()
    assert (counts["user_profiles"], counts["user_credentials"], counts["opq_boxes"]) == (1, 1, 1)
    with pytest.raises(NotFound):
        users.delete(ALICE.username)


def test_box_ownership_both_ways(store: Store, users: Users) -> None:
    for box_id in ("1001", "1000"):
        _add_box(store, box_id)
    users.add(ALICE, PASSWORD)
    users.add(BOB, PASSWORD)
    users.add_owner(BOB.username, "1000")
    users.add_owner(ALICE.username, "1001")
    users.add_owner(ALICE.username, "1000")
    users.add_owner(ALICE.username, "1000")  # Owning twice is owning once.
    assert users.boxes_owned(ALICE.username) == ["1000", "1001"]
    assert users.owners_of("1000") == [ALICE.username, BOB.username]
    users.remove_owner(ALICE.username, "1000")
    users.remove_owner(ALICE.username, "1000")
    assert users.boxes_owned(ALICE.username) == ["1001"]
    assert users.owners_of("1000") == [BOB.username]
    assert users.boxes_owned(BOB.username) == ["1000"]


@pytest.mark.parametrize(
    ("username", "box_id", "missing"),
    [(NOBODY, "1000", NOBODY), (ALICE.username, "9999", "9999")],
    ids=["unknown-user", "unknown-box"],
)
def test_ownership_of_unknown_users_or_boxes_is_not_found(
    store: Store, users: Users, username: str, box_id: str, missing: str
) -> None:
    _add_box(store, "1000")
    users.add(ALICE, PASSWORD)
    with pytest.raises(NotFound, match=missing):
        users.add_owner(username, box_id)
    with pytest.raises(NotFound, match=missing):
        users.remove_owner(username, box_id)
    assert store.row_counts()["box_owners"] == 0


def test_reading_ownership_of_unknown_users_or_boxes_is_not_found(users: Users) -> None:
    with pytest.raises(NotFound, match=NOBODY):
        users.boxes_owned(NOBODY)
    with pytest.raises(NotFound, match="9999"):
        users.owners_of("9999")


def test_passwords_never_appear_in_errors_or_logs(users: Users, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    users.add(ALICE, PASSWORD)
    attempts: list[Callable[[], None]] = [
        lambda: users.add(ALICE, PASSWORD),
        lambda: users.add(BOB, PASSWORD[:7]),
        lambda: users.set_password(ALICE.username, PASSWORD[:7]),
        lambda: users.set_password(NOBODY, PASSWORD),
    ]
    for attempt in attempts:
        with pytest.raises(StorageError) as raised:
            attempt()
        errors.append(raised.value)
    users.verify_password(ALICE.username, PASSWORD)
    users.verify_password(ALICE.username, "wrong password")
    users.set_password(ALICE.username, PASSWORD + "!")
    texts = [record.getMessage() for record in caplog.records]
    for error in errors:
        cause: BaseException | None = error
        while cause is not None:
            texts.append(str(cause))
            cause = cause.__cause__ or cause.__context__
    assert texts
    for text in texts:
        assert PASSWORD[:7] not in text
