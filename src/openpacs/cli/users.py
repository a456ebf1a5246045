"""``openpacs user ...``: local accounts and API tokens."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Annotated

import typer
from rich.table import Table

from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, application_from, cli_actor, console, fail
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.users import Role

user_app = typer.Typer(help="Users, their roles and API tokens.", no_args_is_help=True)

Password = Annotated[
    str | None,
    typer.Option("--password", help="The password (8 characters at least); default: asked, or generated and printed."),
]


def _new_password(given: str | None, *, ask: bool) -> tuple[str, bool]:
    """(password, generated): the given one, one typed at the terminal, or a generated one."""
    if given:
        return given, False
    if ask and sys.stdin.isatty():
        return typer.prompt("new password", hide_input=True, confirmation_prompt=True), False
    return secrets.token_urlsafe(12), True


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-', '@').")],
    role: Annotated[Role, typer.Option("--role", help="What the user may do.", case_sensitive=False)],
    password: Password = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user; a generated password is printed once and must be changed at the first login."""
    chosen, generated = _new_password(password, ask=False)
    application = application_from(config, data_dir, database_url)
    try:
        user, _ = application.users.create(name, role, cli_actor(), chosen, must_change=generated)
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"user {user.name} added with role {user.role}")
    if generated:
        console.print(f"password (shown once, to be changed at the first login): {chosen}", highlight=False)


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    password: Password = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password; the user's console sessions end."""
    chosen, generated = _new_password(password, ask=True)
    application = application_from(config, data_dir, database_url)
    try:
        application.users.set_password(name, chosen, cli_actor())
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"password of {name} changed")
    if generated:
        console.print(f"new password (shown once): {chosen}", highlight=False)


@user_app.command("list")
def user_list(
    data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None, as_json: JsonOut = False
) -> None:
    """List the users."""
    application = application_from(config, data_dir, database_url)
    try:
        users = application.users.users()
    finally:
        application.close()
    rows = [
        {
            "name": u.name,
            "role": str(u.role),
            "must_change_password": u.must_change_password,
            "disabled": u.disabled,
            "created_at": u.created_at.isoformat() if u.created_at else None,
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
        }
        for u in users
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "role", "must change password", "disabled", "last login")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["role"]),
            "yes" if row["must_change_password"] else "no",
            "yes" if row["disabled"] else "no",
            str(row["last_login_at"] or "never"),
        )
    console.print(table)


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a user with its API tokens and sessions."""
    application = application_from(config, data_dir, database_url)
    try:
        application.users.remove(name, cli_actor())
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"user {name} removed")


@user_app.command("token")
def user_token(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print a new API token for the user (send it as 'Authorization: Bearer TOKEN'); it is shown once."""
    application = application_from(config, data_dir, database_url)
    try:
        token = application.users.create_token(name, cli_actor(), label)
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    print(token)
