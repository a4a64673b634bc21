"""`opq analyze RECORDING`: the whole chain on a recording you already have, no database or server."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from opq.app.offline import OfflineAnalysis, analyze_recording
from opq.box.recordings import Scale
from opq.box.replay import RecordingSource
from opq.cli.context import iso_time, print_json, print_table, settings_of
from opq.mauka.registry import load_plugins


def analyze(
    ctx: typer.Context,
    recording: Annotated[Path, typer.Argument(help="A .csv or COMTRADE .cfg recording of one voltage.")],
    channel: Annotated[
        str | None, typer.Option(help="Channel name or 0-based index (default: first).")
    ] = None,
    sample_rate_hz: Annotated[
        float | None, typer.Option(help="Sample rate, for a CSV without a time column [Hz].")
    ] = None,
    scale: Annotated[str, typer.Option(help="COMTRADE values: recorded, primary or secondary.")] = "recorded",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure, trigger, capture and classify a recording as the system would; print the incidents."""
    source = RecordingSource.from_file(
        recording, channel=_channel(channel), sample_rate_hz=sample_rate_hz, scale=_scale(scale), start_ms=0
    )
    settings = settings_of(ctx)
    # The measurements' frequency variations follow Mauka's settings, as the running service does.
    result = analyze_recording(
        source,
        load_plugins(settings.mauka),
        settings=settings.makai,
        mauka=settings.mauka,
    )
    if as_json:
        print_json(_document(recording, result))
        return
    typer.echo(
        f"{recording}: {result.measurements} measurements, {result.abnormal_measurements} abnormal, "
        f"{len(result.captures)} captures, {len(result.findings)} incidents"
    )
    print_table(
        "incidents",
        ("at [s]", "start (UTC)", "length [ms]", "type", "classification", "duration", "deviation"),
        (
            (
                f"{(f.start_ms - result.start_ms) / 1000:.3f}",
                iso_time(f.start_ms, "milliseconds") if result.start_ms else "",
                f.end_ms - f.start_ms,
                f.measurement_type,
                ", ".join(f.classifications),
                f.ieee_duration or "",
                "" if f.deviation_from_nominal is None else f"{f.deviation_from_nominal:+.2f}",
            )
            for f in result.findings
        ),
    )
    for capture in result.captures:
        for failure in capture.failures:
            typer.echo(f"warning: plugin failed: {failure}", err=True)


def _document(recording: Path, result: OfflineAnalysis) -> dict[str, Any]:
    return {
        "recording": str(recording),
        "start_ms": result.start_ms,
        "measurements": result.measurements,
        "abnormal_measurements": result.abnormal_measurements,
        "captures": [
            {
                "start_ms": c.request.start_ms,
                "end_ms": c.request.end_ms,
                "reason": c.request.reason,
                "cycles": c.cycles,
                "failures": list(c.failures),
            }
            for c in result.captures
        ],
        "incidents": [{**asdict(f), "metadata": dict(f.metadata)} for f in result.findings],
    }


def _channel(text: str | None) -> str | int | None:
    return int(text) if text is not None and text.isdigit() else text


def _scale(text: str) -> Scale:
    if text not in ("recorded", "primary", "secondary"):
        raise typer.BadParameter(f"scale {text!r}: use recorded, primary or secondary")
    return text  # type: ignore[return-value]
