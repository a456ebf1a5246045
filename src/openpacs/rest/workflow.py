"""The radiology workflow under /api/procedures, /api/mpps and /api/commitments.

Requested procedures with their status (queryable: "completed for more than 2 hours"), the
studies linked to each and how; performed procedure steps received (MPPS); storage
commitment requests answered. Reading needs the read permission; linking a study by hand
or setting a status needs the workflow permission.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.orders import PROCEDURE_STATUSES
from openpacs.domain.users import Permission
from openpacs.domain.workflow import MPPS_STATUSES, PENDING, REPORTED, UNDELIVERABLE
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(tags=["workflow"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Scheduler = Annotated[Principal, Depends(require(Permission.WORKFLOW))]
ProcedureId = Annotated[int, Path(ge=1, le=2**62)]
Uid = Annotated[str, Path(max_length=64, pattern=r"^[0-9.]+$")]


class LinkBody(BaseModel):
    study_instance_uid: Annotated[str, Field(max_length=64, pattern=r"^[0-9.]+$")]


class ProcedureStatusBody(BaseModel):
    status: Annotated[str, Field(max_length=16, description=f"One of {', '.join(PROCEDURE_STATUSES)}.")]
    force: bool = Field(False, description="Allow a status the model would not move to (backwards).")


@router.get("/api/procedures", summary="Requested procedures by status, longest in it first")
async def procedures(
    request: Request,
    caller: Reader,
    status: Annotated[list[str] | None, Query(description="Procedure statuses (default: all).")] = None,
    older_than_minutes: Annotated[int | None, Query(ge=0, le=10_000_000, description="In it for longer.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    statuses = status or []
    unknown = [s for s in statuses if s not in PROCEDURE_STATUSES]
    if unknown:
        raise HTTPException(400, f"unknown status {unknown[0]!r}: one of {', '.join(PROCEDURE_STATUSES)}")
    older = timedelta(minutes=older_than_minutes) if older_than_minutes is not None else None
    found = await run_in_threadpool(
        lambda: services(request).procedures.procedures(statuses=statuses, older_than=older, limit=limit)
    )
    return {"procedures": found}


@router.get("/api/procedures/{procedure_id}", summary="A requested procedure: status history, steps, studies")
async def procedure(procedure_id: ProcedureId, request: Request, caller: Reader) -> dict[str, Any]:
    return await run_in_threadpool(services(request).procedures.procedure, procedure_id)


@router.post("/api/procedures/{procedure_id}/studies", summary="Link a study to the procedure by hand")
async def link_study(procedure_id: ProcedureId, body: LinkBody, request: Request, caller: Scheduler) -> Any:
    return await run_in_threadpool(
        services(request).procedures.link, procedure_id, body.study_instance_uid, caller.actor
    )


@router.delete("/api/procedures/{procedure_id}/studies/{study_uid}", summary="Remove a study's link")
async def unlink_study(procedure_id: ProcedureId, study_uid: Uid, request: Request, caller: Scheduler) -> Any:
    return await run_in_threadpool(services(request).procedures.unlink, procedure_id, study_uid, caller.actor)


@router.post("/api/procedures/{procedure_id}/status", summary="Set a procedure's status by hand (audited)")
async def procedure_status(
    procedure_id: ProcedureId, body: ProcedureStatusBody, request: Request, caller: Scheduler
) -> Any:
    if body.status not in PROCEDURE_STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(PROCEDURE_STATUSES)}")
    return await run_in_threadpool(
        lambda: services(request).procedures.set_status(procedure_id, body.status, caller.actor, force=body.force)
    )


@router.get("/api/mpps", summary="Performed procedure steps received (MPPS), newest first")
async def mpps_list(
    request: Request,
    caller: Reader,
    status: Annotated[str, Query(max_length=16, description="IN PROGRESS, COMPLETED or DISCONTINUED.")] = "",
    study_instance_uid: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if status and status not in MPPS_STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(MPPS_STATUSES)}")
    found = await run_in_threadpool(
        lambda: services(request).mpps.steps(status=status, study_instance_uid=study_instance_uid, limit=limit)
    )
    return {"mpps": [m.to_json() for m in found]}


@router.get("/api/mpps/{sop_instance_uid}", summary="One performed procedure step, with its attributes")
async def mpps(sop_instance_uid: Uid, request: Request, caller: Reader) -> dict[str, Any]:
    found = await run_in_threadpool(services(request).mpps.get, sop_instance_uid)
    if found is None:
        raise HTTPException(404, f"no MPPS {sop_instance_uid}")
    return found.to_json()


@router.get("/api/commitments", summary="Storage commitment requests we answered (we are the SCP)")
async def commitments(
    request: Request,
    caller: Reader,
    state: Annotated[str, Query(max_length=16, description=f"{PENDING}, {REPORTED} or {UNDELIVERABLE}.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if state and state not in (PENDING, REPORTED, UNDELIVERABLE):
        raise HTTPException(400, f"state must be one of {PENDING}, {REPORTED}, {UNDELIVERABLE}")
    found = await run_in_threadpool(lambda: services(request).commitment_scp.requests(state=state, limit=limit))
    return {"requests": [r.to_json() for r in found]}
