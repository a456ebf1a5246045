"""Shared fixtures: real PostgreSQL databases, real server processes, DCMTK, sample data.

In CI (CI=true) a missing real part (PostgreSQL, DCMTK, ../shared test data) fails the
run; on a developer's machine the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("OPENPACS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when a real part is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- PostgreSQL --------------------------------------------------------------------------


def _pg_available() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


@dataclass
class PgDatabase:
    name: str
    url: str


def create_pg_database() -> PgDatabase:
    import psycopg

    name = f"openpacs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PgDatabase(name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")


def drop_pg_database(db: PgDatabase) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    require(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
    db = create_pg_database()
    try:
        yield db
    finally:
        drop_pg_database(db)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty index database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    require(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
    db = create_pg_database()
    try:
        yield db.url
    finally:
        drop_pg_database(db)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The application (adapters and services, no listener) on an index of each kind."""
    from helpers import application

    application_ = application(tmp_path, database_url)
    try:
        yield application_
    finally:
        application_.close()


def wait_for(check: Callable[[], T], timeout: float = 20) -> T:
    """*check*'s result once it is true, or its last result after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- DCMTK -------------------------------------------------------------------------------


def dcmtk_tool(name: str) -> str:
    """The path of a DCMTK tool; pynetdicom installs apps of the same names in the venv, skip those."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    found = shutil.which(name, path=path + os.pathsep + "/usr/bin")
    if found is None:
        raise FileNotFoundError(f"DCMTK's {name} is not installed")
    return found


@pytest.fixture(scope="session")
def dcmtk() -> None:
    try:
        dcmtk_tool("storescu")
        dcmtk_tool("findscu")
        present = True
    except FileNotFoundError:
        present = False
    require(present, "DCMTK (storescu, findscu)")


def run_dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with TCP_NODELAY=1 (DCMTK leaves Nagle on otherwise)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    command = [dcmtk_tool(args[0]), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def findscu_studies(server: ServerProcess, patient_id: str) -> str:
    """DCMTK findscu at study level for one Patient ID (name and Study Instance UID asked): its
    verbose output, once it reported a successful final response."""
    out = run_dcmtk(
        "findscu", "-v", "-S", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient_id}", "-k", "PatientName",
        "-k", "StudyInstanceUID",
    ).stderr  # fmt: skip
    assert "Received Final Find Response (Success)" in out, out
    return out


def store_ct(server: ServerProcess, folder: Path, patient_id: str, name: str, accession: str = "") -> str:
    """pydicom's CT_small as a new study of *patient_id*, sent with DCMTK storescu; its Study UID."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = patient_id, name
    if accession:
        ds.AccessionNumber = accession
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / f"{patient_id}-{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    run_dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(path))
    return str(ds.StudyInstanceUID)


# -- sample data -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "testdata"
    require(path.is_dir(), "../shared/testdata")
    return path


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A generated multi-patient corpus (bench/corpus.py)."""
    from corpus import generate

    return generate("mixed", tmp_path_factory.mktemp("mixed"), 60, seed=7, per_series=5)


# -- a real server process ---------------------------------------------------------------


@dataclass
class ServerProcess:
    """A running `openpacs serve`."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    dicom_port: int
    http_port: int
    database_url: str
    log_path: Path
    ae_title: str = "OPENPACS"
    hl7_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, *texts: str, timeout: float = 10) -> str:
        """The log once it contains every text (log lines are written when an association ends)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if all(t in log for t in texts) or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run an `openpacs` command against this server's data."""
        return run_cli(
            *args, "--data-dir", str(self.data_dir), "--database-url", self.database_url, check=check, timeout=timeout
        )

    def stop(self, sig: int | None = None) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(sig or signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        return int(self.process.returncode)


def run_cli(
    *args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "openpacs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"openpacs {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def start_server(
    data_dir: Path,
    database_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    dicom_port: int | None = None,
    http_port: int | None = None,
    hl7_port: int | None = None,
) -> ServerProcess:
    dicom_port = dicom_port or free_port()
    http_port = http_port or free_port()
    hl7_port = hl7_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{dicom_port}.log"
    env = {**os.environ, "OPENPACS_STORAGE__SWEEP_INTERVAL_SECONDS": "1", **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openpacs",
            "serve",
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            "--host",
            "127.0.0.1",
            "--dicom-port",
            str(dicom_port),
            "--http-port",
            str(http_port),
            "--hl7-port",
            str(hl7_port),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = ServerProcess(process, data_dir, dicom_port, http_port, database_url, log_path, hl7_port=hl7_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=1).status_code == 200:
                with socket.create_connection(("127.0.0.1", dicom_port), timeout=1):
                    return server
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server did not start:\n{server.log()}")


def server_on(
    kind: str, factory: pytest.TempPathFactory, extra_env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A running server on an index of *kind* (sqlite, postgresql: a database of its own, dropped after)."""
    base = factory.mktemp(f"server-{kind}")
    db: PgDatabase | None = None
    if kind == "postgresql":
        require(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
        db = create_pg_database()
        url = db.url
    else:
        url = f"sqlite:///{base / 'data' / 'index.sqlite3'}"
    server = start_server(base / "data", url, extra_env=extra_env)
    try:
        yield server
    finally:
        server.stop()
        if db is not None:
            drop_pg_database(db)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `openpacs serve` on each index backend (shared by a test module)."""
    yield from server_on(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `openpacs serve` on SQLite."""
    yield from server_on("sqlite", tmp_path_factory)


# -- a DCMTK storescp as move destination -----------------------------------------------


@dataclass
class StoreScp:
    process: subprocess.Popen[bytes]
    port: int
    out: Path
    ae_title: str

    def files(self) -> list[Path]:
        return sorted(p for p in self.out.iterdir() if p.is_file())

    def wait_for(self, count: int, timeout: float = 30) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.files()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.files()


@pytest.fixture
def storescp(tmp_path: Path, dcmtk: None) -> Iterator[StoreScp]:
    """DCMTK's storescp on a free port (by default it accepts uncompressed transfer syntaxes only)."""
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    process = subprocess.Popen(
        [dcmtk_tool("storescp"), "-aet", "DEST", "-od", str(out), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    try:
        yield StoreScp(process, port, out, "DEST")
    finally:
        process.terminate()
        process.wait(timeout=10)
