"""Browsing patients, studies, series and instances (with the C-FIND matching), and delete."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from openpacs.domain import dicom_json as dj
from openpacs.domain.identifiers import build_identifier
from openpacs.domain.matching import Model
from openpacs.domain.tags import Level, keyword_of
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services
from openpacs.http.urls import viewer_url

router = APIRouter(prefix="/api", tags=["archive"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Deleter = Annotated[Principal, Depends(require(Permission.DELETE))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Answers to skip")]
Match = Annotated[str | None, Query(max_length=200, description="C-FIND matching: single value, * and ?, ranges")]

_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(keyword: str) -> str:
    """'SOPInstanceUID' -> 'sop_instance_uid' (the API's names of DICOM attributes)."""
    return _WORD.sub("_", keyword).lower()


def flat(answer: dict[str, Any]) -> dict[str, Any]:
    """A DICOM JSON answer as {snake_case keyword: value} (lists for multi-valued)."""
    out: dict[str, Any] = {}
    for key, element in answer.items():
        keyword = keyword_of(int(key, 16))
        if keyword == "QueryRetrieveLevel":
            continue
        values = [
            dj.person_name_text(v) if isinstance(v, dict) and element.get("vr") == "PN" else v
            for v in (element.get("Value") or [])
        ]
        if element.get("vr") == "SQ":
            out[snake(keyword)] = [flat(item) for item in values if isinstance(item, dict)]
        elif keyword in ("ModalitiesInStudy", "SOPClassesInStudy"):
            out[snake(keyword)] = values
        else:
            out[snake(keyword)] = values[0] if len(values) == 1 else (values or None)
    return out


class Deleted(BaseModel):
    """What a delete removed."""

    studies: int
    series: int
    instances: int


async def _search(
    request: Request,
    caller: Principal,
    level: Level,
    keys: dict[str, str | None],
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    svc = services(request)
    identifier = build_identifier(level, {k: v for k, v in keys.items() if v})
    model = Model.PATIENT_ROOT if level is Level.PATIENT else Model.STUDY_ROOT
    query = svc.query.parse(identifier, model)

    def run() -> list[dict[str, Any]]:
        return [flat(a) for a in svc.query.find(query, caller.actor, limit=limit, offset=offset)]

    answers = await run_in_threadpool(run)
    if level is Level.STUDY:
        for study in answers:
            study["viewer_url"] = viewer_url(request, study["study_instance_uid"])
    return answers


@router.get("/patients", summary="Find patients")
async def patients(
    request: Request,
    caller: Reader,
    patient_id: Match = None,
    patient_name: Match = None,
    patient_birth_date: Match = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    keys = {"PatientID": patient_id, "PatientName": patient_name, "PatientBirthDate": patient_birth_date}
    return await _search(request, caller, Level.PATIENT, keys, limit, offset)


@router.get("/studies", summary="Find studies")
async def studies(
    request: Request,
    caller: Reader,
    patient_id: Match = None,
    patient_name: Match = None,
    study_date: Match = None,
    accession_number: Match = None,
    modality: Match = None,
    study_description: Match = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Studies matching every filter given (the matching rules of C-FIND), with "open in viewer" links."""
    keys = {
        "PatientID": patient_id,
        "PatientName": patient_name,
        "StudyDate": study_date,
        "AccessionNumber": accession_number,
        "ModalitiesInStudy": modality,
        "StudyDescription": study_description,
    }
    return await _search(request, caller, Level.STUDY, keys, limit, offset)


@router.get("/studies/{study_uid}/series", summary="The series of a study")
async def study_series(
    study_uid: str, request: Request, caller: Reader, limit: Limit = 1000, offset: Offset = 0
) -> list[dict[str, Any]]:
    return await _search(request, caller, Level.SERIES, {"StudyInstanceUID": study_uid}, limit, offset)


@router.get("/series/{series_uid}/instances", summary="The instances of a series")
async def series_instances(
    series_uid: str, request: Request, caller: Reader, limit: Limit = 1000, offset: Offset = 0
) -> list[dict[str, Any]]:
    return await _search(request, caller, Level.IMAGE, {"SeriesInstanceUID": series_uid}, limit, offset)


async def _delete(
    request: Request, caller: Principal, level: Level, uid: str, reason: str, force: bool = False
) -> Deleted:
    deleted = await run_in_threadpool(
        lambda: services(request).deletion.delete(level, uid, caller.actor, reason, force=force)
    )
    return Deleted(studies=deleted.studies, series=deleted.series, instances=deleted.instances)


Reason = Annotated[str, Query(max_length=400, description="Why (kept in the audit)")]
Force = Annotated[
    bool, Query(description="Delete instances this archive committed to (storage commitment) all the same.")
]


@router.delete("/studies/{study_uid}", summary="Delete a study (admin)")
async def delete_study(
    study_uid: str, request: Request, caller: Deleter, reason: Reason = "", force: Force = False
) -> Deleted:
    return await _delete(request, caller, Level.STUDY, study_uid, reason, force)


@router.delete("/series/{series_uid}", summary="Delete a series (admin)")
async def delete_series(
    series_uid: str, request: Request, caller: Deleter, reason: Reason = "", force: Force = False
) -> Deleted:
    return await _delete(request, caller, Level.SERIES, series_uid, reason, force)


@router.delete("/instances/{sop_instance_uid}", summary="Delete an instance (admin)")
async def delete_instance(
    sop_instance_uid: str, request: Request, caller: Deleter, reason: Reason = "", force: Force = False
) -> Deleted:
    return await _delete(request, caller, Level.IMAGE, sop_instance_uid, reason, force)
