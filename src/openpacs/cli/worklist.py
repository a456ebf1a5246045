"""``openpacs worklist ...``: the modality worklist's entries (PS3.4 K.6.1), with the names and
meaning of ``/api/worklist``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, err, fail, with_app
from openpacs.domain.orders import STEP_STATUSES

worklist_app = typer.Typer(help="The modality worklist: entries, import of worklist files.", no_args_is_help=True)


def read_worklist_file(path: Path) -> dict[str, Any]:
    """A DICOM worklist file (Part 10, or a bare data set such as DCMTK's ``.wl`` files) as
    DICOM JSON; raises ValueError when it is not one."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, force=True)
        item: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1 << 20, bulk_data_element_handler=lambda _e: "")
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a DICOM worklist file: {exc}") from exc
    if "00400100" not in item:
        raise ValueError("not a worklist item: no Scheduled Procedure Step Sequence (0040,0100)")
    return item


@worklist_app.command("import")
def import_files(
    files: Annotated[list[Path], typer.Argument(help="DICOM worklist files (.wl, .dcm) or folders of them.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Load worklist entries from DICOM worklist files: one entry per file (an entry of the
    same order and step is updated). Exits 1 when any file is refused."""
    paths: list[Path] = []
    for path in files:
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and p.name != "lockfile")
        else:
            paths.append(path)
    items: list[tuple[str, dict[str, Any]]] = []
    refused = 0
    for path in paths:
        try:
            items.append((path.name, read_worklist_file(path)))
        except ValueError as exc:
            refused += 1
            err.print(f"{path}: [red]refused[/red]: {exc}", highlight=False)
    notes = with_app(config, data_dir, database_url, lambda app: app.worklist.import_items(items, cli_actor()))
    for note in notes:
        refused += ": refused: " in note
        console.print(note, highlight=False)
    if refused:
        raise typer.Exit(1)


@worklist_app.command("list")
def list_entries(
    date: Annotated[str, typer.Option("--date", help="Scheduled date, YYYYMMDD.")] = "",
    modality: Annotated[str, typer.Option("--modality")] = "",
    station: Annotated[str, typer.Option("--station", help="Scheduled Station AE Title.")] = "",
    patient_id: Annotated[str, typer.Option("--patient-id")] = "",
    status: Annotated[list[str] | None, typer.Option("--status", help="Step status (repeatable).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 200,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List worklist entries, scheduled date and time order."""
    found = with_app(
        config,
        data_dir,
        database_url,
        lambda app: app.orders.worklist(
            patient_id=patient_id,
            date=date,
            modality=modality,
            station_ae_title=station,
            statuses=[s.upper() for s in status or []],
            limit=limit,
        ),
    )
    if as_json:
        print(json.dumps([s.to_json() for s in found], indent=2))
        return
    table = Table("id", "date", "time", "modality", "station", "step id", "status", "patient", "accession")
    for step in found:
        row = step.to_json()
        table.add_row(
            str(row["id"]),
            row["start_date"],
            row["start_time"],
            row["modality"],
            "\\".join(row["scheduled_station_ae_title"]),
            row["scheduled_procedure_step_id"],
            row["status"],
            str((step.attrs.get("00100020", {}).get("Value") or [""])[0]),
            str((step.attrs.get("00080050", {}).get("Value") or [""])[0]),
        )
    console.print(table)


@worklist_app.command("status")
def set_status(
    entry: Annotated[int, typer.Argument(help="Entry id (openpacs worklist list).")],
    status: Annotated[str, typer.Argument(help=f"One of {', '.join(STEP_STATUSES)}.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set an entry's Scheduled Procedure Step Status (DISCONTINUED cancels it)."""
    found = with_app(config, data_dir, database_url, lambda app: app.worklist.set_status(entry, status, cli_actor()))
    console.print(f"entry {found.pk}: {found.status}", highlight=False)


@worklist_app.command("cancel")
def cancel(
    entry: Annotated[int, typer.Argument(help="Entry id (openpacs worklist list).")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Cancel an entry (its step becomes DISCONTINUED and leaves the worklist)."""
    try:
        found = with_app(
            config, data_dir, database_url, lambda app: app.worklist.set_status(entry, "DISCONTINUED", cli_actor())
        )
    except ValueError as exc:
        raise fail(exc) from exc
    console.print(f"entry {found.pk}: {found.status}", highlight=False)
