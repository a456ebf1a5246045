"""WADO-URI (PS3.18 9): ``/wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from openpacs.dicomweb.media import DICOM, NotAcceptable
from openpacs.domain.errors import InvalidQuery
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services
from openpacs.http.streaming import in_batches
from openpacs.services.rendering import MEDIA_TYPES, RenderRequest

router = APIRouter(tags=["WADO-URI"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
UID = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9.]+$")]


@router.get("/wado", summary="Retrieve an object (WADO-URI)")
async def wado(
    request: Request,
    caller: Reader,
    studyUID: UID,  # noqa: N803 - the parameter names of PS3.18 9.1
    seriesUID: UID,  # noqa: N803
    objectUID: UID,  # noqa: N803
    requestType: Annotated[str, Query()] = "WADO",  # noqa: N803
    contentType: Annotated[str, Query()] = "image/jpeg",  # noqa: N803
    transferSyntax: Annotated[str | None, Query()] = None,  # noqa: N803
    frameNumber: Annotated[int, Query(ge=1)] = 1,  # noqa: N803
    windowCenter: Annotated[float | None, Query()] = None,  # noqa: N803
    windowWidth: Annotated[float | None, Query()] = None,  # noqa: N803
    rows: Annotated[int | None, Query(ge=1, le=8192)] = None,
    columns: Annotated[int | None, Query(ge=1, le=8192)] = None,
    imageQuality: Annotated[int, Query(ge=1, le=100)] = 90,  # noqa: N803
) -> Response:
    """``contentType=application/dicom`` gives the object (in ``transferSyntax``, default Explicit VR
    Little Endian); ``image/jpeg`` (the default) and ``image/png`` a rendered image."""
    if requestType != "WADO":
        raise InvalidQuery("requestType must be WADO")
    svc = services(request)
    (instance,) = await run_in_threadpool(svc.retrieve.instances, studyUID, seriesUID, objectUID)
    svc.retrieve.record_read(caller.actor, "wado-uri", [{"level": "IMAGE", "uid": objectUID}], {})
    content_type = contentType.split(",")[0].strip()
    if content_type == DICOM:
        accepted = (transferSyntax or "1.2.840.10008.1.2.1",)
        syntax, chunks = await run_in_threadpool(svc.parts.part10, instance, accepted)
        return StreamingResponse(in_batches(chunks), media_type=DICOM, headers={"X-Transfer-Syntax": syntax})
    if content_type not in MEDIA_TYPES:
        raise NotAcceptable(f"contentType is {DICOM}, {' or '.join(MEDIA_TYPES)}")
    window = (windowCenter, windowWidth) if windowCenter is not None and windowWidth is not None else None
    viewport = (columns or rows or 8192, rows or columns or 8192) if rows or columns else None
    render = RenderRequest(
        frame=frameNumber, window=window, viewport=viewport, quality=imageQuality, media_type=content_type
    )
    data = await run_in_threadpool(svc.rendering.render, instance, render)
    return Response(data, media_type=content_type)
