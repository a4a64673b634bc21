"""Replaying CSV and COMTRADE recordings as 12 kS/s box cycles: resampling, frequency, counts, errors."""

from __future__ import annotations

import datetime as dt
import logging
import math
import struct
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from opq.box.recordings import Recording, read_recording
from opq.box.replay import RecordingSource, cycle_timestamp_ms, resample_to_box_rate
from opq.box.source import SampleSource
from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, frequency_hz, rms_per_cycle
from opq.errors import ConfigError

VRMS_V = 120.0
START_MS = 1_700_000_000_000


def sine_v(
    rate_hz: float, seconds: float, frequency: float = 60.0, vrms_v: float = VRMS_V
) -> npt.NDArray[np.float64]:
    """A sine [V] sampled at `rate_hz` for `seconds`."""
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    return vrms_v * math.sqrt(2) * np.sin(2 * np.pi * frequency * t + 0.4)


def write_csv(path: Path, header: Sequence[str], columns: Sequence[npt.ArrayLike]) -> Path:
    rows = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    lines = [",".join(header)] + [",".join(f"{v:.9g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_comtrade(
    cfg_path: Path,
    channels: Sequence[tuple[str, str, npt.NDArray[np.float64]]],
    *,
    rate_hz: float,
    fmt: str,
    line_frequency_hz: float = 60.0,
    start: str = "15/03/2024,12:00:00.250000",
    rev: str = "1999",
    time_code: str = "0",
    pors: tuple[float, float, str] = (1.0, 1.0, "P"),
) -> Path:
    """A COMTRADE .cfg + .dat (IEEE C37.111-1999 / 2013) of analog channels (name, unit, values).

    Values are stored as integers with a = 0.01 (ASCII, BINARY) or as floats with a = 1 (FLOAT32).
    """
    n = len(channels[0][2])
    a = 1.0 if fmt == "FLOAT32" else 0.01
    primary, secondary, ps = pors
    lines = [f"test station,opq-test,{rev}", f"{len(channels)},{len(channels)}A,0D"]
    for i, (name, unit, _) in enumerate(channels, start=1):
        lines.append(f"{i},{name},A,,{unit},{a},0,0,-32767,32767,{primary},{secondary},{ps}")
    lines += [f"{line_frequency_hz:g}", "1", f"{rate_hz:g},{n}", start, start, fmt, "1"]
    if rev == "2013":
        lines += [f"{time_code},{time_code}", "0,0"]
    cfg_path.write_text("\r\n".join(lines) + "\r\n")

    numbers = np.arange(1, n + 1)
    times_us = np.round((numbers - 1) * 1e6 / rate_hz).astype(np.int64)
    values = np.column_stack([v for _, _, v in channels]) / a
    dat_path = cfg_path.with_suffix(".dat")
    if fmt == "ASCII":
        rows = (
            ",".join([str(k), str(t), *(str(int(x)) for x in np.rint(row))])
            for k, t, row in zip(numbers, times_us, values, strict=True)
        )
        dat_path.write_text("\r\n".join(rows) + "\r\n")
    else:
        code = "h" if fmt == "BINARY" else "f"
        row_format = struct.Struct(f"<II{len(channels)}{code}")
        raw = np.rint(values) if fmt == "BINARY" else values
        dat_path.write_bytes(
            b"".join(
                row_format.pack(int(k), int(t), *(x.item() if code == "f" else int(x) for x in row))
                for k, t, row in zip(numbers, times_us, raw, strict=True)
            )
        )
    return cfg_path


def volts(source: RecordingSource) -> npt.NDArray[np.float64]:
    counts = np.concatenate([c.counts for c in source.cycles()])
    return counts / source.calibration_constant


# --- CSV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", [6000, 15360], ids=["6kHz", "15.36kHz"])
@pytest.mark.parametrize("rate_from", ["argument", "time column"])
def test_csv_sine_keeps_rms_and_frequency(tmp_path: Path, rate_hz: int, rate_from: str) -> None:
    samples = sine_v(rate_hz, 1.0)
    if rate_from == "argument":
        path = write_csv(tmp_path / "sine.csv", ["va"], [samples])
        source = RecordingSource.from_file(path, sample_rate_hz=rate_hz, start_ms=START_MS)
    else:
        times = np.arange(len(samples)) / rate_hz
        path = write_csv(tmp_path / "sine.csv", ["Time (s)", "va"], [times, samples])
        source = RecordingSource.from_file(path, start_ms=START_MS)

    assert source.recording.sample_rate_hz == pytest.approx(rate_hz, rel=1e-6)
    assert source.cycle_count == SAMPLE_RATE_HZ // SAMPLES_PER_CYCLE
    v = volts(source)
    # The resampling filter is transient over the first and last cycle.
    assert rms_per_cycle(v)[1:-1] == pytest.approx(VRMS_V, rel=1e-3)
    assert source.frequency_hz == pytest.approx(60.0, abs=0.01)
    assert source.warnings == ()


def test_csv_channel_by_name_and_index(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "two.csv", ["t", "va", "vb"], [np.arange(400) / 12000, np.ones(400), -np.ones(400)]
    )
    assert read_recording(path).channel == "va"
    assert read_recording(path, channel="VB").channel == "vb"
    recording = read_recording(path, channel=1)
    assert recording.channel == "vb"
    assert recording.samples_v[0] == -1.0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("va\n1.0\n2.0\nabc\n3.0\n", "line 4, column 1 ('va')"),
        ("t,va\n0,1\n0.001,nan\n", "line 3, column 2 ('va')"),
        ("t,va\n0,1\n0.001\n", "line 3, column 2 ('va')"),
    ],
    ids=["not a number", "nan", "missing cell"],
)
def test_csv_bad_cell_names_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.csv: " + where.replace("(", r"\(").replace(")", r"\)")):
        read_recording(path, sample_rate_hz=1000)


def test_csv_non_uniform_time_steps(tmp_path: Path) -> None:
    times = np.arange(300) / 12000
    times[150:] += 1 / 12000  # a dropped sample
    path = write_csv(tmp_path / "gap.csv", ["time_s", "va"], [times, np.zeros(300)])
    with pytest.raises(ConfigError, match=r"gap\.csv.*non-uniform time steps: from sample 150 to 151"):
        read_recording(path)


def test_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("0.0,1.0\n0.1,2.0\n")
    with pytest.raises(ConfigError, match="expected a header"):
        read_recording(path, sample_rate_hz=10)


# --- COMTRADE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate_hz"),
    [("ASCII", 15360), ("BINARY", 7680), ("FLOAT32", 4800)],
    ids=["ASCII", "BINARY", "FLOAT32"],
)
def test_comtrade_frequency_estimated_not_trusted(
    tmp_path: Path, fmt: str, rate_hz: int, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_comtrade(
        tmp_path / "rec.cfg", [("VA", "V", sine_v(rate_hz, 1.0, 59.5))], rate_hz=rate_hz, fmt=fmt, rev="2013"
    )
    with caplog.at_level(logging.WARNING):
        source = RecordingSource.from_file(cfg)

    assert source.recording.nominal_frequency_hz == 60.0
    assert source.frequency_hz == pytest.approx(59.5, abs=0.01)
    assert len(source.warnings) == 1
    assert "59.500 Hz, the header says 60 Hz" in source.warnings[0]
    assert source.warnings[0] in caplog.messages
    # Off 60 Hz a 200-sample block is not a whole period: its RMS wanders by ±0.42 % at 59.5 Hz.
    assert rms_per_cycle(volts(source))[1:-1] == pytest.approx(VRMS_V, rel=5e-3)


def test_comtrade_start_time_and_cycle_timestamps(tmp_path: Path) -> None:
    cfg = write_comtrade(tmp_path / "rec.cfg", [("VA", "V", sine_v(12000, 0.1))], rate_hz=12000, fmt="BINARY")
    source = RecordingSource.from_file(cfg, start_ms=1)  # the recording's own start wins
    start_ms = int(dt.datetime(2024, 3, 15, 12, 0, 0, 250000, tzinfo=dt.UTC).timestamp() * 1000)
    stamps = [c.timestamp_ms for c in source.cycles()]
    assert stamps[:4] == [start_ms, start_ms + 17, start_ms + 33, start_ms + 50]
    assert stamps[-1] == start_ms + round((len(stamps) - 1) * 50 / 3)


def test_comtrade_2013_time_code_is_offset_from_utc(tmp_path: Path) -> None:
    cfg = write_comtrade(
        tmp_path / "rec.cfg",
        [("VA", "V", sine_v(12000, 0.05))],
        rate_hz=12000,
        fmt="ASCII",
        rev="2013",
        time_code="-5",
        start="15/03/2024,07:00:00.000000",
    )
    expected = dt.datetime(2024, 3, 15, 12, tzinfo=dt.UTC).timestamp() * 1e6
    assert read_recording(cfg).start_us == expected


def test_comtrade_channel_selection_and_units(tmp_path: Path) -> None:
    n = 2400
    cfg = write_comtrade(
        tmp_path / "rec.cfg",
        [("IA", "A", np.full(n, 5.0)), ("VA", "kV", np.full(n, 7.2)), ("VB", "V", np.full(n, 1.0))],
        rate_hz=12000,
        fmt="ASCII",
        pors=(7200.0, 120.0, "P"),
    )
    default = read_recording(cfg)
    assert default.channel == "VA"  # first channel in volts
    assert default.samples_v[0] == pytest.approx(7200.0)
    assert read_recording(cfg, channel=2).channel == "VB"
    assert read_recording(cfg, channel="VA", scale="secondary").samples_v[0] == pytest.approx(120.0)
    assert read_recording(cfg, channel="VA", scale="primary").samples_v[0] == pytest.approx(7200.0)
    current = read_recording(cfg, channel="ia")
    assert current.samples_v[0] == pytest.approx(5.0)
    assert "not volts" in current.notes[0]


def test_comtrade_short_dat_is_noted(tmp_path: Path) -> None:
    cfg = write_comtrade(tmp_path / "rec.cfg", [("VA", "V", sine_v(12000, 0.1))], rate_hz=12000, fmt="BINARY")
    dat = cfg.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: 600 * 10])  # 600 of 1200 rows (10 bytes each)
    recording = read_recording(cfg)
    assert len(recording.samples_v) == 600
    assert "holds 600 of the 1200 samples" in recording.notes[0]


# --- resampling, counts, timestamps, looping ---------------------------------------------------


@pytest.mark.parametrize("rate_hz", [4800, 7680, 12800, 15360, 44100, 1_000_000])
def test_resample_to_box_rate(rate_hz: int) -> None:
    resampled = resample_to_box_rate(sine_v(rate_hz, 0.2), rate_hz)
    assert len(resampled) == pytest.approx(0.2 * SAMPLE_RATE_HZ, abs=1)
    assert frequency_hz(resampled[: 12 * SAMPLES_PER_CYCLE]) == pytest.approx(60.0, abs=0.01)


def test_clipping_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    samples = np.zeros(400)
    samples[[10, 20, 30]] = 300.0  # 45 750 counts at 152.5 counts/V
    samples[40] = -250.0
    samples[50] = 214.0  # 32 635 counts: within range
    path = write_csv(tmp_path / "spikes.csv", ["v"], [samples])
    with caplog.at_level(logging.WARNING):
        source = RecordingSource.from_file(path, sample_rate_hz=12000, start_ms=0)
    assert source.clipped_samples == 4
    counts = np.concatenate([c.counts for c in source.cycles()])
    assert counts[[10, 40, 50]].tolist() == [32767, -32767, 32635]
    assert any("4 samples beyond the ADC's ±214.9 V" in w for w in source.warnings)
    assert any("clipped" in m for m in caplog.messages)


def test_loop_repeats_and_timestamps_keep_counting() -> None:
    recording = Recording(Path("mem.csv"), "v", np.arange(2 * SAMPLES_PER_CYCLE) / 1000.0, 12000.0)
    source: SampleSource = RecordingSource(
        recording, calibration_constant=1000.0, start_ms=START_MS, loop=True
    )
    cycles = list(islice(source.cycles(), 5))
    assert [c.counts[0] for c in cycles] == [0, 200, 0, 200, 0]
    assert [c.timestamp_ms - START_MS for c in cycles] == [0, 17, 33, 50, 67]
    assert [c.timestamp_ms for c in islice(source.cycles(), 1)] == [START_MS]  # each call starts over


def test_start_defaults_to_the_clock_when_cycles_start() -> None:
    recording = Recording(Path("mem.csv"), "v", np.zeros(3 * SAMPLES_PER_CYCLE), 12000.0)
    source = RecordingSource(recording, clock_ms=lambda: 5_000)
    assert [c.timestamp_ms for c in source.cycles()] == [5_000, 5_017, 5_033]


def test_cycle_timestamps_do_not_accumulate_rounding() -> None:
    assert cycle_timestamp_ms(0, 3 * 1_000_000) == 50_000_000  # 3 M cycles = 50 000 s exactly
    assert cycle_timestamp_ms(999, 1) == 18  # 0.999 ms + 16.667 ms
    assert cycle_timestamp_ms(-10_000, 0) == -10


# --- errors ------------------------------------------------------------------------------------


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.csv: no such file"):
        RecordingSource.from_file(tmp_path / "nope.csv", sample_rate_hz=12000)


def test_error_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    path.write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match=r"rec\.wav: unknown extension '\.wav'"):
        RecordingSource.from_file(path)


def test_error_missing_dat(tmp_path: Path) -> None:
    cfg = write_comtrade(tmp_path / "rec.cfg", [("VA", "V", np.zeros(400))], rate_hz=12000, fmt="ASCII")
    cfg.with_suffix(".dat").unlink()
    with pytest.raises(ConfigError, match=r"rec\.cfg: no \.dat file beside it"):
        RecordingSource.from_file(cfg)


@pytest.mark.parametrize("fmt", ["csv", "comtrade"])
def test_error_unknown_channel_lists_the_available(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        path = write_csv(
            tmp_path / "rec.csv", ["t", "va", "vb"], [np.arange(400) / 12000, np.zeros(400), np.zeros(400)]
        )
    else:
        channels = [("VA", "V", np.zeros(400)), ("VB", "V", np.zeros(400))]
        path = write_comtrade(tmp_path / "rec.cfg", channels, rate_hz=12000, fmt="ASCII")
    with pytest.raises(ConfigError, match=r"no channel named 'vc'; available: '(va|VA)', '(vb|VB)'"):
        RecordingSource.from_file(path, channel="vc")
    with pytest.raises(ConfigError, match="no channel at index 2"):
        RecordingSource.from_file(path, channel=2)


def test_error_sample_rate_missing(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rec.csv", ["va"], [np.zeros(400)])
    with pytest.raises(ConfigError, match=r"rec\.csv: sample rate missing"):
        RecordingSource.from_file(path)


def test_error_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text("t,va\n")
    with pytest.raises(ConfigError, match=r"rec\.csv: empty recording"):
        RecordingSource.from_file(path)


def test_error_empty_comtrade(tmp_path: Path) -> None:
    cfg = write_comtrade(tmp_path / "rec.cfg", [("VA", "V", np.zeros(400))], rate_hz=12000, fmt="BINARY")
    cfg.with_suffix(".dat").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"rec\.cfg: empty recording"):
        RecordingSource.from_file(cfg)


def test_error_less_than_a_cycle_after_resampling(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rec.csv", ["va"], [np.zeros(150)])  # 150 samples at 8 kHz → 225
    RecordingSource.from_file(path, sample_rate_hz=8000)
    path = write_csv(tmp_path / "rec.csv", ["va"], [np.zeros(120)])  # 120 samples at 8 kHz → 180
    with pytest.raises(
        ConfigError, match=r"rec\.csv: 180 samples at 12000 S/s after resampling, fewer than one"
    ):
        RecordingSource.from_file(path, sample_rate_hz=8000)


@pytest.mark.parametrize("calibration", [0.0, -152.5, math.nan])
def test_error_bad_calibration(calibration: float) -> None:
    recording = Recording(Path("mem.csv"), "v", np.zeros(200), 12000.0)
    with pytest.raises(ConfigError, match="calibration constant"):
        RecordingSource(recording, calibration_constant=calibration)
