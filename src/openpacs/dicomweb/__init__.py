"""The DICOMweb door (PS3.18): QIDO-RS, WADO-RS, STOW-RS under /dicom-web, WADO-URI at /wado."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter


def router() -> APIRouter:
    """Every DICOMweb route (imported here: the command line and the routing client that live in
    this package do not need the web framework, which takes half a second to import)."""
    from fastapi import APIRouter

    from openpacs.dicomweb import qido, stow, uri, wado

    api = APIRouter()
    api.include_router(qido.router)
    api.include_router(wado.router)
    api.include_router(stow.router)
    api.include_router(uri.router)
    return api
