"""The HL7 message store under /api/hl7 (admins), as ``openpacs hl7 ...``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.hl7 import MessageQuery
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/api/hl7", tags=["hl7"])
Interface = Annotated[Principal, Depends(require(Permission.HL7))]
Text = Annotated[str, Query(max_length=200)]


@router.get("/messages", summary="Search the HL7 message store, newest first")
async def messages(
    request: Request,
    caller: Interface,
    type: Annotated[str, Query(max_length=16, description="Message type (MSH-9.1), e.g. ADT.")] = "",
    trigger: Annotated[str, Query(max_length=16, description="Trigger event (MSH-9.2), e.g. A08.")] = "",
    patient_id: Text = "",
    accession: Text = "",
    status: Annotated[
        Literal["", "received", "processed", "failed", "skipped", "rejected", "queued", "sent"], Query()
    ] = "",
    direction: Annotated[Literal["", "in", "out"], Query(description="in: received; out: sent by us.")] = "",
    control_id: Text = "",
    sender: Annotated[str, Query(max_length=200, description="Sending application or facility.")] = "",
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    text: Annotated[str, Query(max_length=200, description="Free text in the raw message.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="Only messages older than this id.")] = None,
) -> dict[str, Any]:
    svc = services(request).hl7
    query = MessageQuery(type, trigger, patient_id, accession, status, control_id, sender, since, until, text, limit,
                         before, direction)  # fmt: skip
    found = await run_in_threadpool(svc.messages, query)
    return {"counts": await run_in_threadpool(svc.counts), "messages": [m.to_json() for m in found]}


@router.get("/messages/{message_id}", summary="A message: raw, and its segments and fields")
async def show(message_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, caller: Interface) -> dict[str, Any]:
    return await run_in_threadpool(services(request).hl7.show, message_id)


class MessageIds(BaseModel):
    """Messages of the store, by id."""

    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=10000, description="Message ids.")


@router.get("/errors", summary="The error queue: failed messages, oldest first, with what they hold back")
async def errors(request: Request, caller: Interface, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    return await run_in_threadpool(services(request).hl7.error_queue, limit)


@router.post("/messages/reprocess", summary="Apply messages again (after fixing a mapping, say)")
async def reprocess(body: MessageIds, request: Request, caller: Interface) -> dict[str, Any]:
    done = await run_in_threadpool(services(request).hl7.reprocess, body.ids, caller.actor)
    return {"requeued": done}


@router.post("/messages/skip", summary="Set failed or waiting messages aside; what they held back goes on")
async def skip(body: MessageIds, request: Request, caller: Interface) -> dict[str, Any]:
    done = await run_in_threadpool(services(request).hl7.skip, body.ids, caller.actor)
    return {"skipped": done}
