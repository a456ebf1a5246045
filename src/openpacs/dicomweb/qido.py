"""QIDO-RS (PS3.18 10.6): search for studies, series and instances, with the matching of C-FIND."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from openpacs.dicomweb.media import DICOM_JSON, wants
from openpacs.dicomweb.urls import base_url, retrieve_url
from openpacs.domain.errors import InvalidQuery
from openpacs.domain.identifiers import build_identifier
from openpacs.domain.matching import Model
from openpacs.domain.tags import Level
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/dicom-web", tags=["QIDO-RS"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
_LEVEL_KEY = "00080052"
_MAX_PAGING = 1_000_000_000


def _parameters(request: Request) -> tuple[dict[str, str], list[str], bool, int | None, int]:
    keys: dict[str, str] = {}
    includes: list[str] = []
    fuzzy = False
    limit: int | None = None
    offset = 0
    for name, value in request.query_params.multi_items():
        if name == "includefield":
            includes.extend(v.strip() for v in value.split(",") if v.strip())
        elif name == "fuzzymatching":
            fuzzy = value.lower() == "true"
        elif name in ("limit", "offset"):
            try:
                number = int(value)
            except ValueError as exc:
                raise InvalidQuery(f"{name} must be a number") from exc
            if number < 0:
                raise InvalidQuery(f"{name} must not be negative")
            if number > _MAX_PAGING:
                raise InvalidQuery(f"{name} must be at most {_MAX_PAGING}")
            if name == "limit":
                limit = number
            else:
                offset = number
        else:
            keys[name] = keys[name] + "\\" + value if name in keys else value
    return keys, includes, fuzzy, limit, offset


async def _search(request: Request, caller: Principal, level: Level, fixed: dict[str, str]) -> Response:
    wants(request.headers.get("accept"), DICOM_JSON, "application/json")
    svc = services(request)
    keys, includes, fuzzy, limit, offset = _parameters(request)
    keys.update(fixed)
    everything = "all" in includes
    identifier = build_identifier(level, keys, [i for i in includes if i != "all"], fuzzy=fuzzy)
    query = svc.query.parse(identifier, Model.STUDY_ROOT)
    base = base_url(request)

    def run() -> list[dict[str, Any]]:
        out = []
        for answer in svc.query.find(query, caller.actor, limit=limit, offset=offset, everything=everything):
            answer.pop(_LEVEL_KEY, None)
            answer["00081190"] = {"vr": "UR", "Value": [retrieve_url(base, level, answer)]}
            out.append(answer)
        return out

    answers = await run_in_threadpool(run)
    return Response(orjson.dumps(answers), media_type=DICOM_JSON)


@router.get("/studies", summary="Search for studies")
async def studies(request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.STUDY, {})


@router.get("/series", summary="Search for series")
async def all_series(request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.SERIES, {})


@router.get("/instances", summary="Search for instances")
async def all_instances(request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.IMAGE, {})


@router.get("/studies/{study}/series", summary="Search for a study's series")
async def study_series(study: str, request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.SERIES, {"StudyInstanceUID": study})


@router.get("/studies/{study}/instances", summary="Search for a study's instances")
async def study_instances(study: str, request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.IMAGE, {"StudyInstanceUID": study})


@router.get("/studies/{study}/series/{series}/instances", summary="Search for a series' instances")
async def series_instances(study: str, series: str, request: Request, caller: Reader) -> Response:
    return await _search(request, caller, Level.IMAGE, {"StudyInstanceUID": study, "SeriesInstanceUID": series})
