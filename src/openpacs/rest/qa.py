"""Corrections under /api/qa (admins): the same operations, with the same names, as
``openpacs qa``. Every one takes ``?dry_run=true`` to preview what it would change."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.qa import Operation
from openpacs.domain.tags import Level
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services
from openpacs.services.reconcile import PatientRef

router = APIRouter(prefix="/api/qa", tags=["corrections"])
Corrector = Annotated[Principal, Depends(require(Permission.RECONCILE))]
DryRun = Annotated[bool, Query(description="Show what would change; change nothing.")]
_UID = Field(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")
_REASON = Field(min_length=1, max_length=2000, description="Why: kept in the audit and the journal.")


class Resolving(BaseModel):
    resolves: list[int] = Field(
        default_factory=list, max_length=1000, description="Inbox conflicts this correction resolves."
    )


class Patient(BaseModel):
    """A patient named by Patient ID, and its issuer where the ID alone is ambiguous."""

    patient_id: str = Field(min_length=1, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)

    def ref(self) -> PatientRef:
        return PatientRef(self.patient_id, self.issuer)


class UpdatePatient(Patient, Resolving):
    set: dict[str, str] = Field(description="Keyword -> new value ('' empties it).")
    reason: str = _REASON


class UpdateStudy(Resolving):
    study: str = _UID
    set: dict[str, str]
    reason: str = _REASON


class UpdateSeries(Resolving):
    series: str = _UID
    set: dict[str, str]
    reason: str = _REASON


class MergePatients(Resolving):
    source: Patient
    target: Patient
    reason: str = _REASON


class Unmerge(Resolving):
    source: Patient
    reason: str = _REASON


class MoveStudy(Resolving):
    study: str = _UID
    to_patient: Patient
    reason: str = _REASON


class MergeStudies(Resolving):
    source: str = _UID
    target: str = _UID
    reason: str = _REASON


class SplitStudy(Resolving):
    study: str = _UID
    series: list[Annotated[str, _UID]] = Field(default_factory=list, max_length=10_000)
    instances: list[Annotated[str, _UID]] = Field(default_factory=list, max_length=100_000)
    reason: str = _REASON


class MoveSeries(Resolving):
    series: str = _UID
    to_study: str = _UID
    reason: str = _REASON


class MoveInstances(Resolving):
    instances: list[Annotated[str, _UID]] = Field(min_length=1, max_length=100_000)
    to_series: Annotated[str, _UID] | None = None
    to_new_series: bool = False
    reason: str = _REASON


_LEVELS = {"study": Level.STUDY, "series": Level.SERIES, "instance": Level.IMAGE}


class Hide(BaseModel):
    level: Literal["study", "series", "instance"]
    uid: str = _UID
    reason: str = _REASON


class Reject(Hide, Resolving):
    code: Literal["113001", "113037", "113038", "113039"] = Field(
        description="113001 quality, 113037 patient safety, 113038 incorrect worklist entry, 113039 retention expired"
    )


class DismissConflict(BaseModel):
    conflicts: list[int] = Field(min_length=1, max_length=1000)
    reason: str = _REASON


class Undo(BaseModel):
    operation: int = Field(ge=1)
    reason: str = _REASON
    override: bool = Field(default=False, description="Undo an identity change that came from HL7.")


def _answer(operation: Operation, dry_run: bool) -> dict[str, Any]:
    return {"dry_run": dry_run, **operation.to_json()}


@router.post("/update-patient", summary="Change a patient's demographics or Patient ID")
async def update_patient(body: UpdatePatient, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.update_patient(
            body.ref(), body.set, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/update-study", summary="Change study attributes")
async def update_study(body: UpdateStudy, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.update_study(
            body.study, body.set, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/update-series", summary="Change series attributes")
async def update_series(body: UpdateSeries, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.update_series(
            body.series, body.set, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/merge-patients", summary="Merge a patient into another (the source becomes a tombstone)")
async def merge_patients(body: MergePatients, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.merge_patients(
            body.source.ref(), body.target.ref(), caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/unmerge", summary="Undo the merge of a patient")
async def unmerge(body: Unmerge, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.unmerge(body.source.ref(), caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves)
    )
    return _answer(op, dry_run)


@router.post("/move-study", summary="Attach a study to another patient (UIDs kept)")
async def move_study(body: MoveStudy, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.move_study(
            body.study, body.to_patient.ref(), caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/merge-studies", summary="Merge a study into another (new UIDs; the old ones rejected, 113038)")
async def merge_studies(body: MergeStudies, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.merge_studies(
            body.source, body.target, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/split-study", summary="Split series or instances off into a new study (new UIDs)")
async def split_study(body: SplitStudy, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.split_study(
            body.study,
            caller.actor,
            body.reason,
            series=body.series,
            instances=body.instances,
            dry_run=dry_run,
            resolves=body.resolves,
        )
    )
    return _answer(op, dry_run)


@router.post("/move-series", summary="Move a series into another study (new UIDs; the old ones rejected)")
async def move_series(body: MoveSeries, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.move_series(
            body.series, body.to_study, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


@router.post("/move-instances", summary="Move instances into another or a new series (new SOP Instance UIDs)")
async def move_instances(body: MoveInstances, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.move_instances(
            body.instances,
            caller.actor,
            body.reason,
            to_series=body.to_series,
            to_new_series=body.to_new_series,
            dry_run=dry_run,
            resolves=body.resolves,
        )
    )
    return _answer(op, dry_run)


@router.post("/reject", summary="Reject (IOCM) a study, series or instance; a rejection note is stored")
async def reject(body: Reject, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.reject(
            _LEVELS[body.level], body.uid, body.code, caller.actor, body.reason, dry_run=dry_run, resolves=body.resolves
        )
    )
    return _answer(op, dry_run)


class SoftDelete(Hide):
    force: bool = Field(False, description="Delete instances this archive committed to (storage commitment).")


@router.post("/delete", summary="Soft-delete a study, series or instance (restorable)")
async def delete(body: SoftDelete, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.delete(_LEVELS[body.level], body.uid, caller.actor, body.reason, dry_run=dry_run, force=body.force)
    )
    return _answer(op, dry_run)


@router.post("/restore", summary="Show again what was rejected or deleted")
async def restore(body: Hide, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.restore(_LEVELS[body.level], body.uid, caller.actor, body.reason, dry_run=dry_run)
    )
    return _answer(op, dry_run)


class Purge(BaseModel):
    reason: str = _REASON


@router.post("/purge", summary="Remove for good what was hidden longer than qa.purge_after_days (final)")
async def purge(body: Purge, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(lambda: svc.purge(caller.actor, body.reason, dry_run=dry_run))
    return _answer(op, dry_run)


@router.post("/dismiss-conflict", summary="Close inbox conflicts that need no correction")
async def dismiss_conflict(body: DismissConflict, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.dismiss_conflicts(body.conflicts, caller.actor, body.reason, dry_run=dry_run)
    )
    return _answer(op, dry_run)


@router.get("/hidden", summary="Rejected, deleted and rejection-note instances of a study, series or instance")
async def hidden(
    request: Request,
    caller: Corrector,
    uid: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")],
    level: Annotated[Literal["study", "series", "instance"], Query()] = "study",
) -> list[dict[str, Any]]:
    return await run_in_threadpool(services(request).reconcile.hidden, _LEVELS[level], uid)


@router.get("/provenance", summary="Where each of a patient's values comes from: the objects, a local edit, HL7")
async def provenance(
    request: Request,
    caller: Corrector,
    patient_id: Annotated[str, Query(min_length=1, max_length=64)],
    issuer: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return await run_in_threadpool(services(request).reconcile.provenance, PatientRef(patient_id, issuer))


@router.get("/inbox", summary="The reconciliation inbox: open identity conflicts")
async def inbox(request: Request, caller: Corrector) -> list[dict[str, Any]]:
    return await run_in_threadpool(services(request).reconcile.inbox)


@router.post("/undo", summary="Undo an operation (a compensating operation)")
async def undo(body: Undo, request: Request, caller: Corrector, dry_run: DryRun = False) -> Any:
    svc = services(request).reconcile
    op = await run_in_threadpool(
        lambda: svc.undo(body.operation, caller.actor, body.reason, dry_run=dry_run, override=body.override)
    )
    return _answer(op, dry_run)


@router.get("/operations", summary="The corrections, newest first")
async def operations(
    request: Request,
    caller: Corrector,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> list[dict[str, Any]]:
    found = await run_in_threadpool(services(request).reconcile.operations, limit, before)
    return [op.to_json() for op in found]


@router.get("/operations/{operation_id}", summary="One correction")
async def operation(operation_id: int, request: Request, caller: Corrector) -> dict[str, Any]:
    return (await run_in_threadpool(services(request).reconcile.operation, operation_id)).to_json()
