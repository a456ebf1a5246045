"""Orders, the worklist and reports under /api/orders, /api/worklist, /api/reports.

Orders and worklist entries come from HL7 ORM/OMI messages; reports from ORU^R01. Reading
them needs the read permission (radiologists and technologists read them every day). Worklist
entries can also be added, changed and cancelled here (the workflow permission).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.orders import PROCEDURE_STATUSES, STEP_STATUSES
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(tags=["orders"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Text = Annotated[str, Query(max_length=64)]
_DATE = re.compile(r"^\d{8}$")


@router.get("/api/orders", summary="Orders, newest first, with their procedures and steps")
async def orders(
    request: Request,
    caller: Reader,
    patient_id: Text = "",
    accession: Text = "",
    status: Annotated[str, Query(max_length=16, description="A procedure status.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    if status and status not in PROCEDURE_STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(PROCEDURE_STATUSES)}")
    found = await run_in_threadpool(
        lambda: services(request).orders.orders(
            patient_id=patient_id, accession=accession, status=status, limit=limit, before=before
        )
    )
    return {"orders": [o.to_json() for o in found]}


@router.get("/api/orders/{order_id}", summary="An order, its procedures with their status history and reports")
async def order(order_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, caller: Reader) -> dict[str, Any]:
    return await run_in_threadpool(services(request).orders.order, order_id)


@router.get("/api/worklist", summary="Scheduled procedure steps (worklist items), by start date and time")
async def worklist(
    request: Request,
    caller: Reader,
    date: Annotated[str, Query(max_length=8, description="Start date, YYYYMMDD.")] = "",
    modality: Annotated[str, Query(max_length=16)] = "",
    station_ae_title: Annotated[str, Query(max_length=16)] = "",
    patient_id: Text = "",
    status: Annotated[list[str] | None, Query(description="Step statuses (default: all).")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    if date and not _DATE.match(date):
        raise HTTPException(400, "date must be YYYYMMDD")
    statuses = [s.upper() for s in status or []]
    unknown = [s for s in statuses if s not in STEP_STATUSES]
    if unknown:
        raise HTTPException(400, f"unknown status {unknown[0]!r}: one of {', '.join(STEP_STATUSES)}")
    found = await run_in_threadpool(
        lambda: services(request).orders.worklist(
            patient_id=patient_id,
            date=date,
            modality=modality,
            station_ae_title=station_ae_title,
            statuses=statuses,
            limit=limit,
        )
    )
    return {"items": [s.to_json() for s in found]}


@router.get("/api/reports", summary="Reports received (ORU^R01), newest first")
async def reports(
    request: Request,
    caller: Reader,
    accession: Text = "",
    patient_id: Text = "",
    status: Annotated[Literal["", "preliminary", "final", "amended"], Query()] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    found = await run_in_threadpool(
        lambda: services(request).orders.reports(
            accession=accession, patient_id=patient_id, status=status, limit=limit, before=before
        )
    )
    return {"reports": [r.to_json() for r in found]}


@router.get("/api/reports/{report_id}", summary="A report: its text, status and what it is linked to")
async def report(report_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, caller: Reader) -> dict[str, Any]:
    found = await run_in_threadpool(services(request).orders.report, report_id)
    return found.to_json()


@router.get("/api/reports/{report_id}/content", summary="The report as received: text, PDF or CDA document")
async def content(report_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, caller: Reader) -> Response:
    found = await run_in_threadpool(services(request).orders.report, report_id)
    media = found.entry.content_type
    if media.startswith("text/"):
        media += "; charset=utf-8"
    return Response(
        found.entry.content, media_type=media, headers={"Content-Disposition": f"inline; filename=report-{report_id}"}
    )


Scheduler = Annotated[Principal, Depends(require(Permission.WORKFLOW))]
EntryId = Annotated[int, Path(ge=1, le=2**62)]
ItemBody = Annotated[
    dict[str, Any],
    Body(
        description="The worklist item as DICOM JSON (PS3.18 F.2): patient, requested procedure and one"
        " Scheduled Procedure Step Sequence (0040,0100) item (PS3.4 K.6.1)."
    ),
]


class StatusBody(BaseModel):
    status: Annotated[str, Field(max_length=16, description=f"One of {', '.join(STEP_STATUSES)}.")]


@router.post("/api/worklist", status_code=201, summary="Add a worklist entry from a DICOM JSON worklist item")
async def create_entry(item: ItemBody, request: Request, caller: Scheduler) -> dict[str, Any]:
    found = await run_in_threadpool(services(request).worklist.create, item, caller.actor)
    return {"items": [s.to_json() for s in found]}


@router.get("/api/worklist/{entry_id}", summary="A worklist entry")
async def entry(entry_id: EntryId, request: Request, caller: Reader) -> dict[str, Any]:
    return (await run_in_threadpool(services(request).worklist.entry, entry_id)).to_json()


@router.put("/api/worklist/{entry_id}", summary="Replace a worklist entry's item")
async def update_entry(entry_id: EntryId, item: ItemBody, request: Request, caller: Scheduler) -> dict[str, Any]:
    return (await run_in_threadpool(services(request).worklist.update, entry_id, item, caller.actor)).to_json()


@router.post("/api/worklist/{entry_id}/status", summary="Set a worklist entry's Scheduled Procedure Step Status")
async def entry_status(entry_id: EntryId, body: StatusBody, request: Request, caller: Scheduler) -> dict[str, Any]:
    if body.status.upper() not in STEP_STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(STEP_STATUSES)}")
    found = await run_in_threadpool(services(request).worklist.set_status, entry_id, body.status, caller.actor)
    return found.to_json()


@router.delete("/api/worklist/{entry_id}", summary="Cancel a worklist entry (its step becomes DISCONTINUED)")
async def cancel_entry(entry_id: EntryId, request: Request, caller: Scheduler) -> dict[str, Any]:
    found = await run_in_threadpool(services(request).worklist.set_status, entry_id, "DISCONTINUED", caller.actor)
    return found.to_json()
