"""`opq keys generate` and `opq box run|replay`, driven through a root command like `opq`'s."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from opq.cli import box, keys
from opq.cli.main import OpqGroup
from opq.protocol import generate_keypair, read_certificate, write_certificate

root = typer.Typer(cls=OpqGroup)
root.add_typer(box.app, name="box")
root.add_typer(keys.app, name="keys")


def opq(*args: str) -> Result:
    return CliRunner().invoke(root, list(args))


@pytest.fixture
def box_toml(tmp_path: Path) -> Path:
    write_certificate(tmp_path, "box7", generate_keypair())
    path = tmp_path / "box.toml"
    path.write_text(
        'box_id = "7"\nbox_certificate = "box7.key_secret"\n'
        f'server_public_key = "{generate_keypair().public}"\n'
        # Nothing listens on port 9 (discard): the box queues everything it measures.
        "measurement_port = 9\ncommand_port = 9\nresponse_port = 9\nbuffer_seconds = 10\n",
        encoding="utf-8",
    )
    return path


def test_keys_generate_writes_a_pair_and_prints_the_public_key(tmp_path: Path) -> None:
    result = opq("keys", "generate", "box7", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    public = result.stdout.strip()
    assert len(public) == 40
    assert read_certificate(tmp_path / "box7.key").public == public
    assert read_certificate(tmp_path / "box7.key_secret").secret is not None

    refused = opq("keys", "generate", "box7", "--dir", str(tmp_path))
    assert refused.exit_code == 2
    assert "already exists" in refused.stderr
    replaced = opq("keys", "generate", "box7", "--dir", str(tmp_path), "--overwrite")
    assert replaced.exit_code == 0
    assert replaced.stdout.strip() != public


def test_box_run_simulates_a_clean_supply_until_its_duration(box_toml: Path) -> None:
    result = opq("box", "run", "--config", str(box_toml), "--duration", "0.6")
    assert result.exit_code == 0, result.output
    summary = re.fullmatch(
        r"box 7: (\d+) cycles, (\d+) measurements \(0 sent, (\d+) unsent, 0 dropped\).*",
        result.stdout.strip(),
    )
    assert summary is not None, result.stdout
    cycles, built, unsent = map(int, summary.groups())
    assert 20 <= cycles <= 60  # paced to the clock: 60 cycles a second
    assert built == unsent >= 2


def test_box_run_takes_a_scenario_or_a_device_not_both(box_toml: Path, tmp_path: Path) -> None:
    result = opq("box", "run", "--config", str(box_toml), "--scenario", "a.toml", "--device", "/dev/opq0")
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_box_run_names_a_bad_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('box_id = "1"\ncycles_per_measurement = 0\n', encoding="utf-8")
    result = opq("box", "run", "--config", str(bad))
    assert result.exit_code == 2
    assert "cycles_per_measurement = 0" in result.stderr


def test_box_replay_measures_a_recording(box_toml: Path, tmp_path: Path) -> None:
    recording = tmp_path / "sine.csv"
    t_s = np.arange(2400) / 4800  # 0.5 s at 4.8 kS/s
    rows = "\n".join(f"{v:.4f}" for v in 170 * np.sin(2 * np.pi * 60 * t_s))
    recording.write_text("v\n" + rows + "\n", encoding="utf-8")
    box_toml.write_text(box_toml.read_text() + "realtime = false\n", encoding="utf-8")
    result = opq(
        "box",
        "replay",
        str(recording),
        "--config",
        str(box_toml),
        "--sample-rate",
        "4800",
        "--duration",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("box 7: 30 cycles, 3 measurements (0 sent, 3 unsent")
