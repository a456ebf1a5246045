"""The HTTP door: an ASGI application (FastAPI). For now the health check; the admin API,
DICOMweb and the console are added by later issues on the same application.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from openpacs import __version__
from openpacs.services.archive import ArchiveService


def create_app(archive: ArchiveService, *, ae_title: str, dicom_port: int) -> FastAPI:
    """The ASGI application of the HTTP service."""
    app = FastAPI(
        title="OpenPACS",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )

    @app.get("/health", tags=["system"], summary="Liveness and readiness of the server")
    async def health() -> JSONResponse:
        """200 with the state of the index when the server can serve; 503 when the index fails."""
        body: dict[str, Any] = {"status": "ok", "version": __version__, "ae_title": ae_title, "dicom_port": dicom_port}
        try:
            body.update(await run_in_threadpool(archive.health))
        except Exception as exc:
            return JSONResponse({"status": "error", "reason": f"index unavailable: {exc}"}, status_code=503)
        return JSONResponse(body)

    return app
