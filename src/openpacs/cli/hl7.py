"""``openpacs hl7 ...``: the HL7 message store, with the names and meaning of ``/api/hl7``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, console
from openpacs.cli.routing import _with_app
from openpacs.domain.hl7 import MessageQuery

hl7_app = typer.Typer(help="The HL7 interface: the message store.", no_args_is_help=True)


@hl7_app.command("messages")
def messages(
    message_type: Annotated[str, typer.Option("--type", help="Message type (MSH-9.1), e.g. ADT.")] = "",
    trigger: Annotated[str, typer.Option("--trigger", help="Trigger event (MSH-9.2), e.g. A08.")] = "",
    patient_id: Annotated[str, typer.Option("--patient-id", help="PID-3 (first repetition).")] = "",
    accession: Annotated[str, typer.Option("--accession", help="OBR-18 or IPC-1.")] = "",
    status: Annotated[str, typer.Option("--status", help="received, processed, failed, skipped, rejected.")] = "",
    sender: Annotated[str, typer.Option("--sender", help="Sending application or facility.")] = "",
    text: Annotated[str, typer.Option("--text", help="Free text in the raw message.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Search the message store, newest first."""
    query = MessageQuery(message_type, trigger, patient_id, accession, status, "", sender, None, None, text, limit)
    found, counts = _with_app(config, data_dir, database_url, lambda app: (app.hl7.messages(query), app.hl7.counts()))
    if as_json:
        print(json.dumps({"counts": counts, "messages": [m.to_json() for m in found]}, indent=2))
        return
    table = Table("id", "received", "type", "control id", "sender", "patient", "accession", "status", "error")
    for message in found:
        row = message.to_json()
        table.add_row(
            str(row["id"]),
            row["received_at"][:19],
            f"{row['message_type']}^{row['trigger']}".strip("^"),
            row["control_id"],
            f"{row['sending_application']}|{row['sending_facility']}".strip("|"),
            row["patient_id"],
            row["accession"],
            row["status"],
            row["error"][:60],
        )
    console.print(table)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no messages")


@hl7_app.command("show")
def show(
    message_id: Annotated[int, typer.Argument(help="The message's id (hl7 messages).")],
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A message: its summary, then its segments field by field (PID-5 ...)."""
    found = _with_app(config, data_dir, database_url, lambda app: app.hl7.show(message_id))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    console.print(
        f"message {found['id']}: {found['message_type']}^{found['trigger']} {found['control_id']} from"
        f" {found['sending_application']}|{found['sending_facility']} ({found['peer']}), {found['status']}"
        + (f": {found['error']}" if found["error"] else ""),
        highlight=False,
        soft_wrap=True,
    )
    for segment in found["segments"]:
        for name, value in segment["fields"].items():
            console.print(f"  {name:<8} {value}", highlight=False, soft_wrap=True, markup=False)
