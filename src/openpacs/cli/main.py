"""The ``openpacs`` command. Data commands use the same services on the same database as
the server (they may run while it runs); the server learns of their changes from the
index and the change feed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openpacs import __version__, bootstrap
from openpacs.cli.common import (
    ConfigFile,
    DatabaseUrl,
    DataDir,
    JsonOut,
    application_from,
    cli_actor,
    console,
    err,
    fail,
    settings_from,
)
from openpacs.cli.hl7 import hl7_app
from openpacs.cli.migration import migrate_app
from openpacs.cli.qa import qa_app
from openpacs.cli.reading_lists import reading_app
from openpacs.cli.routing import jobs_app, remote_app, route_app
from openpacs.cli.users import user_app
from openpacs.cli.workflow import workflow_app
from openpacs.cli.worklist import worklist_app
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.records import Node

app = typer.Typer(help="OpenPACS: DICOM archive, HL7 engine and radiology workflow.", no_args_is_help=True)
node_app = typer.Typer(help="DICOM nodes (other AEs) and their permissions.", no_args_is_help=True)
db_app = typer.Typer(help="The index database.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(qa_app, name="qa")
app.add_typer(route_app, name="route")
app.add_typer(jobs_app, name="jobs")
app.add_typer(remote_app, name="remote")
app.add_typer(migrate_app, name="migrate")
app.add_typer(hl7_app, name="hl7")
app.add_typer(worklist_app, name="worklist")
app.add_typer(workflow_app, name="workflow")
app.add_typer(reading_app, name="reading")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (env OPENPACS_HOST).")] = None,
    dicom_port: Annotated[
        int | None, typer.Option("--dicom-port", help="DICOM port (env OPENPACS_DICOM_PORT).")
    ] = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="HTTP port (env OPENPACS_HTTP_PORT).")] = None,
    hl7_port: Annotated[
        int | None, typer.Option("--hl7-port", help="HL7 MLLP port, 0 for none (env OPENPACS_HL7_PORT).")
    ] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="Our AE title (env OPENPACS_AE_TITLE).")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = None,
) -> None:
    """Run the server: DICOM, HTTP and HL7 (MLLP), until SIGTERM or Ctrl-C."""
    settings = settings_from(
        config,
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        dicom_port=dicom_port,
        http_port=http_port,
        hl7_port=hl7_port,
        ae_title=ae_title,
        log_level=log_level.upper() if log_level else None,
    )
    bootstrap.configure_logging(settings.log_level)
    bootstrap.serve(settings)


# -- nodes -----------------------------------------------------------------------------


@node_app.command("add")
def node_add(
    name: Annotated[str, typer.Argument(help="Unique name of the node.")],
    ae_title: Annotated[str, typer.Option("--ae-title", help="Its AE title.")],
    host: Annotated[str, typer.Option("--host", help="Its host name or address.")],
    port: Annotated[int, typer.Option("--port", help="Its DICOM port.")],
    store: Annotated[bool, typer.Option("--store/--no-store", help="May send us instances.")] = True,
    find: Annotated[bool, typer.Option("--find/--no-find", help="May query.")] = True,
    get: Annotated[bool, typer.Option("--get/--no-get", help="May retrieve (C-GET, C-MOVE).")] = True,
    move_destination: Annotated[
        bool, typer.Option("--move-destination/--no-move-destination", help="May receive C-MOVE results.")
    ] = True,
    check_host: Annotated[bool, typer.Option("--check-host", help="Accept its AE title only from its host.")] = False,
    default_issuer: Annotated[str, typer.Option("--default-issuer", help="Issuer of Patient ID for its objects.")] = "",
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    max_associations: Annotated[
        int, typer.Option("--max-associations", min=1, max=64, help="Forwarding jobs to it that may run at once.")
    ] = 2,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a node; effective at once, also for a running server."""
    application = application_from(config, data_dir, database_url)
    try:
        node = application.nodes.add(
            Node(
                name=name,
                ae_title=ae_title,
                host=host,
                port=port,
                allow_store=store,
                allow_find=find,
                allow_get=get,
                allow_move_destination=move_destination,
                check_host=check_host,
                default_issuer=default_issuer,
                description=description,
                max_associations=max_associations,
            ),
            cli_actor(),
        )
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"node {node.name} added: {node.ae_title}@{node.host}:{node.port}")


@node_app.command("list")
def node_list(
    data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None, as_json: JsonOut = False
) -> None:
    """List the nodes."""
    application = application_from(config, data_dir, database_url)
    try:
        nodes = application.nodes.all()
    finally:
        application.close()
    if as_json:
        print(json.dumps([asdict(n) for n in nodes], indent=2))
        return
    table = Table("name", "AE title", "host", "port", "store", "find", "get", "move dest.", "issuer")
    for n in nodes:
        table.add_row(
            n.name,
            n.ae_title,
            n.host,
            str(n.port),
            _yes(n.allow_store),
            _yes(n.allow_find),
            _yes(n.allow_get),
            _yes(n.allow_move_destination),
            n.default_issuer,
        )
    console.print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@node_app.command("remove")
def node_remove(
    name: Annotated[str, typer.Argument(help="The node's name.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a node."""
    application = application_from(config, data_dir, database_url)
    try:
        application.nodes.remove(name, cli_actor())
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"node {name} removed")


# -- network ---------------------------------------------------------------------------


@app.command()
def echo(
    target: Annotated[str, typer.Argument(help="A node name, or AE@HOST:PORT.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 10.0,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """C-ECHO a node and say, on failure, why."""
    application = application_from(config, data_dir, database_url)
    try:
        address = application.network.echo(target, timeout=timeout)
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(f"C-ECHO to {address}: success")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=not sys.stderr.isatty(),
    )


@app.command("send")
def send(
    target: Annotated[str, typer.Argument(help="A node name, or AE@HOST:PORT.")],
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """C-STORE DICOM files to a node, with progress."""
    application = application_from(config, data_dir, database_url)
    skipped: list[tuple[Path, str]] = []
    try:
        with _progress() as progress:
            task = progress.add_task("sending", total=None)
            result = application.network.send_files(
                target,
                paths,
                progress=lambda _uid, _outcome: progress.advance(task),
                skipped=lambda p, r: skipped.append((p, r)),
            )
    except OpenPacsError as exc:
        raise fail(exc) from exc
    finally:
        application.close()
    console.print(
        f"sent {len(result.completed)}, warnings {len(result.warnings)}, failed {len(result.failed)}, "
        f"skipped {len(skipped)}"
    )
    for uid, reason in result.failed.items():
        console.print(f"  failed {uid}: {reason}")
    for path, reason in skipped:
        console.print(f"  skipped {path}: {reason}")
    if result.failed:
        raise typer.Exit(1)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    workers: Annotated[int, typer.Option("--workers", "-j", help="Parallel workers.")] = 4,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Import DICOM files into the archive (same rules as C-STORE)."""
    application = application_from(config, data_dir, database_url)
    try:
        with _progress() as progress:
            task = progress.add_task("importing", total=None)
            summary = application.importer.import_paths(
                paths, workers=workers, progress=lambda _p, _o: progress.advance(task)
            )
    finally:
        application.close()
    if as_json:
        print(json.dumps(asdict(summary), indent=2))
    else:
        console.print(
            f"imported {summary.imported}, duplicates {summary.duplicates}, rejected {len(summary.rejected)}, "
            f"skipped (not DICOM) {len(summary.skipped)}, identity conflicts {summary.conflicts}"
        )
        for path, reason in summary.rejected.items():
            console.print(f"  rejected {path}: {reason}")
        for path in summary.skipped:
            console.print(f"  skipped {path}")
    if summary.rejected:
        raise typer.Exit(1)


@app.command()
def stats(
    data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None, as_json: JsonOut = False
) -> None:
    """Counts of patients, studies, series, instances and bytes."""
    application = application_from(config, data_dir, database_url)
    try:
        counts = application.archive.stats()
    finally:
        application.close()
    if as_json:
        print(json.dumps(asdict(counts)))
        return
    table = Table("patients", "studies", "series", "instances", "bytes")
    table.add_row(*(f"{v:,}" for v in asdict(counts).values()))
    console.print(table)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Apply the pending schema migrations (also done at every start)."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)
    from openpacs.bootstrap import upgrade_database

    revision = upgrade_database(settings)
    console.print(f"database at revision {revision}")


@db_app.command("rebuild")
def db_rebuild(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Rebuild an empty index from the storage: every stored object indexed where it lies,
    the corrections journal replayed in time order. Stop the server first; point
    --database-url (or a new data folder's index) at a new, empty database."""
    application = application_from(config, data_dir, database_url)
    try:
        report = application.rebuild.rebuild(cli_actor())
    except OpenPacsError as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(1) from exc
    finally:
        application.close()
    summary = report.to_json()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(
        f"{summary['indexed']} of {summary['objects']} stored objects indexed "
        f"({summary['rejection_notes']} rejection notes), {summary['operations_replayed']} corrections replayed"
        f" ({summary['edits_skipped']} edits skipped: their objects are no longer stored)"
    )
    for item in summary["not_indexed_first"][:50]:
        console.print(f"not indexed: {item['key']}: {item['reason']}")


def main() -> None:
    """Entry point of the ``openpacs`` command."""
    app()
