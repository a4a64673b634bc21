"""Settings: defaults, then opq.toml, then OPQ_* variables; a bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from opq.config import load_settings
from opq.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPQ_DB_URL", "OPQ_LOG_LEVEL", "OPQ_RETENTION__MEASUREMENTS_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.db_url == "sqlite:///opq.sqlite3"
    assert settings.retention.measurements_s == 86_400
    assert settings.retention.notifications_s == 7 * 86_400
    assert settings.retention.trends_s is None


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "site.toml"
    toml.write_text('db_url = "sqlite:///site.db"\n[retention]\nmeasurements_s = 3600\n')
    assert load_settings(toml).retention.measurements_s == 3600
    monkeypatch.setenv("OPQ_RETENTION__MEASUREMENTS_S", "60")
    settings = load_settings(toml)
    assert settings.retention.measurements_s == 60
    assert settings.db_url == "sqlite:///site.db"


def test_opq_toml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "opq.toml").write_text('log_level = "DEBUG"\n')
    assert load_settings().log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OPQ_LOG_LEVEL", "LOUD", "log_level (env OPQ_LOG_LEVEL) = 'LOUD'"),
        ("OPQ_RETENTION__MEASUREMENTS_S", "-1", "retention.measurements_s"),
        ("OPQ_RETENTION__MEASUREMENTS_S", "soon", "'soon'"),
    ],
)
def test_bad_environment_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_unknown_and_malformed_file_content(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("db_urll = 'x'\n")
    with pytest.raises(ConfigError, match="db_urll"):
        load_settings(toml)
    toml.write_text("db_url = \n")
    with pytest.raises(ConfigError, match="cannot read settings"):
        load_settings(toml)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
