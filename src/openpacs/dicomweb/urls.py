"""URLs of DICOMweb resources (RetrieveURL, BulkDataURI)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from openpacs.domain import dicom_json as dj
from openpacs.domain.tags import Level
from openpacs.http.urls import site_url


def base_url(request: Request) -> str:
    """The DICOMweb root as the client reaches it."""
    return site_url(request) + "/dicom-web"


def retrieve_url(base: str, level: Level, answer: dict[str, Any]) -> str:
    """The WADO-RS URL of an answer's resource (PS3.18 Table 6.7.1-2, Retrieve URL)."""
    study = dj.text(answer, "0020000D")
    url = f"{base}/studies/{study}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{dj.text(answer, '0020000E')}"
    if level is Level.IMAGE:
        url += f"/instances/{dj.text(answer, '00080018')}"
    return url
