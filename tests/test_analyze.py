"""`opq analyze`: a recording through box metrics, triggering, capture and every plugin, offline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from opq.app.offline import analyze_recording
from opq.box.replay import RecordingSource
from opq.cli.main import app
from opq.mauka.plugin import Finding, Waveform

RATE_HZ = 12_000


def recording(path: Path, seconds: float = 6.0, sag: tuple[float, float, float] | None = None) -> Path:
    """A 120 V, 60 Hz CSV recording with 0.4 V rms noise; sag = (start s, length s, residual pu)."""
    t = np.arange(0, seconds, 1 / RATE_HZ)
    v = 120 * np.sqrt(2) * np.sin(2 * np.pi * 60 * t)
    if sag is not None:
        start, length, residual = sag
        v[(t >= start) & (t < start + length)] *= residual
    v += np.random.default_rng(7).normal(0, 0.4, len(t))
    np.savetxt(path, np.column_stack([t, v]), delimiter=",", header="t,va", comments="", fmt="%.6f")
    return path


def frequency_step_recording(path: Path, step_hz: float = 0.2) -> Path:
    """A 10-s 120 V recording at 60 Hz, at 60 + step_hz from 2 s to 7 s (inside Makai's ±0.3 Hz band)."""
    t = np.arange(0, 10.0, 1 / RATE_HZ)
    frequency = np.where((t >= 2.0) & (t < 7.0), 60.0 + step_hz, 60.0)
    phase = 2 * np.pi * np.cumsum(frequency) / RATE_HZ
    v = 120 * np.sqrt(2) * np.sin(phase) + np.random.default_rng(7).normal(0, 0.4, len(t))
    np.savetxt(path, np.column_stack([t, v]), delimiter=",", header="t,va", comments="", fmt="%.6f")
    return path


def run(*args: str, config: Path | None = None) -> dict[str, object]:
    options = [] if config is None else ["--config", str(config)]
    result = CliRunner().invoke(app, [*options, "analyze", *args, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_a_recorded_sag_is_classified_with_its_duration(tmp_path: Path) -> None:
    out = run(str(recording(tmp_path / "sag.csv", sag=(2.0, 0.2, 0.5))))
    incidents = out["incidents"]
    assert isinstance(incidents, list)
    classes = {c for incident in incidents for c in incident["classifications"]}
    assert {"VOLTAGE_SAG", "SEMI_F47_VIOLATION", "ITIC_NO_DAMAGE"} <= classes
    sag = next(i for i in incidents if "VOLTAGE_SAG" in i["classifications"])
    assert sag["ieee_duration"] == "INSTANTANEOUS"
    assert abs(sag["start_ms"] - 2_000) <= 17 and abs(sag["end_ms"] - 2_200) <= 17
    assert abs(sag["deviation_from_nominal"] + 60) < 1
    assert len(out["captures"]) == 1  # type: ignore[arg-type]


def test_a_clean_recording_gives_no_capture_and_no_incident(tmp_path: Path) -> None:
    out = run(str(recording(tmp_path / "clean.csv")))
    assert out["captures"] == [] and out["incidents"] == []
    assert out["measurements"] == 36  # six a second


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "nothing.csv")])
    assert result.exit_code == 2
    assert "nothing.csv" in result.output


class Broken:
    name = "broken"

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        raise RuntimeError("bug")


class EveryCapture:
    name = "every_capture"

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        end = waveform.time_ms(len(waveform.samples_v))
        return [Finding(waveform.box_id, int(waveform.start_ms), int(end), "VOLTAGE", ("VOLTAGE_SAG",))]


def test_a_failing_plugin_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    source = RecordingSource.from_file(recording(tmp_path / "sag.csv", sag=(2.0, 0.5, 0.3)), start_ms=0)
    result = analyze_recording(source, [Broken(), EveryCapture()])
    assert len(result.captures) == 1
    capture = result.captures[0]
    assert capture.failures == ("broken: bug",)
    assert len(capture.findings) == 1
    # The capture spans the sag with the pre- and post-trigger margins (0.5 s each by default).
    finding = capture.findings[0]
    assert finding.start_ms <= 2_000 - 400 and finding.end_ms >= 2_500 + 400


def test_a_sustained_undervoltage_captured_in_pieces_is_one_sustained_incident(tmp_path: Path) -> None:
    path = recording(tmp_path / "long.csv", seconds=75.0, sag=(2.0, 70.0, 0.85))
    out = run(str(path))
    voltage = [i for i in out["incidents"] if "UNDERVOLTAGE" in i["classifications"]]  # type: ignore[union-attr]
    assert len(voltage) == 1
    assert voltage[0]["ieee_duration"] == "SUSTAINED"
    assert abs(voltage[0]["end_ms"] - voltage[0]["start_ms"] - 70_000) <= 17
    assert len(out["captures"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "swells"),
    [
        ("", 1),
        ("[mauka]\nfrequency_from_measurements = false\n", 0),
        ("[mauka.plugins.frequency_variation]\nswell_hz = 60.25\n", 0),
        ("[mauka.plugins.frequency_variation]\nswell_hz = 60.15\n", 1),
    ],
    ids=["defaults", "switched-off", "limit-above-the-step", "limit-below-the-step"],
)
def test_the_measurements_frequency_follows_maukas_settings(
    tmp_path: Path, settings: str, swells: int
) -> None:
    # A +0.2 Hz step never leaves Makai's band, so only the measurements can find it: with the
    # frequency_variation plugin's limits and Mauka's switch, as the running service would.
    config = tmp_path / "opq.toml"
    config.write_text(settings)
    out = run(str(frequency_step_recording(tmp_path / "step.csv")), config=config)
    assert out["captures"] == []
    found = [i for i in out["incidents"] if "FREQUENCY_SWELL" in i["classifications"]]  # type: ignore[union-attr]
    assert len(found) == swells
