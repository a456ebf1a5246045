"""Health, statistics, system information, the change feed, the audit trail and the reconciliation inbox."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(tags=["system"])


class StatsOut(BaseModel):
    """Counts of the archive."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int


class ChangeOut(BaseModel):
    """One row of the change feed."""

    seq: int
    change_type: str
    level: str
    resource: str
    time: str


class ChangesOut(BaseModel):
    """A page of the change feed: resume with ``since=last``."""

    changes: list[ChangeOut]
    last: int
    done: bool


@router.get("/health", summary="Liveness and readiness (no authentication)")
async def health(request: Request) -> JSONResponse:
    """200 with the state of the index when the server can serve; 503 when the index fails."""
    svc = services(request)
    body: dict[str, Any] = {
        "status": "ok",
        "version": svc.settings.version,
        "ae_title": svc.settings.ae_title,
        "dicom_port": svc.settings.dicom_port,
    }
    try:
        body.update(await run_in_threadpool(svc.archive.health))
    except Exception as exc:
        return JSONResponse({"status": "error", "reason": f"index unavailable: {exc}"}, status_code=503)
    return JSONResponse(body)


@router.get("/api/stats", summary="Counts of patients, studies, series, instances and bytes")
async def stats(request: Request, caller: Annotated[Principal, Depends(require(Permission.READ))]) -> StatsOut:
    counts = await run_in_threadpool(services(request).archive.stats)
    return StatsOut(**counts.__dict__)


@router.get("/api/system", summary="System information")
async def system(request: Request, caller: Annotated[Principal, Depends(require(Permission.SYSTEM))]) -> dict[str, Any]:
    svc = services(request)
    return {
        "version": svc.settings.version,
        "ae_title": svc.settings.ae_title,
        "dicom_port": svc.settings.dicom_port,
        **svc.settings.details,
        **(await run_in_threadpool(svc.archive.health)),
    }


@router.get("/api/changes", summary="The change feed, in commit order, resumable")
async def changes(
    request: Request,
    caller: Annotated[Principal, Depends(require(Permission.CHANGES))],
    since: Annotated[int, Query(ge=0, le=2**62, description="Last sequence number already seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangesOut:
    """Every stored, modified and deleted resource after ``since``, oldest first."""
    rows = await run_in_threadpool(services(request).archive.changes_since, since, limit)
    out = [
        ChangeOut(
            seq=c.seq, change_type=c.change_type, level=str(c.level), resource=c.resource, time=c.time.isoformat()
        )
        for c in rows
    ]
    return ChangesOut(changes=out, last=out[-1].seq if out else since, done=len(out) < limit)


@router.get("/api/audit", summary="The audit trail, oldest first")
async def audit(
    request: Request,
    caller: Annotated[Principal, Depends(require(Permission.AUDIT))],
    since: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    entries = await run_in_threadpool(services(request).archive.audit, since, limit)
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in e.items()} for e in entries]


@router.get("/api/conflicts", summary="Open identity conflicts (the reconciliation inbox)")
async def conflicts(
    request: Request, caller: Annotated[Principal, Depends(require(Permission.AUDIT))]
) -> list[dict[str, Any]]:
    return [c.__dict__ for c in await run_in_threadpool(services(request).archive.identity_conflicts)]
