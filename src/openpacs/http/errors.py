"""Errors of the archive as HTTP answers: the status the error carries and its reason."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from openpacs.domain.errors import OpenPacsError, Unauthenticated
from openpacs.domain.qa import StateChanged

log = logging.getLogger("openpacs.http")


def install(app: FastAPI) -> None:
    """Register the exception handlers."""

    @app.exception_handler(OpenPacsError)
    async def archive_error(request: Request, exc: OpenPacsError) -> JSONResponse:
        headers = {}
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = 'Basic realm="OpenPACS", charset="UTF-8"'
        body: dict[str, object] = {"error": exc.reason}
        if isinstance(exc, StateChanged) and exc.operations:
            body["operations"] = exc.operations  # the later operations to undo first
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            reasons.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(reasons) or "invalid request"}, status_code=400)
