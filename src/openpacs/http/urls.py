"""This server's own URL, for the links the HTTP doors put in their answers."""

from __future__ import annotations

from fastapi import Request

from openpacs.http.context import services

VIEWER_PATH = "/viewer"


def site_url(request: Request) -> str:
    """This server's URL as clients reach it: ``http.public_url`` when configured, else the
    request's scheme and Host header. Some clients (dicomweb-client) send a Host header
    without the port; the port the request came in on is then added."""
    configured = services(request).settings.public_url
    if configured:
        return configured.rstrip("/")
    url = request.base_url
    if url.port is None and request.scope.get("server"):
        port = request.scope["server"][1]
        if port and port != {"http": 80, "https": 443}.get(url.scheme):
            url = url.replace(port=port)
    return str(url).rstrip("/")


def viewer_url(request: Request, study_instance_uid: str) -> str:
    """The link that opens a study in the OHIF viewer."""
    return f"{site_url(request)}{VIEWER_PATH}/viewer?StudyInstanceUIDs={study_instance_uid}"
