"""Authentication and roles on every route: the OpenAPI document walked without credentials
(401) and with each role (403 exactly where the role lacks the right), browser sessions and
CSRF, the login guard, the first start's admin, and hostile input."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from conftest import ServerProcess, start_server
from web import ROLES, Account, accounts_of, http

# Who may call what: every operation of the OpenAPI document must be listed here.
PUBLIC, ANYONE = "public", "authenticated"
READ = set(ROLES)
ADMIN = {"admin"}
READING = {"admin", "radiologist"}
STORE = {"admin", "technologist", "integration"}
ECHO = {"admin", "technologist"}
CHANGES = {"admin", "integration"}
EVERYONE = set(ROLES)
QA_OPERATIONS = (
    "update-patient",
    "update-study",
    "update-series",
    "merge-patients",
    "unmerge",
    "move-study",
    "merge-studies",
    "split-study",
    "move-series",
    "move-instances",
    "dismiss-conflict",
    "reject",
    "delete",
    "restore",
    "purge",
    "undo",
)
RULES: dict[tuple[str, str], str | set[str]] = {
    ("get", "/health"): PUBLIC,
    ("post", "/api/session"): PUBLIC,
    ("delete", "/api/session"): ANYONE,
    ("get", "/api/me"): ANYONE,
    ("put", "/api/me/password"): ANYONE,
    ("get", "/api/stats"): READ,
    ("get", "/api/system"): ADMIN,
    ("get", "/api/changes"): CHANGES,
    ("get", "/api/audit"): ADMIN,
    ("get", "/api/conflicts"): ADMIN,
    **{("post", f"/api/qa/{name}"): ADMIN for name in QA_OPERATIONS},
    ("get", "/api/qa/operations"): ADMIN,
    ("get", "/api/qa/inbox"): ADMIN,
    ("get", "/api/qa/provenance"): ADMIN,
    ("get", "/api/routes"): ADMIN,
    ("post", "/api/routes"): ADMIN,
    ("get", "/api/routes/test"): ADMIN,
    ("get", "/api/routes/{name}"): ADMIN,
    ("delete", "/api/routes/{name}"): ADMIN,
    ("put", "/api/routes/{name}"): ADMIN,
    ("get", "/api/routes/{name}/history"): ADMIN,
    ("post", "/api/routes/replay"): ADMIN,
    ("get", "/api/jobs"): ADMIN,
    ("get", "/api/jobs/{job_id}"): ADMIN,
    ("post", "/api/jobs/{job_id}/{action}"): ADMIN,
    ("post", "/api/jobs/forward"): ADMIN,
    ("post", "/api/remote/{node}/find"): ADMIN,
    ("post", "/api/remote/{node}/retrieve"): ADMIN,
    ("post", "/api/migrations/from-node"): ADMIN,
    ("post", "/api/migrations/from-folder"): ADMIN,
    ("get", "/api/migrations/{job_id}"): ADMIN,
    ("get", "/api/hl7/messages"): ADMIN,
    ("get", "/api/hl7/messages/{message_id}"): ADMIN,
    ("get", "/api/hl7/errors"): ADMIN,
    ("post", "/api/hl7/messages/reprocess"): ADMIN,
    ("post", "/api/hl7/messages/skip"): ADMIN,
    ("get", "/api/orders"): READ,
    ("get", "/api/orders/{order_id}"): READ,
    ("get", "/api/worklist"): READ,
    ("post", "/api/worklist"): ADMIN,
    ("get", "/api/worklist/{entry_id}"): READ,
    ("put", "/api/worklist/{entry_id}"): ADMIN,
    ("delete", "/api/worklist/{entry_id}"): ADMIN,
    ("post", "/api/worklist/{entry_id}/status"): ADMIN,
    ("get", "/api/procedures"): READ,
    ("get", "/api/procedures/{procedure_id}"): READ,
    ("post", "/api/procedures/{procedure_id}/studies"): ADMIN,
    ("delete", "/api/procedures/{procedure_id}/studies/{study_uid}"): ADMIN,
    ("post", "/api/procedures/{procedure_id}/status"): ADMIN,
    ("get", "/api/mpps"): READ,
    ("get", "/api/mpps/{sop_instance_uid}"): READ,
    ("get", "/api/commitments"): READ,
    ("get", "/api/reading"): READING,
    ("get", "/api/reading/counts"): READING,
    ("get", "/api/reading/filters"): READING,
    ("get", "/api/reading/filters/{name}"): READING,
    ("put", "/api/reading/filters/{name}"): READING,
    ("delete", "/api/reading/filters/{name}"): READING,
    ("post", "/api/reading/{study_uid}/claim"): READING,
    ("post", "/api/reading/{study_uid}/release"): READING,
    ("get", "/api/reports"): READ,
    ("get", "/api/reports/{report_id}"): READ,
    ("get", "/api/reports/{report_id}/content"): READ,
    ("get", "/api/alerts"): ADMIN,
    ("post", "/api/alerts/{alert_id}/acknowledge"): ADMIN,
    ("get", "/api/qa/hidden"): ADMIN,
    ("get", "/api/qa/operations/{operation_id}"): ADMIN,
    ("get", "/api/users"): ADMIN,
    ("post", "/api/users"): ADMIN,
    ("delete", "/api/users/{name}"): ADMIN,
    ("put", "/api/users/{name}/password"): ADMIN,
    ("post", "/api/users/{name}/tokens"): ADMIN,
    ("get", "/api/nodes"): READ,
    ("get", "/api/nodes/{name}"): READ,
    ("post", "/api/nodes"): ADMIN,
    ("put", "/api/nodes/{name}"): ADMIN,
    ("delete", "/api/nodes/{name}"): ADMIN,
    ("post", "/api/nodes/{name}/echo"): ECHO,
    ("get", "/api/patients"): READ,
    ("get", "/api/studies"): READ,
    ("get", "/api/studies/{study_uid}/series"): READ,
    ("get", "/api/series/{series_uid}/instances"): READ,
    ("delete", "/api/studies/{study_uid}"): ADMIN,
    ("delete", "/api/series/{series_uid}"): ADMIN,
    ("delete", "/api/instances/{sop_instance_uid}"): ADMIN,
    ("post", "/dicom-web/studies"): STORE,
    ("post", "/dicom-web/studies/{study}"): STORE,
    ("get", "/wado"): READ,
}
DICOMWEB_READ = re.compile(r"^/dicom-web/")


def _rule(method: str, path: str) -> str | set[str]:
    if (method, path) in RULES:
        return RULES[(method, path)]
    if method == "get" and DICOMWEB_READ.match(path):
        return READ
    raise AssertionError(f"{method.upper()} {path} has no rule in test_security.RULES: decide who may call it")


def _document(server: ServerProcess) -> dict:
    viewer = accounts_of(server)["viewer"]
    return httpx.get(server.base_url + "/api/openapi.json", headers=viewer.bearer, timeout=10).json()


def _operations(server: ServerProcess) -> list[tuple[str, str]]:
    document = _document(server)
    return [(m, p) for p, ops in document["paths"].items() for m in ops]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1.2.3.999", path)


def test_the_api_documentation_is_for_logged_in_users(sqlite_server: ServerProcess) -> None:
    base = sqlite_server.base_url
    assert httpx.get(base + "/api/openapi.json").status_code == 401
    page = httpx.get(base + "/api/docs", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/api/docs"
    viewer = accounts_of(sqlite_server)["viewer"]
    docs = httpx.get(base + "/api/docs", headers=viewer.bearer)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_every_operation_has_a_rule_and_documents_its_security(sqlite_server: ServerProcess) -> None:
    document = _document(sqlite_server)
    assert set(document["components"]["securitySchemes"]) == {"basic", "bearer", "session"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rule = _rule(method, path)
            assert (operation["security"] == []) == (rule == PUBLIC), f"{method} {path}"


def test_every_route_requires_authentication(sqlite_server: ServerProcess) -> None:
    with http(sqlite_server) as client:
        for method, path in _operations(sqlite_server):
            if _rule(method, path) == PUBLIC:
                continue
            response = client.request(method.upper(), _concrete(path))
            assert response.status_code == 401, f"{method.upper()} {path}: {response.status_code}"
            assert response.headers["www-authenticate"].startswith("Basic")
            assert response.json()["error"]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_403_exactly_where_it_must(sqlite_server: ServerProcess, role: str) -> None:
    account = accounts_of(sqlite_server)[role]
    with http(sqlite_server, account) as client:
        for method, path in _operations(sqlite_server):
            rule = _rule(method, path)
            if rule in (PUBLIC, ANYONE) or (method, path) == ("delete", "/api/session"):
                continue
            response = client.request(method.upper(), _concrete(path))
            if role in rule:
                assert response.status_code not in (401, 403), f"{role} {method.upper()} {path}: {response.text}"
            else:
                assert response.status_code == 403, f"{role} {method.upper()} {path}: {response.status_code}"
                assert f"role {role} may not" in response.json()["error"]


def test_basic_bearer_and_bad_credentials(sqlite_server: ServerProcess) -> None:
    viewer = accounts_of(sqlite_server)["viewer"]
    url = sqlite_server.base_url + "/api/me"
    assert httpx.get(url, auth=(viewer.name, viewer.password)).json()["name"] == viewer.name
    assert httpx.get(url, headers=viewer.bearer).json()["role"] == "viewer"
    for headers in (
        {"Authorization": "Bearer opt_not-a-token"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Digest whatever"},
        {"Authorization": "Bearer"},
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]
    assert httpx.get(url, auth=(viewer.name, "wrong password")).status_code == 401


def test_browser_session_needs_the_csrf_token_to_change_anything(sqlite_server: ServerProcess) -> None:
    admin = accounts_of(sqlite_server)["admin"]
    with httpx.Client(base_url=sqlite_server.base_url) as browser:
        login = browser.post("/api/session", json={"name": admin.name, "password": admin.password})
        assert login.status_code == 200
        csrf = login.json()["csrf_token"]
        cookie = login.headers.get_list("set-cookie")
        assert any("openpacs_session=" in c and "HttpOnly" in c and "SameSite=strict" in c for c in cookie)
        assert browser.get("/api/users").status_code == 200
        node = {"name": "csrf-node", "ae_title": "CSRF", "host": "127.0.0.1", "port": 104}
        refused = browser.post("/api/nodes", json=node)
        assert refused.status_code == 403
        assert "x-csrf-token" in refused.json()["error"]
        assert browser.post("/api/nodes", json=node, headers={"X-CSRF-Token": "forged"}).status_code == 403
        assert browser.post("/api/nodes", json=node, headers={"X-CSRF-Token": csrf}).status_code == 201
        assert browser.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/api/users").status_code == 401


def test_failed_logins_are_rate_limited_and_logged_without_the_password(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("guard")
    server = start_server(
        base / "data",
        f"sqlite:///{base / 'data' / 'index.sqlite3'}",
        extra_env={"OPENPACS_HTTP__MAX_FAILED_LOGINS": "3", "OPENPACS_HTTP__LOGIN_LOCKOUT_SECONDS": "2"},
    )
    try:
        account: Account = accounts_of(server)["radiologist"]
        with httpx.Client(base_url=server.base_url) as client:
            statuses = [
                client.post("/api/session", json={"name": account.name, "password": f"guess-{n}-secret"}).status_code
                for n in range(3)
            ]
            assert statuses == [401, 401, 401]
            locked = client.post("/api/session", json={"name": account.name, "password": account.password})
            assert locked.status_code == 429
            assert "try again" in locked.json()["error"]
            basic = client.get("/api/me", auth=(account.name, account.password))
            assert basic.status_code == 429  # Basic goes through the same guard
            time.sleep(2.2)
            assert (
                client.post("/api/session", json={"name": account.name, "password": account.password}).status_code
                == 200
            )
            client.get("/api/me", headers=account.bearer)
            admin = accounts_of(server)["admin"]
            entries = client.get("/api/audit", params={"limit": 1000}, headers=admin.bearer).json()
        failures = [e for e in entries if e["action"] == "login" and e["outcome"] == "failure"]
        assert len(failures) == 3 and all(e["actor_id"] == account.name for e in failures)
        log = server.log()
        assert f"failed login for '{account.name}' from 127.0.0.1" in log
        assert "locked" in log
        for secret in ("guess-0-secret", account.password, account.token):
            assert secret not in log
    finally:
        server.stop()


def test_first_start_creates_an_admin_that_must_change_its_password(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("first")
    url = f"sqlite:///{base / 'data' / 'index.sqlite3'}"
    server = start_server(base / "data", url)
    try:
        log = server.wait_for_log("First start")
        match = re.search(r"password:\s+(\S+)", log)
        assert match, log
        password = match[1]
        with httpx.Client(base_url=server.base_url, auth=("admin", password)) as client:
            me = client.get("/api/me").json()
            assert me == {"name": "admin", "role": "admin", "must_change_password": True, "csrf_token": ""}
            blocked = client.get("/api/stats")
            assert blocked.status_code == 403 and "must be changed" in blocked.json()["error"]
            changed = client.put(
                "/api/me/password", json={"current_password": password, "new_password": "a new admin password"}
            )
            assert changed.status_code == 204
        assert httpx.get(server.base_url + "/api/stats", auth=("admin", password)).status_code == 401
        assert httpx.get(server.base_url + "/api/stats", auth=("admin", "a new admin password")).status_code == 200
    finally:
        server.stop()
    again = start_server(base / "data", url)
    try:
        assert "First start" not in again.log()  # shown once
    finally:
        again.stop()


def test_hostile_patient_name_comes_back_escaped_in_json(sqlite_server: ServerProcess) -> None:
    import io

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    ds.PatientName = '<script>alert("x")</script>'
    ds.PatientID = "HOSTILE-1"
    ds.StudyInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n--b--\r\n"
    technologist = accounts_of(sqlite_server)["technologist"]
    with http(sqlite_server, technologist) as client:
        stored = client.post(
            "/dicom-web/studies",
            content=body,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert stored.status_code == 200
        answer = client.get("/dicom-web/studies", params={"PatientID": "HOSTILE-1"})
        api = client.get("/api/studies", params={"patient_id": "HOSTILE-1"})
    assert answer.headers["content-type"].startswith("application/dicom+json")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.json()[0]["00100010"]["Value"][0]["Alphabetic"] == '<script>alert("x")</script>'
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()[0]["patient_name"] == '<script>alert("x")</script>'


def test_login_page_escapes_what_it_echoes(sqlite_server: ServerProcess) -> None:
    hostile = '/viewer/"><script>alert(1)</script>'
    page = httpx.get(sqlite_server.base_url + "/login", params={"next": hostile})
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text or "&quot;" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    outside = httpx.get(sqlite_server.base_url + "/login", params={"next": "https://evil.example/"})
    assert "evil.example" not in outside.text  # no open redirect
