"""What the ``openpacs`` subcommands share: consoles, common options, the application."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from openpacs import bootstrap
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.records import Actor, ActorType
from openpacs.settings import Settings, load_settings

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data folder (env OPENPACS_DATA_DIR).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML configuration file (env OPENPACS_CONFIG).")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Index database URL, e.g. postgresql://... (env OPENPACS_DATABASE_URL)."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    """The Settings, or exit 2 with the configuration error."""
    try:
        return load_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def cli_actor() -> Actor:
    """The operating-system user running the command, as the audit's actor."""
    import getpass

    return Actor(ActorType.CLI, getpass.getuser(), "local")


def fail(exc: Exception) -> typer.Exit:
    """Print the reason of *exc*; the exit to raise."""
    reason = exc.reason if isinstance(exc, OpenPacsError) else str(exc)
    err.print(f"[red]error:[/red] {reason}")
    return typer.Exit(1)


def application_from(config: Path | None, data_dir: Path | None, database_url: str | None) -> bootstrap.Application:
    """The application built from the options (no listener started)."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)
    bootstrap.configure_logging("WARNING")
    try:
        return bootstrap.build(settings)
    except Exception as exc:
        raise fail(exc) from exc


def with_app(config: Any, data_dir: Any, database_url: Any, action: Callable[[bootstrap.Application], T]) -> T:
    """Run *action* on an application built from the options; service errors exit 1."""
    application = application_from(config, data_dir, database_url)
    try:
        return action(application)
    except OpenPacsError as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(1) from exc
    finally:
        application.close()
