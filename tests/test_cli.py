"""The `opq` command, driven as a user would: output, JSON for scripts, exit codes, error lines."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opq.cli.context import parse_time_ms
from opq.cli.main import app
from opq.errors import InvalidValue

PASSWORD = "correct horse battery"
# A Z85 public key as CZMQ writes it into a zcert file.
PUBLIC_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
OPQ = str(Path(sys.executable).parent / "opq")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No opq.toml, no OPQ_* variables from outside; logging as it was before the test."""
    for name in [name for name in os.environ if name.startswith("OPQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def opq(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input, env=env)


def ok(*args: str, input: str | None = None) -> Result:
    result = opq(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def listed(db_url: str, *command: str) -> Any:
    return json.loads(ok(*command, "list", "--json", "--db", db_url).stdout)


def fails(code: int, *args: str, input: str | None = None) -> str:
    """Run a command that must fail with `code`; its one stderr line, without a traceback."""
    result = opq(*args, input=input)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def add_location(db_url: str, slug: str, longitude: str = "-157.816", latitude: str = "21.297") -> None:
    ok("locations", "add", slug, "--longitude", longitude, "--latitude", latitude,
       "--description", f"the {slug} building", "--db", db_url)  # fmt: skip


# db


def test_init_creates_the_schema_once_then_check_passes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    assert "created the opq schema" in ok("db", "init", "--db", url).stdout
    assert "nothing to do" in ok("db", "init", "--db", url).stdout
    assert "(unchanged)" in ok("db", "upgrade", "--db", url).stdout
    checked = ok("db", "check", "--db", url).stdout
    assert "sqlite" in checked and checked.strip().endswith("ok")


def test_default_database_is_opq_sqlite3_in_the_current_directory(tmp_path: Path) -> None:
    ok("db", "init")
    assert (tmp_path / "opq.sqlite3").is_file()
    assert listed("sqlite:///opq.sqlite3", "locations") == []


def test_uninitialized_database_says_to_run_db_init(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.sqlite3").close()
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    assert "opq db init" in fails(1, "locations", "list", "--db", url)
    assert "opq db init" in fails(1, "db", "check", "--db", url)


def test_missing_sqlite_file_says_to_run_db_init_and_is_not_created(tmp_path: Path) -> None:
    assert "opq db init" in fails(1, "boxes", "list")
    assert not (tmp_path / "opq.sqlite3").exists()


def test_stats_and_prune(db_url: str) -> None:
    add_location(db_url, "uh-post")
    counts = json.loads(ok("db", "stats", "--json", "--db", db_url).stdout)
    assert counts["locations"] == 1 and counts["opq_boxes"] == 0
    assert "locations" in ok("db", "stats", "--db", db_url).stdout
    deleted = json.loads(ok("db", "prune", "--json", "--db", db_url).stdout)
    assert all(isinstance(n, int) and n == 0 for n in deleted.values()), deleted
    assert "Rows deleted" in ok("db", "prune", "--db", db_url).stdout


# locations and regions


def test_locations_add_and_list(db_url: str) -> None:
    add_location(db_url, "uh-post", "-157.816", "21.297")
    add_location(db_url, "kcc", "-157.80", "21.27")
    assert listed(db_url, "locations") == [
        {"slug": "kcc", "longitude": -157.8, "latitude": 21.27, "description": "the kcc building"},
        {"slug": "uh-post", "longitude": -157.816, "latitude": 21.297,
         "description": "the uh-post building"},
    ]  # fmt: skip
    table = ok("locations", "list", "--db", db_url).stdout
    assert "uh-post" in table and "-157.816" in table


def test_duplicate_slug_names_the_slug(db_url: str) -> None:
    add_location(db_url, "uh-post")
    line = fails(2, "locations", "add", "uh-post", "--longitude", "0", "--latitude", "0",
                 "--description", "elsewhere", "--db", db_url)  # fmt: skip
    assert line == "error: slug 'uh-post' is already taken by a location"
    assert "already taken" in fails(2, "regions", "add", "uh-post", "--db", db_url)


@pytest.mark.parametrize(
    ("longitude", "latitude", "named"),
    [("200", "21", "longitude 200.0"), ("-157", "-91.5", "latitude -91.5")],
    ids=["longitude", "latitude"],
)
def test_out_of_range_coordinates_name_the_value(
    db_url: str, longitude: str, latitude: str, named: str
) -> None:
    line = fails(2, "locations", "add", "far", "--longitude", longitude, "--latitude", latitude,
                 "--description", "far away", "--db", db_url)  # fmt: skip
    assert named in line
    assert listed(db_url, "locations") == []


def test_region_of_locations_and_a_region(db_url: str) -> None:
    for slug in ("uh-post", "kcc", "hnl"):
        add_location(db_url, slug, latitude=str(21 + len(slug) / 10))
    ok("regions", "add", "96822", "--location", "uh-post", "--db", db_url)
    ok("regions", "add", "hawaii", "--location", "kcc", "--region", "96822", "--db", db_url)
    included = ok("regions", "include", "hawaii", "--location", "hnl", "--db", db_url).stdout
    assert "hnl" in included
    assert listed(db_url, "regions") == [
        {"slug": "96822", "locations": ["uh-post"], "regions": [], "all_locations": ["uh-post"]},
        {"slug": "hawaii", "locations": ["hnl", "kcc"], "regions": ["96822"],
         "all_locations": ["hnl", "kcc", "uh-post"]},
    ]  # fmt: skip
    assert "contain each other" in fails(
        2, "regions", "include", "96822", "--region", "hawaii", "--db", db_url
    )
    assert "--location or --region" in fails(2, "regions", "include", "hawaii", "--db", db_url)


def test_region_with_an_unknown_location_creates_nothing(db_url: str) -> None:
    add_location(db_url, "uh-post")
    line = fails(2, "regions", "add", "hawaii", "--location", "uh-post", "--location", "nowhere",
                 "--db", db_url)  # fmt: skip
    assert "'nowhere'" in line
    assert listed(db_url, "regions") == []
    ok("regions", "add", "hawaii", "--location", "uh-post", "--db", db_url)


# boxes


def test_box_add_move_list_keeps_the_history(db_url: str) -> None:
    add_location(db_url, "uh-post")
    add_location(db_url, "kcc", latitude="21.27")
    ok("boxes", "add", "--box-id", "1", "--name", "Box 1", "--location", "uh-post",
       "--at", "2026-11-01T00:00:00Z", "--db", db_url)  # fmt: skip
    ok("boxes", "move", "1", "kcc", "--at", "2026-11-22T10:00:00Z", "--db", db_url)
    [box] = listed(db_url, "boxes")
    assert box["location"] == "kcc" and box["calibration_constant"] == 152.5
    assert box["location_archive"] == [
        {"location": "uh-post", "location_start_time_ms": parse_time_ms("2026-11-01T00:00:00Z")},
        {"location": "kcc", "location_start_time_ms": parse_time_ms("2026-11-22T10:00:00Z")},
    ]
    assert "must come after" in fails(2, "boxes", "move", "1", "uh-post", "--at", "1000", "--db", db_url)
    assert "'yesterday'" in fails(2, "boxes", "move", "1", "uh-post", "--at", "yesterday",
                                  "--db", db_url)  # fmt: skip
    table = ok("boxes", "list", "--db", db_url).stdout
    assert "kcc" in table and "uh-post" in table and "2026-11-22 10:00" in table


def test_set_unplugged_and_plugged_again(db_url: str) -> None:
    ok("boxes", "add", "--box-id", "1", "--db", db_url)
    ok("boxes", "set-unplugged", "1", "--db", db_url)
    assert listed(db_url, "boxes")[0]["unplugged"] is True
    ok("boxes", "set-unplugged", "1", "--plugged", "--db", db_url)
    assert listed(db_url, "boxes")[0]["unplugged"] is False
    assert "no box '2'" in fails(2, "boxes", "set-unplugged", "2", "--db", db_url)


def test_box_at_an_unknown_location_is_not_added(db_url: str) -> None:
    assert "'nowhere'" in fails(2, "boxes", "add", "--box-id", "1", "--location", "nowhere",
                                "--db", db_url)  # fmt: skip
    assert listed(db_url, "boxes") == []


def test_box_key_from_a_zcert_file(db_url: str, tmp_path: Path) -> None:
    cert = tmp_path / "box1.key"
    cert.write_text(
        f'#   ZeroMQ CURVE Public Certificate\n\nmetadata\ncurve\n    public-key = "{PUBLIC_KEY}"\n'
    )
    ok("boxes", "add", "--box-id", "1", "--calibration", "150", "--public-key-file", str(cert),
       "--db", db_url)  # fmt: skip
    [box] = listed(db_url, "boxes")
    assert box["public_key"] == PUBLIC_KEY and box["calibration_constant"] == 150.0
    assert "not both" in fails(2, "boxes", "add", "--box-id", "2", "--public-key", PUBLIC_KEY,
                               "--public-key-file", str(cert), "--db", db_url)  # fmt: skip
    (tmp_path / "empty.key").write_text("curve\n")
    assert "public-key" in fails(2, "boxes", "add", "--box-id", "2", "--public-key-file",
                                 str(tmp_path / "empty.key"), "--db", db_url)  # fmt: skip


# users


def test_users_add_from_stdin_and_list(db_url: str) -> None:
    added = opq("users", "add", "ada@example.org", "--admin", "--first-name", "Ada",
                "--last-name", "Lovelace", "--password-stdin", "--db", db_url,
                input=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    ok("users", "add", "bob@example.org", "--password-stdin", "--db", db_url, input=PASSWORD)
    listing = ok("users", "list", "--db", db_url)
    users = listed(db_url, "users")
    assert [(u["username"], u["role"], u["last_name"]) for u in users] == [
        ("ada@example.org", "admin", "Lovelace"),
        ("bob@example.org", "user", ""),
    ]
    assert PASSWORD not in added.output + listing.output + json.dumps(users)
    assert "already" in fails(2, "users", "add", "bob@example.org", "--password-stdin",
                              "--db", db_url, input=PASSWORD)  # fmt: skip


def test_password_prompt_asks_twice_and_hides_it(db_url: str) -> None:
    result = opq("users", "add", "eve@example.org", "--db", db_url, input=f"{PASSWORD}\n" * 2)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert listed(db_url, "users")[0]["username"] == "eve@example.org"


# settings, URLs, logging


def test_unreachable_database_exits_1_without_the_password() -> None:
    url = "postgresql://u:secret@127.0.0.1:1/x"
    done = subprocess.run([OPQ, "db", "stats", "--db", url], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach database") and "127.0.0.1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "secret" not in done.stdout + done.stderr


def test_bad_input_exits_2_end_to_end(tmp_path: Path) -> None:
    ok("db", "init")
    add = [
        OPQ,
        "locations",
        "add",
        "x",
        "--longitude",
        "1",
        "--latitude",
        "2",
        "--description",
        "x",
    ]
    assert subprocess.run(add, capture_output=True, check=False, cwd=tmp_path).returncode == 0
    done = subprocess.run(add, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "error: slug 'x' is already taken by a location\n")


@pytest.mark.parametrize("url", ["not a url", "mysql://a:b@h/d", "sqlite://"])
def test_malformed_database_url(url: str) -> None:
    line = fails(2, "locations", "list", "--db", url)
    assert "--db" in line and "database URL" in line


def test_bad_environment_value_names_the_key() -> None:
    result = opq("db", "stats", env={"OPQ_LOG_LEVEL": "LOUD"})
    assert result.exit_code == 2
    assert "OPQ_LOG_LEVEL" in result.stderr and "'LOUD'" in result.stderr
    assert "Traceback" not in result.output


def test_config_file_and_flags(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('db_url = "sqlite:///site.sqlite3"\n')
    ok("--config", "site.toml", "db", "init")
    assert (tmp_path / "site.sqlite3").is_file()
    (tmp_path / "opq.toml").write_text('db_url = "sqlite:///default.sqlite3"\n')
    ok("db", "init")
    assert (tmp_path / "default.sqlite3").is_file()
    assert "does not exist" in fails(2, "--config", "nope.toml", "db", "check")


def test_json_log_lines_on_stderr(db_url: str) -> None:
    result = opq("--log-level", "DEBUG", "--log-format", "json", "db", "stats", "--json",
                 "--db", db_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "opq.cli.context" for r in records)
    failed = opq("--log-level", "DEBUG", "--log-format", "json", "boxes", "move", "1", "x",
                 "--db", db_url)  # fmt: skip
    assert failed.exit_code == 2
    *logged, last = failed.stderr.strip().splitlines()
    assert last == "error: no box '1'"
    assert any("NotFound" in json.loads(line).get("exception", "") for line in logged)


def test_time_parsing() -> None:
    assert parse_time_ms("2026-11-22T10:00:00Z") == 1_795_341_600_000
    assert parse_time_ms("2026-11-22T10:00:00") == 1_795_341_600_000
    assert parse_time_ms("2026-11-22T00:00:00-10:00") == 1_795_341_600_000
    assert parse_time_ms("1795341600000") == 1_795_341_600_000
    with pytest.raises(InvalidValue, match="ISO 8601"):
        parse_time_ms("tomorrow")
