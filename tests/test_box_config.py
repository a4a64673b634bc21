"""A box's TOML configuration: defaults, key files, and errors that name the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from opq.box.config import BoxConfig, load_box_config
from opq.errors import ConfigError
from opq.protocol import KeyPair, generate_keypair, write_certificate


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyPair, KeyPair]:
    box, server = generate_keypair(), generate_keypair()
    write_certificate(tmp_path, "box7", box)
    write_certificate(tmp_path, "server", server)
    return box, server


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "box.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_minimal_configuration_gets_the_defaults(tmp_path: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    box, server = keys
    text = 'box_id = "7"\nbox_certificate = "box7.key_secret"\nserver_certificate = "server.key"\n'
    config = load_box_config(write(tmp_path, text))
    assert config.box_certificate == tmp_path / "box7.key_secret"  # relative to the file
    assert config.box_keys() == box
    assert config.server_key() == server.public
    assert (config.measurement_port, config.command_port, config.response_port) == (9880, 8194, 8196)
    assert config.endpoint(config.measurement_port) == "tcp://127.0.0.1:9880"
    assert (config.calibration_constant, config.cycles_per_measurement) == (152.5, 10)
    assert (config.buffer_seconds, config.queue_seconds, config.realtime) == (3600, 600, True)


def test_a_server_key_can_be_given_inline(tmp_path: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    _, server = keys
    text = f'box_id = "7"\nbox_certificate = "box7.key_secret"\nserver_public_key = "{server.public}"\n'
    text += 'cloud_host = "::1"\n'
    config = load_box_config(write(tmp_path, text))
    assert config.server_key() == server.public
    assert config.endpoint(8194) == "tcp://[::1]:8194"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('box_id = "0007"', "box_id = '0007'", id="leading zeros"),
        pytest.param("box_id = 7", "box_id = 7", id="not a string"),
        pytest.param("cycles_per_measurement = 0", "cycles_per_measurement = 0", id="rate 0"),
        pytest.param("cycles_per_measurement = 3601", "cycles_per_measurement = 3601", id="rate too slow"),
        pytest.param("calibration_constant = -1.0", "calibration_constant = -1.0", id="negative calibration"),
        pytest.param("measurement_port = 70000", "measurement_port = 70000", id="port out of range"),
        pytest.param("buffer_seconds = 0", "buffer_seconds = 0", id="empty buffer"),
        pytest.param("windows_per_measurements = 60", "windows_per_measurements = 60", id="unknown key"),
        pytest.param('server_public_key = "short"', "server_public_key = 'short'", id="bad public key"),
    ],
)
def test_a_bad_value_is_named_with_its_key(
    tmp_path: Path, keys: tuple[KeyPair, KeyPair], line: str, message: str
) -> None:
    lines = {"box_id": 'box_id = "7"', "box_certificate": 'box_certificate = "box7.key_secret"'}
    key = line.split(" = ")[0]
    lines[key] = line
    if key != "server_public_key":
        lines["server_certificate"] = 'server_certificate = "server.key"'
    with pytest.raises(ConfigError) as caught:
        load_box_config(write(tmp_path, "\n".join(lines.values()) + "\n"))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "extra",
    ["", f'server_public_key = "{"x" * 40}"\nserver_certificate = "server.key"\n'],
    ids=["neither", "both"],
)
def test_exactly_one_server_key_source(tmp_path: Path, keys: tuple[KeyPair, KeyPair], extra: str) -> None:
    text = 'box_id = "7"\nbox_certificate = "box7.key_secret"\n' + extra
    with pytest.raises(ConfigError, match="exactly one of server_public_key and server_certificate"):
        load_box_config(write(tmp_path, text))


def test_missing_and_public_only_box_certificates_are_refused(
    tmp_path: Path, keys: tuple[KeyPair, KeyPair]
) -> None:
    text = 'box_id = "7"\nbox_certificate = "{}"\nserver_certificate = "server.key"\n'
    with pytest.raises(ConfigError, match="cannot read certificate"):
        load_box_config(write(tmp_path, text.format("nowhere.key_secret")))
    with pytest.raises(ConfigError, match="has no secret-key"):
        load_box_config(write(tmp_path, text.format("box7.key")))


def test_missing_keys_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="box_id missing"):
        load_box_config(write(tmp_path, 'server_public_key = "x"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_box_config(write(tmp_path, "box_id = \n"))
    with pytest.raises(ConfigError, match="cannot read box configuration"):
        load_box_config(tmp_path / "absent.toml")


def test_the_model_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        BoxConfig.model_validate({"box_id": "1", "box_certificate": "x", "server_public_key": "y", "zz": 1})
