"""The DICOMweb door (PS3.18): QIDO-RS, WADO-RS, STOW-RS under /dicom-web, WADO-URI at /wado."""

from __future__ import annotations

from fastapi import APIRouter

from openpacs.dicomweb import qido, stow, uri, wado


def router() -> APIRouter:
    """Every DICOMweb route."""
    api = APIRouter()
    api.include_router(qido.router)
    api.include_router(wado.router)
    api.include_router(stow.router)
    api.include_router(uri.router)
    return api
