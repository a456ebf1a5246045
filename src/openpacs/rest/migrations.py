"""Migrations under /api/migrations (admins), as ``openpacs migrate ...``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(tags=["migrations"])
Operator = Annotated[Principal, Depends(require(Permission.ROUTING))]
Window = Annotated[
    str, Field(min_length=1, max_length=60, description="[DAYS] [HH:MM-HH:MM], e.g. 'Mon-Fri 20:00-06:00'")
]


class Throttle(BaseModel):
    rate: float = Field(default=0, ge=0, le=100_000, description="At most this many instances a second (0: no limit).")
    windows: list[Window] = Field(default_factory=list, max_length=20, description="Allowed time windows, local time.")


class FromNode(Throttle):
    node: str = Field(min_length=1, max_length=64)
    since: str = Field(default="", max_length=10, description="First study date, YYYYMMDD.")
    until: str = Field(default="", max_length=10, description="Last study date, YYYYMMDD.")
    via: Literal["move", "get"] = "move"


class FromFolder(Throttle):
    path: str = Field(min_length=1, max_length=4096, description="A folder as the server sees it.")


@router.post("/api/migrations/from-node", summary="Migrate a node's studies (C-FIND, then C-MOVE or C-GET)",
             status_code=202)  # fmt: skip
async def from_node(body: FromNode, request: Request, caller: Operator) -> dict[str, Any]:
    svc = services(request).migration
    job = await run_in_threadpool(
        lambda: svc.from_node(
            body.node,
            caller.actor,
            since=body.since,
            until=body.until,
            via=body.via,
            rate=body.rate,
            windows=list(body.windows),
        )
    )
    return job.to_json()


@router.post("/api/migrations/from-folder", summary="Import a folder tree as a migration", status_code=202)
async def from_folder(body: FromFolder, request: Request, caller: Operator) -> dict[str, Any]:
    svc = services(request).migration
    job = await run_in_threadpool(
        lambda: svc.from_folder(body.path, caller.actor, rate=body.rate, windows=list(body.windows))
    )
    return job.to_json()


@router.get("/api/migrations/{job_id}", summary="A migration's progress and verification report")
async def report(
    job_id: int,
    request: Request,
    caller: Operator,
    state: Annotated[list[str] | None, Query(description="Only studies in these states (e.g. mismatch).")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> dict[str, Any]:
    svc = services(request).migration
    return await run_in_threadpool(lambda: svc.report(job_id, states=state, limit=limit))
