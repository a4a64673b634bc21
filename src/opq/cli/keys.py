"""`opq keys ...`: CurveZMQ key pairs for boxes and the cloud, as zcert files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opq.protocol import generate_keypair, write_certificate

app = typer.Typer(help="CurveZMQ key pairs for boxes and the cloud.", no_args_is_help=True)


@app.command("generate")
def generate(
    name: Annotated[str, typer.Argument(help="File name stem: writes NAME.key and NAME.key_secret.")],
    directory: Annotated[
        Path, typer.Option("--dir", metavar="DIR", help="Where to write the two files.")
    ] = Path(),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Generate a key pair; prints the public key (what `opq boxes add` and a box's config need)."""
    pair = generate_keypair()
    public_path, secret_path = write_certificate(directory, name, pair, overwrite=overwrite)
    typer.echo(f"wrote {public_path} and {secret_path} (keep it secret)", err=True)
    typer.echo(pair.public)
