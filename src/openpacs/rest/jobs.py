"""Jobs under /api/jobs and alerts under /api/alerts (admins), as ``openpacs jobs ...``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(tags=["jobs"])
Operator = Annotated[Principal, Depends(require(Permission.ROUTING))]
States = Literal["pending", "running", "paused", "done", "failed", "cancelled"]


@router.get("/api/jobs", summary="The jobs, newest first")
async def list_jobs(
    request: Request,
    caller: Operator,
    state: Annotated[States | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    svc = services(request).jobs
    found = await run_in_threadpool(svc.jobs, state, limit, before)
    return {"counts": await run_in_threadpool(svc.counts), "jobs": [j.to_json() for j in found]}


class ForwardRequest(BaseModel):
    study: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")
    node: str = Field(min_length=1, max_length=64)
    transfer_syntax: str = Field(default="", max_length=64, pattern=r"^([0-9]+(\.[0-9]+)*)?$")


@router.post("/api/jobs/forward", summary="Send a stored study to a node (a forwarding job)", status_code=202)
async def forward(body: ForwardRequest, request: Request, caller: Operator) -> dict[str, Any]:
    svc = services(request).jobs
    job = await run_in_threadpool(
        lambda: svc.forward(body.study, body.node, caller.actor, transfer_syntax=body.transfer_syntax)
    )
    return job.to_json()


@router.get("/api/jobs/{job_id}", summary="A job, with the instances it parked")
async def show_job(job_id: int, request: Request, caller: Operator) -> dict[str, Any]:
    return await run_in_threadpool(services(request).jobs.show, job_id)


@router.post("/api/jobs/{job_id}/{action}", summary="retry, cancel, pause or resume a job")
async def change_job(
    job_id: int, action: Literal["retry", "cancel", "pause", "resume"], request: Request, caller: Operator
) -> dict[str, Any]:
    svc = services(request).jobs
    method = {"retry": svc.retry, "cancel": svc.cancel, "pause": svc.pause, "resume": svc.resume}[action]
    return (await run_in_threadpool(method, job_id, caller.actor)).to_json()


@router.get("/api/alerts", summary="Alerts (parked instances, failed jobs), newest first")
async def list_alerts(
    request: Request,
    caller: Operator,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return await run_in_threadpool(services(request).jobs.alerts, limit, open_only)


@router.post("/api/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert", status_code=204)
async def acknowledge_alert(alert_id: int, request: Request, caller: Operator) -> None:
    await run_in_threadpool(services(request).jobs.acknowledge, alert_id, caller.actor)


class RemoteFind(BaseModel):
    level: Literal["PATIENT", "STUDY", "SERIES", "IMAGE"] = "STUDY"
    keys: dict[str, str] = Field(default_factory=dict, description="Keyword -> value ('' to get it back).")


class RemoteRetrieve(BaseModel):
    level: Literal["STUDY", "SERIES", "IMAGE"] = "STUDY"
    via: Literal["move", "get"] = "move"
    uids: list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]] = Field(
        min_length=1, max_length=1000
    )


@router.post("/api/remote/{node}/find", summary="C-FIND against another node")
async def remote_find(node: str, body: RemoteFind, request: Request, caller: Operator) -> list[dict[str, Any]]:
    svc = services(request).remote
    return await run_in_threadpool(svc.find, node, body.level, body.keys, caller.actor)


@router.post("/api/remote/{node}/retrieve", summary="Retrieve from another node (C-MOVE to us, or C-GET), as a job",
             status_code=202)  # fmt: skip
async def remote_retrieve(node: str, body: RemoteRetrieve, request: Request, caller: Operator) -> dict[str, Any]:
    svc = services(request).remote
    job = await run_in_threadpool(lambda: svc.retrieve(node, body.level, body.uids, caller.actor, via=body.via))
    return job.to_json()
