"""The `openpacs` command against real servers: nodes, echo, import, send, stats."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ServerProcess, StoreScp, free_port, run_cli, start_server
from openpacs.adapters.index.engine import SCHEMA_HEAD
from samples import sample_file


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


@pytest.fixture
def aborting_listener() -> Iterator[int]:
    """A TCP port that answers every association request with A-ABORT."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def run() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        server.close()


def test_echo_says_why_it_failed(
    sqlite_server: ServerProcess, silent_listener: int, aborting_listener: int, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "cli")]
    ok = run_cli("echo", f"OPENPACS@127.0.0.1:{sqlite_server.dicom_port}", *data)
    assert "success" in ok.stdout
    refused = run_cli("echo", f"X@127.0.0.1:{free_port()}", *data, check=False)
    assert refused.returncode == 1 and "connection refused" in refused.stderr
    unresolved = run_cli("echo", "X@no-such-host.invalid:104", *data, check=False)
    assert unresolved.returncode == 1 and "could not be resolved" in unresolved.stderr
    timeout = run_cli("echo", f"X@127.0.0.1:{silent_listener}", "--timeout", "1", *data, check=False)
    assert timeout.returncode == 1 and "in time" in timeout.stderr
    aborted = run_cli("echo", f"X@127.0.0.1:{aborting_listener}", *data, check=False)
    assert aborted.returncode == 1 and "aborted" in aborted.stderr
    missing = run_cli("echo", "nosuchnode", *data, check=False)
    assert missing.returncode == 1 and "no node named 'nosuchnode'" in missing.stderr


def test_unknown_calling_aes_are_rejected_beyond_loopback_policy(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}",
        extra_env={"OPENPACS_DICOM__ACCEPT_UNKNOWN_CALLING_AES": "never"},
    )
    try:
        rejected = run_cli(
            "echo", f"OPENPACS@127.0.0.1:{server.dicom_port}", "--data-dir", str(tmp_path / "cli"), check=False
        )
        assert rejected.returncode == 1
        assert "calling AE title not recognised" in rejected.stderr
        # once the calling AE is a node, it is accepted, without a restart
        server.cli("node", "add", "self", "--ae-title", "OPENPACS", "--host", "127.0.0.1", "--port", "104")
        run_cli("echo", f"OPENPACS@127.0.0.1:{server.dicom_port}", "--data-dir", str(tmp_path / "cli"))
        # a node whose host is checked is refused from another address
        server.cli("node", "remove", "self")
        server.cli(
            "node", "add", "self", "--ae-title", "OPENPACS", "--host", "192.0.2.1", "--port", "104", "--check-host"
        )
        again = run_cli(
            "echo", f"OPENPACS@127.0.0.1:{server.dicom_port}", "--data-dir", str(tmp_path / "cli"), check=False
        )
        assert again.returncode == 1 and "not recognised" in again.stderr
        assert "is expected from 192.0.2.1" in server.wait_for_log("is expected from")
    finally:
        server.stop()


def test_nodes_add_list_remove(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    run_cli(
        "node",
        "add",
        "ct1",
        "--ae-title",
        "CT1",
        "--host",
        "10.0.0.5",
        "--port",
        "104",
        "--no-get",
        "--default-issuer",
        "HOSP",
        *data,
    )
    duplicate = run_cli(
        "node", "add", "ct2", "--ae-title", "CT1", "--host", "10.0.0.6", "--port", "104", *data, check=False
    )
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
    bad = run_cli("node", "add", "bad", "--ae-title", "A" * 17, "--host", "h", "--port", "104", *data, check=False)
    assert bad.returncode == 1 and "invalid AE title" in bad.stderr
    (node,) = json.loads(run_cli("node", "list", "--json", *data).stdout)
    assert node["ae_title"] == "CT1" and node["allow_get"] is False and node["default_issuer"] == "HOSP"
    assert "ct1" in run_cli("node", "list", *data).stdout
    run_cli("node", "remove", "ct1", *data)
    assert json.loads(run_cli("node", "list", "--json", *data).stdout) == []
    gone = run_cli("node", "remove", "ct1", *data, check=False)
    assert gone.returncode == 1


def test_nodes_are_seeded_from_the_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "openpacs.toml"
    config.write_text(
        'ae_title = "MAINPACS"\n[[nodes]]\nname = "ws"\nae_title = "WS1"\nhost = "10.1.1.1"\nport = 11112\n'
    )
    server = start_server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}",
        extra_env={"OPENPACS_CONFIG": str(config)},
    )
    try:
        (node,) = json.loads(server.cli("node", "list", "--json").stdout)
        assert node["ae_title"] == "WS1"
        assert "MAINPACS" in server.log()
    finally:
        server.stop()


def test_import_reports_imported_duplicates_rejected_and_skipped(tmp_path: Path, mixed_corpus: list[Path]) -> None:
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    for path in mixed_corpus[:10]:
        (folder / "sub" / path.name).write_bytes(path.read_bytes())
    (folder / "README.TXT").write_text("not a DICOM file")
    (folder / "broken.dcm").write_bytes(mixed_corpus[0].read_bytes()[:500])
    data = ["--data-dir", str(tmp_path / "data")]
    first = run_cli("import", str(folder), "--json", *data, check=False)
    assert first.returncode == 1  # a file was rejected
    summary = json.loads(first.stdout)
    assert summary["imported"] == 10
    assert summary["skipped"] == [str(folder / "README.TXT")]
    assert list(summary["rejected"]) == [str(folder / "broken.dcm")]
    again = json.loads(run_cli("import", str(folder), "--json", *data, check=False).stdout)
    assert again["imported"] == 0 and again["duplicates"] == 10
    stats = json.loads(run_cli("stats", "--json", *data).stdout)
    assert stats["instances"] == 10
    assert stats["bytes"] == sum(p.stat().st_size for p in mixed_corpus[:10])
    text = run_cli("import", str(folder), *data, check=False).stdout
    assert "duplicates 10" in text and "skipped (not DICOM) 1" in text


def test_db_rebuild_indexes_the_storage_again_and_replays_the_journal(tmp_path: Path, mixed_corpus: list[Path]) -> None:
    import pydicom

    folder = tmp_path / "media"
    folder.mkdir()
    for path in mixed_corpus[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    data = ["--data-dir", str(tmp_path / "data")]
    run_cli("import", str(folder), *data)
    study = str(pydicom.dcmread(mixed_corpus[0], stop_before_pixels=True).StudyInstanceUID)
    run_cli("qa", "update-study", study, "--set", "StudyDescription=REBUILT", "--reason", "check", *data)
    refused = run_cli("db", "rebuild", *data, check=False)
    assert refused.returncode == 1 and "not empty" in refused.stderr
    rebuilt = [*data, "--database-url", f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"]
    report = json.loads(run_cli("db", "rebuild", "--json", *rebuilt).stdout)
    assert report["indexed"] == 6 and report["operations_replayed"] == 1 and report["not_indexed"] == 0
    assert json.loads(run_cli("stats", "--json", *rebuilt).stdout)["instances"] == 6
    (operation,) = json.loads(run_cli("qa", "list", "--json", *rebuilt).stdout)
    assert operation["kind"] == "update-study" and operation["params"]["set"] == {"StudyDescription": "REBUILT"}


def test_import_while_the_server_runs_is_seen_by_it(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    path = sample_file("MR_small_implicit.dcm")
    sqlite_server.cli("import", str(path))
    from pydicom.dataset import Dataset

    from dimse_client import c_find

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = __import__("pydicom").dcmread(path).StudyInstanceUID
    assert len(c_find(sqlite_server.dicom_port, ds).answers) == 1


def test_send_to_a_node(tmp_path: Path, storescp: StoreScp, mixed_corpus: list[Path]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    run_cli("node", "add", "dest", "--ae-title", "DEST", "--host", "127.0.0.1", "--port", str(storescp.port), *data)
    folder = tmp_path / "out"
    folder.mkdir()
    for path in mixed_corpus[:5]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("x")
    (folder / "bigendian.dcm").write_bytes(sample_file("MR_small_bigendian.dcm").read_bytes())
    result = run_cli("send", "dest", str(folder), *data)
    assert "sent 6" in result.stdout and "skipped 1" in result.stdout
    assert len(storescp.wait_for(6)) == 6
    failed = run_cli("send", f"DEST@127.0.0.1:{free_port()}", str(folder), *data, check=False)
    assert failed.returncode == 1 and "connection refused" in failed.stderr


def test_db_upgrade_and_version(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert f"revision {SCHEMA_HEAD}" in result.stdout
    assert run_cli("version").stdout.strip()


def test_the_called_ae_title_can_be_checked(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}",
        extra_env={"OPENPACS_DICOM__CHECK_CALLED_AE_TITLE": "true"},
    )
    try:
        data = ["--data-dir", str(tmp_path / "cli")]
        wrong = run_cli("echo", f"ANY-SCP@127.0.0.1:{server.dicom_port}", *data, check=False)
        assert wrong.returncode == 1 and "called AE title not recognised" in wrong.stderr
        run_cli("echo", f"OPENPACS@127.0.0.1:{server.dicom_port}", *data)
    finally:
        server.stop()


def test_two_processes_share_the_dicom_port(pg_database: object, tmp_path: Path) -> None:
    """dicom.reuse_port: two servers on one PostgreSQL index accept on the same port."""
    from pydicom.dataset import Dataset

    from dimse_client import c_echo, c_find

    url = pg_database.url  # type: ignore[attr-defined]
    env = {"OPENPACS_DICOM__REUSE_PORT": "true", "OPENPACS_STORAGE__PATH": str(tmp_path / "storage")}
    first = start_server(tmp_path / "a", url, extra_env=env)
    second = start_server(tmp_path / "b", url, extra_env=env, dicom_port=first.dicom_port)
    try:
        for _ in range(8):
            assert c_echo(first.dicom_port) == 0
        second.cli("import", str(sample_file("CT_small.dcm")))
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        ds.PatientID = "1CT1"
        assert len(c_find(first.dicom_port, ds).answers) == 1
        logs = first.log() + second.log()
        assert logs.count("C-ECHO 1") + logs.count("C-FIND 1") >= 2
    finally:
        second.stop()
        first.stop()


def test_user_commands(sqlite_server: ServerProcess) -> None:
    import httpx

    added = sqlite_server.cli("user", "add", "cli-rad", "--role", "radiologist")
    generated = added.stdout.split("first login): ")[1].split()[0]
    assert len(generated) >= 12
    assert sqlite_server.cli("user", "add", "cli-rad", "--role", "viewer", check=False).returncode == 1
    bad_role = sqlite_server.cli("user", "add", "cli-x", "--role", "superuser", check=False)
    assert bad_role.returncode == 2
    short = sqlite_server.cli("user", "add", "cli-y", "--role", "viewer", "--password", "short", check=False)
    assert short.returncode == 1 and "8 characters" in short.stderr
    sqlite_server.cli("user", "add", "cli-int", "--role", "integration", "--password", "integration-pw")
    listed = json.loads(sqlite_server.cli("user", "list", "--json").stdout)
    by_name = {u["name"]: u for u in listed}
    assert by_name["cli-rad"]["must_change_password"] is True
    assert by_name["cli-int"]["role"] == "integration" and by_name["cli-int"]["must_change_password"] is False
    token = sqlite_server.cli("user", "token", "cli-int", "--label", "tests").stdout.strip()
    assert token.startswith("opt_")
    base = sqlite_server.base_url
    assert httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "cli-int"
    assert httpx.get(base + "/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    sqlite_server.cli("user", "passwd", "cli-rad", "--password", "a chosen password")
    me = httpx.get(base + "/api/me", auth=("cli-rad", "a chosen password")).json()
    assert me["must_change_password"] is False
    assert httpx.get(base + "/api/me", auth=("cli-rad", generated)).status_code == 401
    sqlite_server.cli("user", "remove", "cli-int")
    assert httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    missing = sqlite_server.cli("user", "remove", "cli-int", check=False)
    assert missing.returncode == 1 and "no user named 'cli-int'" in missing.stderr
    assert token not in sqlite_server.log() and "a chosen password" not in sqlite_server.log()
