"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images, thumbnails."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from openpacs.dicomweb.media import (
    DICOM,
    DICOM_JSON,
    MULTIPART,
    OCTET_STREAM,
    Multipart,
    NotAcceptable,
    accepted,
    dicom_syntaxes,
    wants,
)
from openpacs.dicomweb.urls import base_url
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import InvalidQuery, NotFound
from openpacs.domain.records import StoredInstance
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import HttpServices, services
from openpacs.http.streaming import in_batches
from openpacs.services.metadata import metadata_json
from openpacs.services.rendering import MEDIA_TYPES, RenderRequest

router = APIRouter(prefix="/dicom-web", tags=["WADO-RS"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _instance_url(base: str, instance: StoredInstance) -> str:
    return (
        f"{base}/studies/{instance.study_instance_uid}/series/{instance.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


async def _instances(
    request: Request, caller: Principal, study: str, series: str, instance: str, action: str
) -> list[StoredInstance]:
    svc = services(request)
    found = await run_in_threadpool(svc.retrieve.instances, study, series, instance)
    resource = [{"level": "STUDY", "uid": study}] + ([{"level": "SERIES", "uid": series}] if series else [])
    if instance:
        resource.append({"level": "IMAGE", "uid": instance})
    svc.retrieve.record_read(caller.actor, action, resource, {"instances": len(found)})
    return found


def _retrieve(svc: HttpServices, found: list[StoredInstance], accept: str | None) -> StreamingResponse:
    syntaxes = dicom_syntaxes(accept)
    # refuse before the first byte when an explicit syntax cannot be produced (406, PS3.18 8.7.3.5.2)
    if syntaxes != ("*",):
        for instance in found:
            if tsx.choose(instance.transfer_syntax_uid, syntaxes) is None:
                raise NotAcceptable(
                    f"instance {instance.sop_instance_uid} is stored as {instance.transfer_syntax_uid} and "
                    f"cannot be converted to {syntaxes[0]} without loss"
                )
    body = Multipart(DICOM)

    def accepted(instance: StoredInstance) -> tuple[str, ...]:
        return (instance.transfer_syntax_uid,) if syntaxes == ("*",) else syntaxes

    def stream() -> Iterator[bytes | memoryview]:
        for instance in found:
            syntax, chunks = svc.parts.part10(instance, accepted(instance))
            yield from body.part(chunks, f"{DICOM}; transfer-syntax={syntax}")
        yield body.end()

    # files that go out as stored have known sizes: say the length, and the server need not
    # frame the body in chunks (each chunk is a copy)
    headers = {}
    sizes = [svc.parts.stored_size(i, accepted(i)) for i in found]
    if all(size is not None for size in sizes):
        total = len(body.end()) + sum(
            body.part_length(size or 0, f"{DICOM}; transfer-syntax={i.transfer_syntax_uid}")
            for i, size in zip(found, sizes, strict=True)
        )
        headers["Content-Length"] = str(total)
    return StreamingResponse(in_batches(stream()), media_type=body.content_type, headers=headers)


@router.get("/studies/{study}", summary="Retrieve a study")
async def retrieve_study(study: str, request: Request, caller: Reader) -> StreamingResponse:
    found = await _instances(request, caller, study, "", "", "wado-retrieve")
    return _retrieve(services(request), found, request.headers.get("accept"))


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series")
async def retrieve_series(study: str, series: str, request: Request, caller: Reader) -> StreamingResponse:
    found = await _instances(request, caller, study, series, "", "wado-retrieve")
    return _retrieve(services(request), found, request.headers.get("accept"))


@router.get("/studies/{study}/series/{series}/instances/{instance}", summary="Retrieve an instance")
async def retrieve_instance(
    study: str, series: str, instance: str, request: Request, caller: Reader
) -> StreamingResponse:
    found = await _instances(request, caller, study, series, instance, "wado-retrieve")
    return _retrieve(services(request), found, request.headers.get("accept"))


async def _metadata(request: Request, caller: Principal, study: str, series: str, instance: str) -> Response:
    wants(request.headers.get("accept"), DICOM_JSON, "application/json")
    found = await _instances(request, caller, study, series, instance, "wado-metadata")
    base = base_url(request)

    def answer() -> tuple[bytes, str]:
        body = metadata_json(found, lambda i: _instance_url(base, i))
        return body, '"' + hashlib.sha1(body, usedforsecurity=False).hexdigest() + '"'

    body, etag = await run_in_threadpool(answer)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    received = [i.received_at for i in found if i.received_at is not None]
    if received:
        latest = max(r if r.tzinfo else r.replace(tzinfo=UTC) for r in received)
        headers["Last-Modified"] = format_datetime(latest.astimezone(UTC), usegmt=True)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=DICOM_JSON, headers=headers)


@router.get("/studies/{study}/metadata", summary="A study's metadata (from the index)")
async def study_metadata(study: str, request: Request, caller: Reader) -> Response:
    return await _metadata(request, caller, study, "", "")


@router.get("/studies/{study}/series/{series}/metadata", summary="A series' metadata (from the index)")
async def series_metadata(study: str, series: str, request: Request, caller: Reader) -> Response:
    return await _metadata(request, caller, study, series, "")


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata", summary="An instance's metadata")
async def instance_metadata(study: str, series: str, instance: str, request: Request, caller: Reader) -> Response:
    return await _metadata(request, caller, study, series, instance)


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise InvalidQuery("frame numbers are positive integers separated by commas") from exc
    if not numbers or any(n < 1 for n in numbers):
        raise InvalidQuery("frame numbers are positive integers separated by commas")
    return numbers


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", summary="Frames")
async def frames(study: str, series: str, instance: str, frames: str, request: Request, caller: Reader) -> Response:
    """Uncompressed frames as application/octet-stream, or in the stored compressed syntax when the
    Accept header names it (``transfer-syntax=*`` or the stored UID)."""
    numbers = _frame_numbers(frames)
    (found,) = await _instances(request, caller, study, series, instance, "wado-frames")
    accept = request.headers.get("accept")
    wanted = dicom_syntaxes_for_frames(accept, found.transfer_syntax_uid)
    svc = services(request)
    syntax, pixels = await run_in_threadpool(svc.parts.frames, found, numbers, wanted != tsx.EXPLICIT_LE)
    media = OCTET_STREAM if tsx.is_uncompressed(syntax) else _frame_media(syntax)
    body = Multipart(media)
    chunks: list[bytes | memoryview] = []
    for pixel in pixels:
        chunks.extend(body.part([pixel], f"{media}; transfer-syntax={syntax}"))
    chunks.append(body.end())
    return Response(b"".join(chunks), media_type=body.content_type)


def _frame_media(syntax: str) -> str:
    return {
        tsx.JPEG_BASELINE: "image/jpeg",
        tsx.JPEG_EXTENDED: "image/jpeg",
        tsx.JPEG_LOSSLESS: "image/jpeg",
        tsx.JPEG_LOSSLESS_SV1: "image/jpeg",
        tsx.JPEG_LS_LOSSLESS: "image/jls",
        tsx.JPEG_LS_NEAR_LOSSLESS: "image/jls",
        tsx.JPEG_2000_LOSSLESS: "image/jp2",
        tsx.JPEG_2000: "image/jp2",
    }.get(syntax, OCTET_STREAM)


def dicom_syntaxes_for_frames(accept: str | None, stored: str) -> str:
    """The syntax of the frames (PS3.18 8.7.3.5.2, Table 8.7.4-1): Explicit VR Little Endian
    (uncompressed, application/octet-stream) unless the client takes the stored compressed
    syntax, by ``transfer-syntax=*``, the stored UID, or the stored syntax's image media type."""
    compressed = not tsx.is_uncompressed(stored)
    for media in accepted(accept):
        kind = media.params.get("type", "*/*") if media.type in (MULTIPART, "multipart/*") else media.type
        syntax = media.params.get("transfer-syntax")
        if kind in ("*/*", "application/*", OCTET_STREAM):
            if syntax in ("*", stored):
                return stored if compressed else tsx.EXPLICIT_LE
            if syntax in (None, tsx.EXPLICIT_LE):
                return tsx.EXPLICIT_LE
        elif compressed and kind in (_frame_media(stored), "image/*") and syntax in (None, "*", stored):
            return stored
    raise NotAcceptable(f"frames are served as {OCTET_STREAM} (uncompressed) or in the stored syntax {stored}")


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulk/{part}", summary="Bulk data")
async def bulk(study: str, series: str, instance: str, part: str, request: Request, caller: Reader) -> Response:
    (found,) = await _instances(request, caller, study, series, instance, "wado-bulkdata")
    svc = services(request)
    match = _RANGE.match(part)
    if match:
        data = await run_in_threadpool(svc.parts.bulk, found, int(match[1]), int(match[2]))
    else:
        try:
            tag = int(part, 16)
        except ValueError as exc:
            raise NotFound("no such bulk data") from exc
        ds = await run_in_threadpool(svc.outbound.dataset, found)
        if tag not in ds:
            raise NotFound("no such bulk data")
        data = bytes(ds[tag].value)
    body = Multipart(OCTET_STREAM)
    return Response(b"".join([*body.part([data], OCTET_STREAM), body.end()]), media_type=body.content_type)


def _render_request(request: Request, frame: int, viewport_default: tuple[int, int] | None) -> RenderRequest:
    params = request.query_params
    window = None
    if params.get("window"):
        parts = params["window"].split(",")
        try:
            window = (float(parts[0]), float(parts[1]))
        except (ValueError, IndexError) as exc:
            raise InvalidQuery("window is center,width[,function]") from exc
    viewport = viewport_default
    if params.get("viewport"):
        try:
            width, height = (int(v) for v in params["viewport"].split(",")[:2])
        except ValueError as exc:
            raise InvalidQuery("viewport is width,height") from exc
        if not (1 <= width <= 8192 and 1 <= height <= 8192):
            raise InvalidQuery("viewport sizes are 1 to 8192")
        viewport = (width, height)
    try:
        quality = int(params.get("quality", "90"))
    except ValueError as exc:
        raise InvalidQuery("quality is 1 to 100") from exc
    media = wants(request.headers.get("accept"), *MEDIA_TYPES)
    return RenderRequest(frame=frame, window=window, viewport=viewport, quality=quality, media_type=media)


async def _render(request: Request, instance: StoredInstance, render: RenderRequest) -> Response:
    data = await run_in_threadpool(services(request).rendering.render, instance, render)
    return Response(data, media_type=render.media_type)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered", summary="Rendered instance")
async def rendered_instance(study: str, series: str, instance: str, request: Request, caller: Reader) -> Response:
    (found,) = await _instances(request, caller, study, series, instance, "wado-rendered")
    return await _render(request, found, _render_request(request, 1, None))


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered", summary="Rendered frame")
async def rendered_frame(
    study: str, series: str, instance: str, frame: int, request: Request, caller: Reader
) -> Response:
    (found,) = await _instances(request, caller, study, series, instance, "wado-rendered")
    return await _render(request, found, _render_request(request, frame, None))


async def _thumbnail(request: Request, caller: Principal, study: str, series: str, instance: str) -> Response:
    found = await _instances(request, caller, study, series, instance, "wado-thumbnail")
    with_pixels = [i for i in found if "7FE00010" in i.header] or found
    chosen = with_pixels[len(with_pixels) // 2]
    return await _render(request, chosen, _render_request(request, 1, (128, 128)))


@router.get("/studies/{study}/thumbnail", summary="A study's thumbnail")
async def study_thumbnail(study: str, request: Request, caller: Reader) -> Response:
    return await _thumbnail(request, caller, study, "", "")


@router.get("/studies/{study}/series/{series}/thumbnail", summary="A series' thumbnail")
async def series_thumbnail(study: str, series: str, request: Request, caller: Reader) -> Response:
    return await _thumbnail(request, caller, study, series, "")


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail", summary="An instance's thumbnail")
async def instance_thumbnail(study: str, series: str, instance: str, request: Request, caller: Reader) -> Response:
    return await _thumbnail(request, caller, study, series, instance)
