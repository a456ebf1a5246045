"""``openpacs qa ...``: the corrections, with the names and meaning of ``/api/qa``.

Every command needs ``--reason``, takes ``--dry-run`` (show what would change, change
nothing) and ``--json`` (print the operation, whose ``id`` ``qa undo`` takes), and works
on the data of a running server (same ``--data-dir``/``--config`` as ``serve``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openpacs import bootstrap
from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, application_from, cli_actor, console, err
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.qa import Operation, StateChanged
from openpacs.domain.tags import Level
from openpacs.services.reconcile import PatientRef

qa_app = typer.Typer(help="Corrections: update, merge and move, previewed, audited and undoable.", no_args_is_help=True)

Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit and the journal).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]
Issuer = Annotated[str | None, typer.Option("--issuer", help="Issuer of Patient ID, where the ID is ambiguous.")]
Resolves = Annotated[
    list[int], typer.Option("--resolves", help="Inbox conflict this correction resolves (qa inbox); repeat.")
]
Sets = Annotated[list[str], typer.Option("--set", help="Keyword=Value to change ('Keyword=' empties it); repeat.")]


def _values(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        keyword, sep, value = pair.partition("=")
        if not sep or not keyword.strip():
            err.print(f"[red]error:[/red] --set takes Keyword=Value, not {pair!r}")
            raise typer.Exit(2)
        values[keyword.strip()] = value
    return values


def _run(
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
    dry_run: bool,
    action: Callable[[bootstrap.Application], Operation],
) -> None:
    application = application_from(config, data_dir, database_url)
    try:
        operation = action(application)
    except StateChanged as exc:
        err.print(f"[red]refused:[/red] {exc.reason}")
        if as_json:
            print(json.dumps({"error": exc.reason, "operations": exc.operations}))
        raise typer.Exit(1) from exc
    except OpenPacsError as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(1) from exc
    finally:
        application.close()
    if as_json:
        print(json.dumps({"dry_run": dry_run, **operation.to_json()}, indent=2))
        return
    _show(operation, dry_run)


def _show(operation: Operation, dry_run: bool) -> None:
    summary = operation.summary
    title = "would change (dry run, nothing changed)" if dry_run else f"operation {operation.id} done"
    console.print(f"{operation.kind} of {summary.get('level', '').lower()} {summary.get('name', '')}: {title}")
    affected = summary.get("affected", {})
    if affected:
        console.print("affects " + ", ".join(f"{n} {what}" for what, n in affected.items()))
    table = Table("object", "what", "old", "new")
    for change in summary.get("changes", []):
        if "attribute" in change:
            table.add_row(change["object"], change["attribute"], change["old"], change["new"])
        elif change.get("identifier"):
            old, new = change["old"] or {}, change["new"] or {}
            table.add_row(change["object"], "identifier", old.get("value", ""), new.get("value", ""))
        else:
            field = next(k for k in change if k != "object")
            table.add_row(change["object"], field, str(change[field]["old"]), str(change[field]["new"]))
    if table.row_count:
        console.print(table)
    uids = summary.get("uids", [])
    if uids:
        renamed = Table("level", "old UID", "new UID")
        for entry in uids[:20]:
            renamed.add_row(entry["level"], entry["old"], entry["new"])
        console.print(renamed)
        if len(uids) > 20:
            console.print(f"... and {len(uids) - 20} more UIDs (--json lists them)")
    for created in summary.get("created", []):
        console.print(f"new {created['level'].lower()} {created['uid']}")
    for note in summary.get("rejection_notes", []) if isinstance(summary.get("rejection_notes"), list) else []:
        stored = note["sop_instance_uid"] or "(stored when the operation runs)"
        console.print(
            f"rejection note {note['code']} for {note['instances']} old instances of study {note['study']}: {stored}"
        )
    if summary.get("references_rewritten"):
        console.print(f"references rewritten in {len(summary['references_rewritten'])} objects (GSPS, KOS, SR...)")
    if operation.undo_of is not None:
        console.print(f"(undoes operation {operation.undo_of})")
    left = summary.get("left_the_archive")
    if left and (left.get("retrieval_count") or left.get("rejection_notes")):
        console.print(
            f"left the archive since operation {operation.undo_of}: {left['retrieval_count']} retrievals, "
            f"{len(left['rejection_notes'])} rejection notes; {left['note']}"
        )
        for sent in left["retrievals"][:20]:
            console.print(f"  {sent['time']} {sent['action']} by {sent['by']} to {sent['destination'] or '-'}")


@qa_app.command("update-patient")
def update_patient(
    patient_id: Annotated[str, typer.Argument(help="The patient's Patient ID.")],
    reason: Reason,
    set_: Sets,
    issuer: Issuer = None,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change a patient's demographics, Patient ID or issuer (qa.patient_attributes)."""
    values = _values(set_)
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.update_patient(
        PatientRef(patient_id, issuer), values, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("update-study")
def update_study(
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    reason: Reason,
    set_: Sets,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change study attributes (qa.study_attributes)."""
    values = _values(set_)
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.update_study(
        study, values, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("update-series")
def update_series(
    series: Annotated[str, typer.Argument(help="Series Instance UID.")],
    reason: Reason,
    set_: Sets,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change series attributes (qa.series_attributes)."""
    values = _values(set_)
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.update_series(
        series, values, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("merge-patients")
def merge_patients(
    source: Annotated[str, typer.Argument(help="Patient ID of the record that goes (becomes a tombstone).")],
    target: Annotated[str, typer.Argument(help="Patient ID of the record that stays.")],
    reason: Reason,
    source_issuer: Annotated[str | None, typer.Option("--source-issuer", help="Issuer of the source's ID.")] = None,
    target_issuer: Annotated[str | None, typer.Option("--target-issuer", help="Issuer of the target's ID.")] = None,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Move every study of SOURCE to TARGET; later objects with SOURCE's ID land on TARGET."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.merge_patients(
        PatientRef(source, source_issuer), PatientRef(target, target_issuer), cli_actor(), reason,
        dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("unmerge")
def unmerge(
    source: Annotated[str, typer.Argument(help="Patient ID of the merged (tombstone) record.")],
    reason: Reason,
    issuer: Issuer = None,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Undo a merge: the studies it moved go back to SOURCE."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.unmerge(
        PatientRef(source, issuer), cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("move-study")
def move_study(
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    to_patient: Annotated[str, typer.Option("--to-patient", help="Patient ID of the new owner.")],
    reason: Reason,
    issuer: Issuer = None,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Attach a study to another patient (study reallocation; every UID is kept)."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.move_study(
        study, PatientRef(to_patient, issuer), cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("merge-studies")
def merge_studies(
    source: Annotated[str, typer.Argument(help="Study Instance UID of the study that goes.")],
    target: Annotated[str, typer.Argument(help="Study Instance UID of the study that stays.")],
    reason: Reason,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Move every series of SOURCE into TARGET under new UIDs (the old ones rejected, 113038);
    later objects of SOURCE land in TARGET."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.merge_studies(
        source, target, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("split-study")
def split_study(
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    reason: Reason,
    series: Annotated[list[str], typer.Option("--series", help="Series Instance UID to split off; repeat.")] = [],  # noqa: B006
    instances: Annotated[list[str], typer.Option("--instances", help="SOP Instance UID to split off; repeat.")] = [],  # noqa: B006 (typer's list option)
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Split series (--series) or instances (--instances) off into a new study of the same
    patient, under new UIDs."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.split_study(
        study, cli_actor(), reason, series=series, instances=instances, dry_run=dry_run,
        resolves=resolves))  # fmt: skip


@qa_app.command("move-series")
def move_series(
    series: Annotated[str, typer.Argument(help="Series Instance UID.")],
    to_study: Annotated[str, typer.Option("--to-study", help="Study Instance UID of the destination.")],
    reason: Reason,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Move a series into another study (series reallocation): a new Series Instance UID and
    new SOP Instance UIDs; the old ones are rejected (113038)."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.move_series(
        series, to_study, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("move-instances")
def move_instances(
    instances: Annotated[list[str], typer.Argument(help="SOP Instance UIDs.")],
    reason: Reason,
    to_series: Annotated[
        str | None, typer.Option("--to-series", help="Series Instance UID of the destination.")
    ] = None,
    to_new_series: Annotated[bool, typer.Option("--to-new-series", help="Into a new series of their study.")] = False,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Move instances into another series (--to-series) or a new one (--to-new-series)
    (image reallocation): new SOP Instance UIDs; the old ones are rejected (113038)."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.move_instances(
        instances, cli_actor(), reason, to_series=to_series, to_new_series=to_new_series,
        dry_run=dry_run, resolves=resolves))  # fmt: skip


class Target(StrEnum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


_LEVELS = {Target.STUDY: Level.STUDY, Target.SERIES: Level.SERIES, Target.INSTANCE: Level.IMAGE}
LevelOption = Annotated[Target, typer.Option("--level", help="What UID names.", case_sensitive=False)]


@qa_app.command("reject")
def reject(
    uid: Annotated[str, typer.Argument(help="Study, Series or SOP Instance UID.")],
    code: Annotated[
        str, typer.Option("--code", help="113001 quality, 113037 safety, 113038 worklist, 113039 retention.")
    ],
    reason: Reason,
    level: LevelOption = Target.STUDY,
    resolves: Resolves = [],  # noqa: B006 (typer's list option)
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Reject (IOCM): hidden from every query and retrieval; a rejection note is stored for peers."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.reject(
        _LEVELS[level], uid, code, cli_actor(), reason, dry_run=dry_run, resolves=resolves))  # fmt: skip


@qa_app.command("delete")
def delete(
    uid: Annotated[str, typer.Argument(help="Study, Series or SOP Instance UID.")],
    reason: Reason,
    level: LevelOption = Target.STUDY,
    force: Annotated[
        bool, typer.Option("--force", help="Delete instances this archive committed to (storage commitment).")
    ] = False,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Soft-delete: hidden like a rejection, restorable with qa restore or qa undo."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.delete(
        _LEVELS[level], uid, cli_actor(), reason, dry_run=dry_run, force=force))  # fmt: skip


@qa_app.command("restore")
def restore(
    uid: Annotated[str, typer.Argument(help="Study, Series or SOP Instance UID.")],
    reason: Reason,
    level: LevelOption = Target.STUDY,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show again what was rejected or soft-deleted (rejection notes already stored stay)."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.restore(
        _LEVELS[level], uid, cli_actor(), reason, dry_run=dry_run))  # fmt: skip


@qa_app.command("purge")
def purge(
    reason: Reason,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove for good the instances rejected or deleted longer than qa.purge_after_days ago
    (113039 at once); their files go after storage.deletion_grace_seconds. Final: no undo."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.purge(
        cli_actor(), reason, dry_run=dry_run))  # fmt: skip


@qa_app.command("provenance")
def provenance(
    patient_id: Annotated[str, typer.Argument(help="The patient's Patient ID.")],
    issuer: Issuer = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Where each of a patient's values comes from: the objects, a local edit, or HL7 (ADT)."""
    application = application_from(config, data_dir, database_url)
    try:
        found = application.reconcile.provenance(PatientRef(patient_id, issuer))
    except OpenPacsError as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(1) from exc
    finally:
        application.close()
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("attribute", "source", "operation", "when", "who")
    for keyword, origin in found["attributes"].items():
        table.add_row(
            keyword,
            origin["source"],
            str(origin.get("operation") or ""),
            origin.get("at") or "",
            origin.get("actor") or "",
        )
    console.print(table)


@qa_app.command("hidden")
def hidden(
    uid: Annotated[str, typer.Argument(help="Study, Series or SOP Instance UID.")],
    level: LevelOption = Target.STUDY,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """What clinical users do not see of a study, series or instance, and why."""
    application = application_from(config, data_dir, database_url)
    try:
        entries = application.reconcile.hidden(_LEVELS[level], uid)
    except OpenPacsError as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(1) from exc
    finally:
        application.close()
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("SOP Instance UID", "series", "hidden", "meaning")
    for entry in entries:
        table.add_row(entry["sop_instance_uid"], entry["series_instance_uid"], entry["hidden"], entry["meaning"])
    console.print(table)


@qa_app.command("dismiss-conflict")
def dismiss_conflict(
    conflicts: Annotated[list[int], typer.Argument(help="Ids of inbox conflicts (qa inbox).")],
    reason: Reason,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Close inbox conflicts that need no correction (undoable like any operation)."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.dismiss_conflicts(
        conflicts, cli_actor(), reason, dry_run=dry_run))  # fmt: skip


@qa_app.command("inbox")
def inbox(
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The reconciliation inbox: identity conflicts flagged at ingest, still open."""
    application = application_from(config, data_dir, database_url)
    try:
        entries = application.reconcile.inbox()
    finally:
        application.close()
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("id", "kind", "patient", "study", "reason", "values")
    for entry in entries:
        patient = entry.get("patient") or {}
        details = dict(entry["details"])
        reason = str(details.pop("reason", ""))
        table.add_row(
            str(entry["id"]),
            entry["kind"],
            f"{patient.get('patient_id', '')} {patient.get('name', '')}".strip(),
            entry["study_instance_uid"],
            reason,
            json.dumps(details, ensure_ascii=False),
        )
    console.print(table)


@qa_app.command("undo")
def undo(
    operation: Annotated[int, typer.Argument(help="The operation's id (from --json or qa list).")],
    reason: Reason,
    override: Annotated[bool, typer.Option("--override", help="Undo an identity change that came from HL7.")] = False,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Undo an operation by a compensating one; refused while later operations hold its objects."""
    _run(config, data_dir, database_url, as_json, dry_run, lambda a: a.reconcile.undo(
        operation, cli_actor(), reason, dry_run=dry_run, override=override))  # fmt: skip


@qa_app.command("list")
def list_operations(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The corrections, newest first."""
    application = application_from(config, data_dir, database_url)
    try:
        found = application.reconcile.operations(limit)
    finally:
        application.close()
    if as_json:
        print(json.dumps([op.to_json() for op in found], indent=2))
        return
    table = Table("id", "when", "kind", "object", "by", "reason", "undone by")
    for op in found:
        when = op.created_at.strftime("%Y-%m-%d %H:%M:%S") if op.created_at else ""
        who = op.actor.id if op.actor else ""
        undone = str(op.undone_by) if op.undone_by else ""
        table.add_row(str(op.id), when, str(op.kind), str(op.summary.get("name", "")), who, op.reason, undone)
    console.print(table)
