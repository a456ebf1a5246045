"""The HTTP application: the admin API, DICOMweb, the console pages and the viewer on one
ASGI application (FastAPI), built by bootstrap from the services of the archive.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openpacs import __version__, dicomweb, rest, web
from openpacs.domain.errors import OpenPacsError
from openpacs.http import errors
from openpacs.http.auth import CSRF_HEADER, SESSION_COOKIE, principal
from openpacs.http.context import HttpServices

DESCRIPTION = """\
The admin API of OpenPACS, and its DICOMweb services (PS3.18).

Authenticate with HTTP Basic (a user name and password), a Bearer API token
(`openpacs user token NAME`), or a console session (`POST /api/session`; requests
that change anything then repeat the session's CSRF token in `X-CSRF-Token`).
"""


def create_app(svc: HttpServices) -> FastAPI:
    """The ASGI application of the HTTP service."""
    app = FastAPI(
        title="OpenPACS",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # served below, to logged-in users only
        openapi_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    errors.install(app)
    origins = list(svc.settings.cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept", CSRF_HEADER],
            expose_headers=["ETag", "Last-Modified", "Content-Location", "Warning"],
            max_age=600,
        )
    app.add_middleware(NoSniff)
    app.include_router(rest.router())
    app.include_router(dicomweb.router())
    app.include_router(web.router())
    _document_security(app)
    _serve_documentation(app)
    return app


def _serve_documentation(app: FastAPI) -> None:
    """The OpenAPI document and its Swagger UI, for authenticated users (browsers without a
    session are sent to the login page)."""

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        await principal(request)
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        try:
            await principal(request)
        except OpenPacsError:
            if "text/html" in request.headers.get("accept", ""):
                return RedirectResponse("/login?next=/api/docs", status_code=303)
            raise
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="OpenPACS API")


class NoSniff:
    """Adds ``X-Content-Type-Options: nosniff`` to every answer, so that browsers never take
    JSON or DICOM for a page (pure ASGI: streamed bodies stay streamed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, with_header)


#: the operations anyone may call
PUBLIC_OPERATIONS = {("get", "/health"), ("post", "/api/session")}


def _document_security(app: FastAPI) -> None:
    """Declare the three ways to authenticate in the OpenAPI document (its "Authorize" button).

    The credentials are read by ``openpacs.http.auth.principal``, which takes any one of them.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "basic": {"type": "http", "scheme": "basic", "description": "A user name and password."},
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (openpacs user token)."},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": f"A console session (POST /api/session); unsafe methods need {CSRF_HEADER}.",
                },
            }
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    public = (method, path) in PUBLIC_OPERATIONS
                    operation["security"] = [] if public else [{"basic": []}, {"bearer": []}, {"session": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
