"""The web door: the console's pages (log in, change password) and the OHIF viewer at /viewer."""

from __future__ import annotations

from fastapi import APIRouter

from openpacs.web import pages, viewer


def router() -> APIRouter:
    """Every route of the web door (none of them in the OpenAPI document)."""
    api = APIRouter(include_in_schema=False)
    api.include_router(pages.router)
    api.include_router(viewer.router)
    return api
