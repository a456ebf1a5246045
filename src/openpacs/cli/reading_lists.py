"""``openpacs reading ...``: reading worklists (the names and meaning of ``/api/reading``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, with_app
from openpacs.domain.reading_list import ReadingCriteria
from openpacs.domain.records import Actor, ActorType

reading_app = typer.Typer(help="Reading worklists: lists, unread counts, claims, saved filters.", no_args_is_help=True)

User = Annotated[str, typer.Option("--as", help="The reader (a user name; default: the system user).")]
Values = Annotated[str, typer.Option(help="Comma-separated values.")]


def _actor(user: str) -> Actor:
    return Actor(ActorType.USER, user, "cli") if user else cli_actor()


@reading_app.command("list")
def list_studies(
    saved: Annotated[str, typer.Option("--filter", help="A saved filter's name.")] = "",
    modalities: Values = "",
    body_parts: Values = "",
    priorities: Values = "",
    statuses: Values = "",
    departments: Values = "",
    worklist: Annotated[str, typer.Option(help="A reading worklist workflow rules assign to.")] = "",
    min_age_minutes: Annotated[int | None, typer.Option(min=0, help="In its status for at least so long.")] = None,
    max_age_minutes: Annotated[int | None, typer.Option(min=0, help="In its status for at most so long.")] = None,
    unclaimed: Annotated[bool, typer.Option("--unclaimed", help="Only studies nobody reads.")] = False,
    mine: Annotated[bool, typer.Option("--mine", help="Only studies the user (--as) claimed.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 200,
    user: User = "",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A reading list, STAT first, then longest waiting."""
    reader = _actor(user).id
    given: dict[str, Any] = {
        "modalities": modalities, "body_parts": body_parts, "priorities": priorities, "statuses": statuses,
        "departments": departments, "worklist": worklist, "min_age_minutes": min_age_minutes,
        "max_age_minutes": max_age_minutes, "unclaimed": unclaimed, "mine": mine,
    }  # fmt: skip

    def run(app: Any) -> list[Any]:
        criteria = (
            app.reading.criteria_of(saved, reader)
            if saved
            else ReadingCriteria.from_json({k: v for k, v in given.items() if v not in ("", None, False)})
        )
        return list(app.reading.items(criteria, reader, limit))

    found = with_app(config, data_dir, database_url, run)
    if as_json:
        print(json.dumps([i.to_json() for i in found], indent=2))
        return
    table = Table("priority", "status", "since", "patient", "accession", "modalities", "department", "reader")
    for item in found:
        row = item.to_json()
        patient = f"{row['patient_name']} ({row['patient_id']})"
        table.add_row(
            row["priority"], row["status"], (row["status_at"] or "")[:16], patient, row["accession_number"],
            "/".join(row["modalities"]), row["department"], row["claimed_by"] or "",
        )  # fmt: skip
    console.print(table)


@reading_app.command("counts")
def counts(
    user: User = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Unread studies (in progress or completed, no report yet), in all and per saved filter."""
    found = with_app(config, data_dir, database_url, lambda app: app.reading.counts(_actor(user).id))
    print(json.dumps(found, indent=2))


@reading_app.command("claim")
def claim(
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    user: User = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Claim a study to read it (refused, naming the reader, when someone else has it)."""
    found = with_app(config, data_dir, database_url, lambda app: app.reading.claim(study, _actor(user)))
    console.print(f"{study}: read by {found['claimed_by']} since {found['claimed_at'][:16]}", highlight=False)


@reading_app.command("release")
def release(
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    force: Annotated[bool, typer.Option("--force", help="Release another reader's claim.")] = False,
    user: User = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Give a study back."""
    with_app(config, data_dir, database_url, lambda app: app.reading.release(study, _actor(user), force=force))
    console.print(f"{study}: released", highlight=False)


@reading_app.command("save-filter")
def save_filter(
    name: Annotated[str, typer.Argument(help="The filter's name.")],
    criteria: Annotated[str, typer.Argument(help='JSON, e.g. {"modalities": ["CT"], "priorities": ["STAT"]}.')],
    shared: Annotated[bool, typer.Option("--shared", help="A filter every reader sees.")] = False,
    user: User = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Save a reading list filter (the user's own, or shared)."""
    try:
        given = json.loads(criteria)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="CRITERIA") from exc
    if not isinstance(given, dict):
        raise typer.BadParameter("a JSON object of filters", param_hint="CRITERIA")
    with_app(config, data_dir, database_url,
             lambda app: app.reading.save_filter(name, ReadingCriteria.from_json(given), _actor(user),
                                                 shared=shared))  # fmt: skip
    console.print(f"filter {name} saved", highlight=False)


@reading_app.command("filters")
def filters(
    user: User = "",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The user's saved filters and the shared ones."""
    found = with_app(config, data_dir, database_url, lambda app: app.reading.filters(_actor(user).id))
    print(json.dumps([f.to_json() for f in found], indent=2))


@reading_app.command("delete-filter")
def delete_filter(
    name: Annotated[str, typer.Argument(help="The filter's name.")],
    shared: Annotated[bool, typer.Option("--shared", help="The shared filter of that name.")] = False,
    user: User = "",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a saved filter (the user's own, or the shared one)."""
    with_app(config, data_dir, database_url,
             lambda app: app.reading.delete_filter(name, _actor(user), shared=shared))  # fmt: skip
    console.print(f"filter {name} deleted", highlight=False)
