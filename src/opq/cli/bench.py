"""PLACEHOLDER: `opq bench ...`, being written by a helper."""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
