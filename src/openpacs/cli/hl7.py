"""``openpacs hl7 ...``: the HL7 message store, with the names and meaning of ``/api/hl7``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openpacs import bootstrap
from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, fail, with_app
from openpacs.domain.hl7 import Hl7Error, MessageQuery, split_messages

hl7_app = typer.Typer(
    help="The HL7 interface: the message store, its error queue, sending messages.", no_args_is_help=True
)


@hl7_app.command("messages")
def messages(
    message_type: Annotated[str, typer.Option("--type", help="Message type (MSH-9.1), e.g. ADT.")] = "",
    trigger: Annotated[str, typer.Option("--trigger", help="Trigger event (MSH-9.2), e.g. A08.")] = "",
    patient_id: Annotated[str, typer.Option("--patient-id", help="PID-3 (first repetition).")] = "",
    accession: Annotated[str, typer.Option("--accession", help="OBR-18 or IPC-1.")] = "",
    status: Annotated[
        str, typer.Option("--status", help="received, processed, failed, skipped, rejected; queued, sent (outbound).")
    ] = "",
    direction: Annotated[str, typer.Option("--direction", help="in (received) or out (sent by us).")] = "",
    sender: Annotated[str, typer.Option("--sender", help="Sending application or facility.")] = "",
    text: Annotated[str, typer.Option("--text", help="Free text in the raw message.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Search the message store, newest first."""
    query = MessageQuery(
        message_type, trigger, patient_id, accession, status, "", sender, None, None, text, limit, None, direction
    )
    found, counts = with_app(config, data_dir, database_url, lambda app: (app.hl7.messages(query), app.hl7.counts()))
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
    found = with_app(config, data_dir, database_url, lambda app: app.hl7.show(message_id))
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


@hl7_app.command("errors")
def errors(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The error queue: failed messages, oldest first, and how many later messages each holds back."""
    found = with_app(config, data_dir, database_url, lambda app: app.hl7.error_queue(limit))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "received", "type", "control id", "sender", "patient", "holds back", "error")
    for row in found["failed"]:
        table.add_row(
            str(row["id"]), row["received_at"][:19], f"{row['message_type']}^{row['trigger']}", row["control_id"],
            f"{row['sending_application']}|{row['sending_facility']}", row["patient_id"], str(row["holds_back"]),
            row["error"][:80],
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(found['failed'])} failed messages")


@hl7_app.command("reprocess")
def reprocess(
    message_ids: Annotated[list[int], typer.Argument(help="Messages to apply again.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Put messages back in the queue: a running server applies them in order within a second."""
    done = with_app(config, data_dir, database_url, lambda app: app.hl7.reprocess(message_ids, cli_actor()))
    console.print(f"requeued: {', '.join(map(str, done))}")


@hl7_app.command("skip")
def skip(
    message_ids: Annotated[list[int], typer.Argument(help="Failed or waiting messages to set aside.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set messages aside (status skipped): the messages they held back go on."""
    done = with_app(config, data_dir, database_url, lambda app: app.hl7.skip(message_ids, cli_actor()))
    console.print(f"skipped: {', '.join(map(str, done))}")


@hl7_app.command("send")
def send(
    destination: Annotated[str, typer.Argument(help="HOST:PORT of the MLLP receiver.")],
    files: Annotated[list[Path], typer.Argument(help="Files of HL7 messages (one or more per file).")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each ACK.")] = 30.0,
) -> None:
    """Send HL7 messages over MLLP and check each ACK (MSA-2 must echo MSH-10; AA, or CA when no
    application ACK is asked for); exits 1 when any message is not accepted."""
    host, _, port_text = destination.rpartition(":")
    if not host or not port_text.isdigit():
        raise fail(ValueError(f"{destination!r} is not HOST:PORT"))
    messages: list[tuple[str, bytes]] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise fail(exc) from exc
        found = split_messages(data)
        if not found:
            raise fail(ValueError(f"{path}: no HL7 message (no MSH segment)"))
        messages += [(f"{path}#{n}" if len(found) > 1 else str(path), m) for n, m in enumerate(found, start=1)]
    refused = 0
    try:
        connection = bootstrap.hl7_peer().connect(host, int(port_text), timeout=timeout)
        try:
            for name, message in messages:
                result = connection.send(message)
                refused += not result.ok
                colour = "green" if result.ok else "red"
                console.print(f"{name}: [{colour}]{result.code or '?'}[/{colour}] {result.text}", highlight=False)
        finally:
            connection.close()
    except (OSError, Hl7Error) as exc:
        raise fail(exc) from exc
    if refused:
        raise typer.Exit(1)
