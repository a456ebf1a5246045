"""STOW-RS (PS3.18 10.5): multipart/related uploads, each instance through the ingest service.

The body is parsed as it arrives (python-multipart), so an upload of any number of
instances is never held in memory as a whole; each instance is stored as soon as
its part ends, by the same IngestService.store as C-STORE. The response lists the
stored and the failed instances with the status codes of PS3.18 Table 10.5.3-1.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser

from openpacs.dicomweb.media import DICOM, DICOM_JSON, MULTIPART, UnsupportedMediaType, parse_media_range
from openpacs.dicomweb.urls import base_url
from openpacs.domain.errors import InvalidInstance, OpenPacsError, RequestTooLarge
from openpacs.domain.part10 import has_file_meta
from openpacs.domain.records import Origin, StoreStatus
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import HttpServices, services

router = APIRouter(prefix="/dicom-web", tags=["STOW-RS"])
Storer = Annotated[Principal, Depends(require(Permission.STORE))]
_MAX_PART_HEADERS = 16
_WORKERS = 4


@dataclass
class _Outcome:
    """What became of the parts, by part number (thread-safe)."""

    stored: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, dict[str, Any]] = field(default_factory=dict)
    warnings: int = 0
    conflicts: int = 0
    bad_syntax: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, number: int, reference: dict[str, Any], status: int, kind: str = "") -> None:
        reference["00081197"] = {"vr": "US", "Value": [status]}
        with self.lock:
            self.failed[number] = reference
            if kind == "conflict":
                self.conflicts += 1
            elif kind == "syntax":
                self.bad_syntax += 1

    def store(self, number: int, reference: dict[str, Any], warning: bool) -> None:
        with self.lock:
            self.stored[number] = reference
            self.warnings += warning


def _reference(sop_class: str, sop_instance: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sop_class:
        out["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop_instance:
        out["00081155"] = {"vr": "UI", "Value": [sop_instance]}
    return out


class _Parts:
    """Collects parts from the parser's callbacks and hands whole ones to the storing thread."""

    def __init__(self, sink: queue.Queue[tuple[int, str, bytes] | None], max_bytes: int) -> None:
        self.sink = sink
        self.count = 0
        self.max_bytes = max_bytes
        self.data = bytearray()
        self.headers: dict[str, str] = {}
        self.field = b""
        self.value = b""
        self.too_large = False

    def on_part_begin(self) -> None:
        self.data = bytearray()
        self.headers = {}
        self.too_large = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        if len(self.headers) < _MAX_PART_HEADERS:
            self.headers[self.field.decode("latin-1").strip().lower()] = self.value.decode("latin-1").strip()
        self.field, self.value = b"", b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if len(self.data) + (end - start) > self.max_bytes:
            self.too_large = True
            return
        self.data += data[start:end]

    def on_part_end(self) -> None:
        content_type = self.headers.get("content-type", DICOM)
        marker = "too-large" if self.too_large else content_type
        self.sink.put((self.count, marker, bytes(self.data)))
        self.count += 1
        self.data = bytearray()


def _store_parts(
    svc: HttpServices,
    parts: queue.Queue[tuple[int, str, bytes] | None],
    origin: Origin,
    study: str,
    base: str,
    outcome: _Outcome,
) -> None:
    """A storing thread: parts one at a time, through the ingest service (several threads share a
    request, so that their index commits are grouped as concurrent C-STOREs are)."""
    while (item := parts.get()) is not None:
        number, content_type, data = item
        if content_type == "too-large":
            outcome.fail(number, {}, 0xA700, "syntax")
            continue
        if parse_media_range(content_type).type != DICOM:
            outcome.fail(number, {}, 0xC000, "syntax")
            continue
        parsed = None
        try:
            if not has_file_meta(data):
                raise InvalidInstance("a part is not a DICOM file (no File Meta Information)")
            parsed = svc.ingest.parse(data)
            if study and parsed.study_instance_uid != study:
                outcome.fail(number, _reference(parsed.sop_class_uid, parsed.sop_instance_uid), 0xA900, "conflict")
                continue
            result = svc.ingest.store(data, origin, parsed=parsed)
        except OpenPacsError as exc:
            reference = _reference(parsed.sop_class_uid, parsed.sop_instance_uid) if parsed else {}
            kind = "syntax" if isinstance(exc, InvalidInstance) else "conflict"
            outcome.fail(number, reference, exc.dimse_status, kind)
            continue
        reference = _reference(parsed.sop_class_uid, parsed.sop_instance_uid)
        reference["00081190"] = {
            "vr": "UR",
            "Value": [
                f"{base}/studies/{parsed.study_instance_uid}/series/{parsed.series_instance_uid}"
                f"/instances/{parsed.sop_instance_uid}"
            ],
        }
        warning = result.status is StoreStatus.DUPLICATE_DIFFERS or result.identity_conflict
        if warning:
            reference["00081196"] = {"vr": "US", "Value": [0xB000]}  # Warning Reason: coercion of data elements
        outcome.store(number, reference, warning)


async def _stow(request: Request, caller: Principal, study: str) -> Response:
    media = parse_media_range(request.headers.get("content-type", ""))
    if media.type != MULTIPART or media.params.get("type", DICOM) not in (DICOM, DICOM_JSON):
        raise UnsupportedMediaType(f'STOW-RS takes {MULTIPART}; type="{DICOM}"')
    if media.params.get("type") == DICOM_JSON:
        raise UnsupportedMediaType("STOW-RS of metadata with bulk data is not supported: send application/dicom")
    boundary = media.params.get("boundary")
    if not boundary:
        raise UnsupportedMediaType("the multipart/related body has no boundary")
    svc = services(request)
    origin = Origin(actor=caller.actor, transport="stow-rs", calling_ae="", default_issuer=svc.nodes.default_issuer)
    outcome = _Outcome()
    declared = request.headers.get("content-length", "")
    limit = svc.settings.max_stow_bytes
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request has {declared} bytes; at most {limit} are accepted (http.max_stow_bytes)")
    parts: queue.Queue[tuple[int, str, bytes] | None] = queue.Queue(maxsize=2 * _WORKERS)
    collector = _Parts(parts, svc.ingest.policy.max_instance_bytes)
    callbacks: Any = {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
    }
    parser = MultipartParser(boundary, callbacks=callbacks)
    base = base_url(request)
    workers = [
        threading.Thread(target=_store_parts, args=(svc, parts, origin, study, base, outcome), daemon=True)
        for _ in range(_WORKERS)
    ]
    for worker in workers:
        worker.start()
    received = 0
    problem: OpenPacsError | None = None
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                problem = RequestTooLarge(f"the request has more than {limit} bytes (http.max_stow_bytes)")
                break
            await run_in_threadpool(parser.write, chunk)
        else:
            parser.finalize()
    except Exception as exc:
        problem = InvalidInstance(f"malformed multipart body: {exc}")
    finally:
        for _ in workers:
            await run_in_threadpool(parts.put, None)
        for worker in workers:
            await run_in_threadpool(worker.join)
    if problem is not None and not outcome.stored:
        raise problem
    if collector.count == 0 and problem is None:
        raise InvalidInstance("the multipart body holds no part (is the boundary right?)")
    body: dict[str, Any] = {}
    if study:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    if outcome.stored:
        body["00081199"] = {"vr": "SQ", "Value": [outcome.stored[n] for n in sorted(outcome.stored)]}
    if outcome.failed:
        body["00081198"] = {"vr": "SQ", "Value": [outcome.failed[n] for n in sorted(outcome.failed)]}
    if problem is not None:
        # the rest of the body was refused: say so beside what was stored before it
        body["00000902"] = {"vr": "LO", "Value": [problem.reason[:64]]}
    if outcome.stored and (outcome.failed or outcome.warnings or problem is not None):
        status = 202
    elif outcome.stored:
        status = 200
    elif outcome.conflicts and not outcome.bad_syntax:
        status = 409
    else:
        status = 400
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)


@router.post("/studies", summary="Store instances (STOW-RS)")
async def store(request: Request, caller: Storer) -> Response:
    return await _stow(request, caller, "")


@router.post("/studies/{study}", summary="Store instances of one study (STOW-RS)")
async def store_study(study: str, request: Request, caller: Storer) -> Response:
    return await _stow(request, caller, study)
