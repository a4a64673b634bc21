"""`opq users ...`: the people who can log in to the web application."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from opq.cli.context import DbOption, JsonOption, opened_store, print_json, print_table
from opq.errors import InvalidValue
from opq.store.models import UserProfile

app = typer.Typer(help="People who can log in.", no_args_is_help=True)


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
    else:
        password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    if not password:
        raise InvalidValue("the password is empty")
    return password


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The new user's login name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role.")] = False,
    first_name: Annotated[str, typer.Option(help="Given name.")] = "",
    last_name: Annotated[str, typer.Option(help="Family name.")] = "",
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of stdin, not a prompt."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a user; the password comes from stdin or a hidden prompt, never the command line."""
    profile = UserProfile(
        username=username,
        role="admin" if admin else "user",
        first_name=first_name,
        last_name=last_name,
    )
    # Open the store first, so a wrong --db fails before anyone types a password.
    with opened_store(ctx, db) as store:
        password = read_password(password_stdin)
        store.users.add(profile, password)
    typer.echo(f"added {profile.role} {username!r}")


@app.command("list")
def list_users(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every user and their role."""
    with opened_store(ctx, db) as store:
        profiles = store.users.list()
    if as_json:
        print_json([asdict(profile) for profile in profiles])
        return
    print_table(
        "Users",
        ["username", "role", "first name", "last name"],
        [(p.username, p.role, p.first_name, p.last_name) for p in profiles],
    )
