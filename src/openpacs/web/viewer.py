"""The OHIF viewer (v3, npm package @ohif/app) served on our origin at /viewer.

The setup command unpacks OHIF's prebuilt files into a cache outside the source tree
(``http.viewer_dir``). OHIF is built to live at the root of a site, so the files that
name the site root are adjusted as they are served: index.html (its ``PUBLIC_URL`` and
the links of its scripts and styles), the style sheets' ``url(/...)`` and the bundles
that set webpack's public path.
``app-config.js`` is ours: one DICOMweb data source, this server's ``/dicom-web``.

Every file requires a logged-in user with the right to read images; a browser that has
no session is sent to the login page.
"""

from __future__ import annotations

import mimetypes
import threading
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from openpacs.domain.errors import OpenPacsError, Unavailable
from openpacs.domain.users import Permission
from openpacs.http.auth import principal, require
from openpacs.http.context import services
from openpacs.http.urls import VIEWER_PATH

router = APIRouter()
PREFIX = VIEWER_PATH
_PUBLIC_PATH = b'__webpack_require__.p = "/"'
_PATCHED_PUBLIC_PATH = b'__webpack_require__.p = "/viewer/"'

APP_CONFIG = """\
/* OHIF configuration written by OpenPACS: one data source, this server's DICOMweb. */
window.config = {
  name: 'openpacs',
  routerBasename: '/viewer',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  groupEnabledModesFirst: true,
  maxNumRequests: { interaction: 100, thumbnail: 10, prefetch: 25 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'openpacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'openpacs',
      configuration: {
        friendlyName: 'OpenPACS',
        name: 'openpacs',
        wadoUriRoot: window.location.origin + '/wado',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'thumbnail',
        thumbnailRequestStrategy: 'fetch',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


class ViewerFiles:
    """The viewer's files, with the few that name the site root adjusted (kept in memory)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._patched: dict[Path, bytes | None] = {}
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        """Whether the setup command has installed the viewer."""
        return (self.root / "index.html").is_file()

    def find(self, relative: str) -> Path | None:
        """The file at *relative* inside the viewer's folder (never outside it)."""
        if not relative or relative.endswith("/"):
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def index_html(self) -> bytes:
        """index.html, pointed at /viewer/."""
        return rewrite_index((self.root / "index.html").read_bytes())

    def adjusted(self, path: Path) -> bytes | None:
        """The adjusted content of *path*, or None when it is served as it is."""
        if path.suffix not in (".js", ".html", ".css"):
            return None
        return self._adjusted(path)

    def _adjusted(self, path: Path) -> bytes | None:
        with self._lock:
            if path in self._patched:
                return self._patched[path]
        data = path.read_bytes()
        result: bytes | None = None
        if path.name == "index.html":
            result = rewrite_index(data)
        elif path.suffix == ".css" and b"url(/" in data:
            result = data.replace(b"url(/", f"url({PREFIX}/".encode())
        elif _PUBLIC_PATH in data:
            result = data.replace(_PUBLIC_PATH, _PATCHED_PUBLIC_PATH)
        with self._lock:
            self._patched[path] = result
        return result


def rewrite_index(data: bytes) -> bytes:
    """OHIF's index.html with its site-root links moved under /viewer/."""
    text = data.decode("utf-8")
    text = text.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}/"')
    for attribute in ("src", "href", "content"):
        text = text.replace(f'{attribute}="/', f'{attribute}="{PREFIX}/')
    return text.encode("utf-8")


_files: dict[Path, ViewerFiles] = {}
_files_lock = threading.Lock()


def _viewer(request: Request) -> ViewerFiles:
    root = services(request).settings.viewer_path
    if not root:
        raise Unavailable("the viewer is not configured")
    path = Path(root)
    with _files_lock:
        files = _files.get(path)
        if files is None:
            files = _files[path] = ViewerFiles(path)
    if not files.installed:
        raise Unavailable(f"the OHIF viewer is not installed in {path}: run the setup command (./serve)")
    return files


async def _authorised(request: Request) -> Response | None:
    """None when the caller may see the viewer; else a redirect to the login page (browsers) or the error."""
    try:
        caller = await principal(request)
        await require(Permission.READ)(request, caller)
    except OpenPacsError:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        raise
    return None


@router.get(PREFIX)
async def viewer_root() -> RedirectResponse:
    """The viewer lives under /viewer/."""
    return RedirectResponse(f"{PREFIX}/", status_code=308)


@router.get(PREFIX + "/app-config.js")
async def app_config(request: Request) -> Response:
    """OHIF's configuration: this server's DICOMweb as its only data source."""
    if (refused := await _authorised(request)) is not None:
        return refused
    return Response(APP_CONFIG, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get(PREFIX + "/{path:path}")
async def viewer_file(path: str, request: Request) -> Response:
    """A file of the viewer; any other path is one of OHIF's own routes and gets index.html."""
    if (refused := await _authorised(request)) is not None:
        return refused
    files = _viewer(request)
    found = files.find(path)
    if found is None:
        return Response(files.index_html(), media_type="text/html", headers={"Cache-Control": "no-cache"})
    adjusted = files.adjusted(found)
    if adjusted is not None:
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return Response(adjusted, media_type=media_type, headers={"Cache-Control": "no-cache"})
    return FileResponse(found, headers={"Cache-Control": "public, max-age=3600"})
