"""Reading worklists for radiologists under /api/reading (the reading permission).

The list (filters as query parameters, or a saved filter by name), unread counts, saved
filters (a user's own, or shared ones that administrators keep), and claim/release of a
study: one reader at a time, and everyone sees who reads what.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.errors import NotAuthorized
from openpacs.domain.reading_list import ReadingCriteria
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/api/reading", tags=["reading"])
Reader = Annotated[Principal, Depends(require(Permission.READING))]
Uid = Annotated[str, Path(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]
FilterName = Annotated[str, Path(min_length=1, max_length=64)]
Listed = Annotated[str, Query(max_length=1000, description="Comma-separated values.")]


class FilterBody(BaseModel):
    criteria: dict[str, Any] = Field(
        description="modalities, body_parts, priorities, statuses, departments (lists), worklist, min_age_minutes,"
        " max_age_minutes, unclaimed, mine"
    )
    shared: bool = Field(False, description="A filter every reader sees (administrators only).")


def _shared_allowed(caller: Principal, shared: bool) -> None:
    if shared and not caller.user.can(Permission.WORKFLOW):
        raise NotAuthorized("only administrators keep shared reading filters")


@router.get("", summary="A reading list: priority first (STAT), then longest waiting")
async def reading_list(
    request: Request,
    caller: Reader,
    filter: Annotated[str, Query(max_length=64, description="A saved filter's name (instead of the others).")] = "",
    modalities: Listed = "",
    body_parts: Listed = "",
    priorities: Listed = "",
    statuses: Listed = "",
    departments: Listed = "",
    worklist: Annotated[str, Query(max_length=64, description="A reading worklist rules assign to.")] = "",
    min_age_minutes: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
    max_age_minutes: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
    unclaimed: bool = False,
    mine: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    service = services(request).reading
    if filter:
        criteria = await run_in_threadpool(service.criteria_of, filter, caller.user.name)
    else:
        given: dict[str, Any] = {
            "modalities": modalities, "body_parts": body_parts, "priorities": priorities, "statuses": statuses,
            "departments": departments, "worklist": worklist, "min_age_minutes": min_age_minutes,
            "max_age_minutes": max_age_minutes, "unclaimed": unclaimed, "mine": mine,
        }  # fmt: skip
        criteria = ReadingCriteria.from_json({k: v for k, v in given.items() if v not in ("", None, False)})
    found = await run_in_threadpool(service.items, criteria, caller.user.name, limit)
    return {"criteria": criteria.to_json(), "studies": [i.to_json() for i in found]}


@router.get("/counts", summary="Unread studies, in all and per saved filter")
async def counts(request: Request, caller: Reader) -> dict[str, Any]:
    return await run_in_threadpool(services(request).reading.counts, caller.user.name)


@router.get("/filters", summary="The caller's saved filters and the shared ones")
async def filters(request: Request, caller: Reader) -> list[dict[str, Any]]:
    found = await run_in_threadpool(services(request).reading.filters, caller.user.name)
    return [f.to_json() for f in found]


@router.get("/filters/{name}", summary="A saved filter: the caller's own of that name, else the shared one")
async def saved_filter(name: FilterName, request: Request, caller: Reader) -> dict[str, Any]:
    found = await run_in_threadpool(services(request).reading.saved_filter, name, caller.user.name)
    return found.to_json()


@router.put("/filters/{name}", summary="Save a filter (the caller's own, or shared)")
async def save_filter(name: FilterName, body: FilterBody, request: Request, caller: Reader) -> dict[str, Any]:
    _shared_allowed(caller, body.shared)
    criteria = ReadingCriteria.from_json(body.criteria)
    saved = await run_in_threadpool(
        lambda: services(request).reading.save_filter(name, criteria, caller.actor, shared=body.shared)
    )
    return saved.to_json()


@router.delete("/filters/{name}", summary="Delete a saved filter", status_code=204)
async def delete_filter(name: FilterName, request: Request, caller: Reader, shared: bool = False) -> Response:
    _shared_allowed(caller, shared)
    await run_in_threadpool(lambda: services(request).reading.delete_filter(name, caller.actor, shared=shared))
    return Response(status_code=204)


@router.post("/{study_uid}/claim", summary="Claim a study to read it (409 naming the reader if taken)")
async def claim(study_uid: Uid, request: Request, caller: Reader) -> dict[str, Any]:
    return await run_in_threadpool(services(request).reading.claim, study_uid, caller.actor)


@router.post("/{study_uid}/release", summary="Give a study back (its reader; administrators with force)")
async def release(study_uid: Uid, request: Request, caller: Reader, force: bool = False) -> dict[str, Any]:
    if force and not caller.user.can(Permission.WORKFLOW):
        raise NotAuthorized("only administrators release another reader's study")
    await run_in_threadpool(lambda: services(request).reading.release(study_uid, caller.actor, force=force))
    return {"study_instance_uid": study_uid, "released": True}
