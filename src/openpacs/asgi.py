"""The HTTP application: the admin API, DICOMweb, the console pages and the viewer on one
ASGI application (FastAPI), built by bootstrap from the services of the archive.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from openpacs import __version__, dicomweb, rest, web
from openpacs.http import errors
from openpacs.http.auth import CSRF_HEADER
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
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
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
    app.include_router(rest.router())
    app.include_router(dicomweb.router())
    app.include_router(web.router())
    return app
