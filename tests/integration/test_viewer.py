"""The OHIF viewer in headless Chromium (Debian's), served by OpenPACS at /viewer: logging in,
the study list with the stored studies, a study opening with its thumbnails, and a hostile
patient name that shows as text and never runs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from conftest import ServerProcess, require, run_dcmtk
from openpacs.settings import default_viewer_dir
from web import Account, accounts_of, chromium_path, http

pytestmark = pytest.mark.usefixtures("dcmtk")
HOSTILE = "<script>alert(1)</script>^<b>bold</b>"  # no '=': it would split the PN into groups


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = chromium_path()
    require(chromium is not None, "Debian's chromium (scripts/setup.sh test installs it)")
    require((default_viewer_dir() / "index.html").is_file(), "the OHIF viewer (./serve or ./test installs it)")
    assert chromium is not None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def loaded(sqlite_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """CT_small by C-STORE (storescu), and a study whose patient name is an attack."""
    folder = tmp_path_factory.mktemp("viewer")
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    (folder / "ct.dcm").write_bytes(Path(path).read_bytes())
    result = run_dcmtk(
        "storescu", "-aec", "OPENPACS", "127.0.0.1", str(sqlite_server.dicom_port), str(folder / "ct.dcm")
    )
    assert result.returncode == 0, result.stderr
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = HOSTILE, "HOSTILE-V"
    del ds.OtherPatientIDsSequence  # the first study's patient's other IDs: not this patient
    ds.StudyInstanceUID = ds.StudyInstanceUID + ".7"
    ds.SeriesInstanceUID = ds.SeriesInstanceUID + ".7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".7"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n--b--\r\n"
    with http(sqlite_server, accounts_of(sqlite_server)["technologist"]) as client:
        stored = client.post(
            "/dicom-web/studies",
            content=body,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
    assert stored.status_code == 200, stored.text
    return sqlite_server


def _login(page: object, server: ServerProcess, account: Account, target: str) -> None:
    page.goto(f"{server.base_url}{target}")  # type: ignore[attr-defined]
    assert "/login" in page.url  # type: ignore[attr-defined]
    page.fill("#name", account.name)  # type: ignore[attr-defined]
    page.fill("#password", account.password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]


def test_viewer_needs_a_login(loaded: ServerProcess) -> None:
    page = httpx.get(loaded.base_url + "/viewer/", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/viewer/"
    assert httpx.get(loaded.base_url + "/viewer/app-config.js").status_code == 401


def test_study_list_and_a_study_with_its_thumbnails(browser: object, loaded: ServerProcess) -> None:
    account = accounts_of(loaded)["radiologist"]
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    server_errors: list[str] = []
    page.on("response", lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    try:
        _login(page, loaded, account, "/viewer/")
        page.wait_for_url("**/viewer/**", timeout=30_000)
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        # the study list shows the studies stored by C-STORE and STOW-RS
        family = str(ct.PatientName).split("^")[0]  # OHIF shows "Family, Given"
        page.wait_for_selector(f"text={family}", timeout=60_000)
        page.wait_for_selector("text=alert(1)", timeout=30_000)
        # the attack is shown as text and runs nowhere
        assert page.locator("b", has_text="bold").count() == 0
        assert dialogs == []
        # a study opens with its thumbnails, rendered by our /thumbnail
        thumbnails: list[str] = []
        page.on(
            "response",
            lambda r: thumbnails.append(r.url) if "/thumbnail" in r.url and r.status == 200 else None,
        )
        page.goto(f"{loaded.base_url}/viewer/viewer?StudyInstanceUIDs={ct.StudyInstanceUID}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0)",
            timeout=60_000,
        )
        assert any(ct.SeriesInstanceUID in url or ct.StudyInstanceUID in url for url in thumbnails), thumbnails
        # the image itself is loaded through WADO-RS frames and drawn on a canvas
        page.wait_for_selector("canvas", timeout=60_000)
        assert server_errors == []
    finally:
        context.close()
