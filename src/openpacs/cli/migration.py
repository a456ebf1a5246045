"""``openpacs migrate ...``: bring an old archive over, as jobs a running server carries out
(the names and meaning of ``/api/migrations``). Pause, resume and cancel them with
``openpacs jobs pause|resume|cancel``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, with_app
from openpacs.domain.jobs import Job

migrate_app = typer.Typer(
    help="Migration from an old PACS (C-FIND, then C-MOVE or C-GET) or a folder tree, throttled.",
    no_args_is_help=True,
)

Rate = Annotated[float, typer.Option("--rate", min=0, help="At most this many instances a second (0: no limit).")]
Windows = Annotated[
    list[str],
    typer.Option("--window", help="Allowed time window, local time: 'Mon-Fri 20:00-06:00', 'Sat,Sun'; repeat."),
]


def _started(job: Job, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(job.to_json(), indent=2))
        return
    windows = job.params.get("windows") or []
    console.print(
        f"job {job.pk}: migrate {what} ({job.state})"
        + (f", only in {', '.join(windows)}" if windows else "")
        + (f", at most {job.params['rate']:g} instances/s" if job.params.get("rate") else ""),
        soft_wrap=True,
    )
    console.print(f"follow it with: openpacs migrate status {job.pk}", soft_wrap=True)


@migrate_app.command("from-node")
def from_node(
    node: Annotated[str, typer.Argument(help="The old PACS (a node: see `openpacs node add`).")],
    since: Annotated[str, typer.Option("--since", help="First study date (YYYYMMDD).")] = "",
    until: Annotated[str, typer.Option("--until", help="Last study date (YYYYMMDD).")] = "",
    via: Annotated[str, typer.Option("--via", help="move (C-MOVE to our AE title) or get (C-GET).")] = "move",
    rate: Rate = 0.0,
    window: Windows = [],  # noqa: B006 (typer's list option)
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Walk the node's studies (by study date), bring each over, then verify the counts."""
    job = with_app(
        config,
        data_dir,
        database_url,
        lambda app: app.migration.from_node(
            node, cli_actor(), since=since, until=until, via=via, rate=rate, windows=list(window)
        ),
    )
    _started(job, as_json, f"from {node}")


@migrate_app.command("from-folder")
def from_folder(
    path: Annotated[str, typer.Argument(help="A folder tree of DICOM files (as the server sees it).")],
    rate: Rate = 0.0,
    window: Windows = [],  # noqa: B006 (typer's list option)
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import a folder tree, then verify each study instance by instance."""
    job = with_app(
        config,
        data_dir,
        database_url,
        lambda app: app.migration.from_folder(path, cli_actor(), rate=rate, windows=list(window)),
    )
    _started(job, as_json, f"from {path}")


def _describe(report: dict[str, Any]) -> str:
    job, counts = report["job"], report["counts"]
    progress = job["progress"]
    lines = [f"job {job['id']} ({job['queue']}): {job['state']}, phase {progress.get('phase', '?')}"]
    if progress.get("status"):
        lines.append(f"  {progress['status']}")
    if progress.get("waiting_until") and job["state"] == "pending":
        lines.append(f"  paused outside the allowed windows until {progress['waiting_until']}")
    if job.get("last_error"):
        lines.append(f"  last error: {job['last_error']}")
    studies = sum(counts.get(s, 0) for s in ("pending", "transferred", "verified", "mismatch", "failed"))
    lines.append(
        f"  studies: {studies} listed, {counts.get('pending', 0)} to transfer, {counts.get('transferred', 0)}"
        f" transferred, {counts.get('verified', 0)} verified, {counts.get('mismatch', 0)} mismatches,"
        f" {counts.get('failed', 0)} failed"
    )
    if "files" in progress:
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(progress.get("outcomes", {}).items()))
        lines.append(f"  files: {progress['files']} ({outcomes})")
    lines.append(f"  instances: {counts.get('instances_there', 0)} there, {counts.get('instances_here', 0)} here")
    return "\n".join(lines)


@migrate_app.command("status")
def status(
    job_id: Annotated[int, typer.Argument(help="The migration job.")],
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Where a migration is: its phase, studies per state, instances there and here."""
    report = with_app(config, data_dir, database_url, lambda app: app.migration.report(job_id, limit=1))
    if as_json:
        report.pop("studies", None)
        print(json.dumps(report, indent=2))
        return
    console.print(_describe(report), highlight=False, soft_wrap=True)


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


@migrate_app.command("report")
def report(
    job_id: Annotated[int, typer.Argument(help="The migration job.")],
    mismatches: Annotated[bool, typer.Option("--mismatches", help="Only the studies that differ or failed.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 1000,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The verification report: each study counted there and here, mismatches listed."""
    states = ["mismatch", "failed"] if mismatches else None
    found = with_app(
        config, data_dir, database_url, lambda app: app.migration.report(job_id, states=states, limit=limit)
    )
    if as_json:
        print(json.dumps(found, indent=2))
        return
    console.print(_describe(found), highlight=False, soft_wrap=True)
    table = Table("study", "patient", "date", "state", "series there/here", "instances there/here", "missing")
    for item in found["studies"]:
        there, here, detail = item["there"], item["here"], item["detail"]
        table.add_row(
            item["study_instance_uid"],
            item["patient_id"],
            item["study_date"],
            item["state"],
            f"{_n(there['series'])}/{_n(here['series'])}",
            f"{_n(there['instances'])}/{_n(here['instances'])}",
            str(detail.get("missing_count", "")),
        )
    console.print(table)
