"""OpenPACS side by side with Debian's Orthanc 1.10 and its DICOMweb plugin, in one run, with ratios.

    .venv/bin/python bench/dicomweb_bench.py                  # everything (about 5 minutes)
    .venv/bin/python bench/dicomweb_bench.py --quick          # smaller corpora, for a try
    .venv/bin/python bench/dicomweb_bench.py --phases qido,metadata

Each server is started fresh (Orthanc: Debian's configuration with the DICOMweb plugin,
StudiesMetadata and SeriesMetadata "Full"; OpenPACS: embedded defaults, an admin user and
an API token made with its CLI), loaded with DCMTK's storescu on one association, and then
asked the same questions by the same client (requests, one keep-alive session per client,
no compression asked for, nothing parsed in the timed loops beyond what is needed):
- qido: QIDO-RS median latency (ms) of studies by Patient ID (one match), by a one-year
  StudyDate range (50 matches), /studies?limit=100, and the instance list of a
  100-instance series, over a corpus of 400 studies spread over 8 years;
- metadata: WADO-RS /studies/{s}/series/{se}/metadata of a 500-instance series: the first
  call and the median of the following ones (ms);
- wado: WADO-RS retrieval of a 200-instance study of 0.5 MB CT instances (105 MB), with
  transfer-syntax=* and with the default Accept (Explicit VR Little Endian): the body is
  streamed and its bytes counted, median MB/s of 5 runs after a checked warm-up;
- stow: STOW-RS of 400 CT instances of 0.5 MB and of 2,000 instances of 3.5 KB in
  multipart/related requests of 50 instances, from 1 client and from 4 clients at once
  (instances/s; every request's answer is checked; fresh UIDs for each run).
Answers are checked (match counts, multipart parts, transfer syntaxes, stored counts) and
what looks wrong is listed under "problems". Every server and DICOM tool runs with
TCP_NODELAY=1. Results go to bench/results/ as JSON and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from archive_bench import (
    ENV,
    RESULTS,
    WORK,
    Server,
    _strip_comments,
    ensure_orthanc,
    free_port,
    settle,
    store,
    wait_port,
)

DATA = WORK / "dicomweb"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOM_JSON = "application/dicom+json"
ACCEPT_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_DEFAULT = 'multipart/related; type="application/dicom"'
EXPLICIT_LE = "1.2.840.10008.1.2.1"
BATCH = 50
USER, PASSWORD = "bench", "bench-password-1"
FIRST_YEAR = 2016

#: Orthanc's figures measured earlier on this machine, for comparison only
REFERENCE = {
    "qido_patient_ms": 4.5,
    "qido_date_ms": 37.0,
    "qido_limit_ms": 68.0,
    "qido_instances_ms": 64.0,
    "wado_any_mb_s": 1492.0,
    "stow_ct_1": 192.0,
    "stow_small_1": 551.0,
}
#: what OpenPACS should reach, as a ratio "x faster" than Orthanc
TARGETS = {
    "qido_patient_ms": 1.0,
    "qido_date_ms": 1.0,
    "qido_limit_ms": 1.0,
    "qido_instances_ms": 1.0,
    "metadata_first_ms": 5.0,
    "metadata_warm_ms": 5.0,
    "wado_any_mb_s": 1.0,
    "stow_ct_1": 1.5,
    "stow_small_1": 1.5,
    "stow_ct_4": 1.5,
    "stow_small_4": 1.5,
}
ROWS = [
    ("QIDO-RS studies by Patient ID, 1 match, median (ms)", "qido_patient_ms", "{:.2f}"),
    ("QIDO-RS studies by one-year StudyDate range, {per_year} matches, median (ms)", "qido_date_ms", "{:.1f}"),
    ("QIDO-RS /studies?limit=100, median (ms)", "qido_limit_ms", "{:.1f}"),
    ("QIDO-RS instances of a {series_small}-instance series, median (ms)", "qido_instances_ms", "{:.1f}"),
    ("WADO-RS series metadata, {series_large} instances, first call (ms)", "metadata_first_ms", "{:.0f}"),
    ("WADO-RS series metadata, {series_large} instances, warm median (ms)", "metadata_warm_ms", "{:.0f}"),
    ("WADO-RS {wado}-instance CT study, transfer-syntax=* (MB/s)", "wado_any_mb_s", "{:.0f}"),
    ("WADO-RS {wado}-instance CT study, default Accept (MB/s)", "wado_default_mb_s", "{:.0f}"),
    ("STOW-RS {stow_ct} CT of 0.5 MB, 1 client (instances/s)", "stow_ct_1", "{:.0f}"),
    ("STOW-RS {stow_ct} CT of 0.5 MB, 4 clients (instances/s)", "stow_ct_4", "{:.0f}"),
    ("STOW-RS {stow_small} of 3.5 KB, 1 client (instances/s)", "stow_small_1", "{:.0f}"),
    ("STOW-RS {stow_small} of 3.5 KB, 4 clients (instances/s)", "stow_small_4", "{:.0f}"),
]
PHASES = ("qido", "metadata", "wado", "stow")


@dataclass(frozen=True)
class Sizes:
    studies: int  # studies of the query corpus, 2 instances each
    years: int  # spread over this many years (studies / years match a one-year range)
    series_small: int  # the series whose instance list is queried
    series_large: int  # the series whose metadata is asked for
    wado: int  # CT instances of the retrieved study
    stow_ct: int
    stow_small: int
    queries: int  # repetitions of the cheap QIDO query
    repeats: int  # repetitions of the other QIDO queries
    metadata: int  # warm metadata calls
    wado_runs: int


FULL = Sizes(400, 8, 100, 500, 200, 400, 2000, 200, 50, 10, 5)
QUICK = Sizes(100, 2, 100, 200, 40, 100, 400, 50, 10, 3, 3)


# ---------------------------------------------------------------- corpora


def _template(private: bool, size: int) -> Any:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence
    if not private:
        for elem in list(ds):
            if elem.tag.is_private:
                del ds[elem.tag]
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = bytes(size * size * 2)
    return ds


def _write(template: Any, path: Path, uids: tuple[str, str], fields: dict[str, Any]) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = template.copy()
    ds.file_meta = template.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids
    for key, value in fields.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


def cached(name: str, make: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """A generated data set under bench/work/dicomweb, made once; its manifest (JSON beside it)."""
    import shutil

    folder = DATA / name
    manifest = DATA / f"{name}.json"
    if not manifest.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        info = make(folder)
        manifest.write_text(json.dumps(info))
        print(f"generated {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder, json.loads(manifest.read_text())


def query_corpus(studies: int, years: int) -> tuple[Path, dict[str, Any]]:
    """*studies* studies of 2 small instances, one patient each, StudyDates spread over *years* years."""

    def make(folder: Path) -> dict[str, Any]:
        from pydicom.uid import generate_uid

        template = _template(False, 26)
        patients = []
        for i in range(studies):
            year = FIRST_YEAR + i % years
            patient = f"QIDO{i:05d}"
            patients.append(patient)
            uids = (generate_uid(), generate_uid())
            for n in range(2):
                _write(
                    template,
                    folder / f"{i:05d}-{n}.dcm",
                    uids,
                    {
                        "PatientID": patient,
                        "PatientName": f"QUERY^PATIENT{i:05d}",
                        "PatientBirthDate": f"19{40 + i % 60:02d}0{1 + i % 9}1{i % 9}",
                        "StudyDate": f"{year}{1 + (i // years) % 12:02d}{1 + (i * 7) % 28:02d}",
                        "StudyTime": f"{8 + i % 10:02d}{i % 60:02d}00",
                        "AccessionNumber": f"Q{i:07d}",
                        "StudyID": str(i),
                        "StudyDescription": f"QUERY STUDY {i}",
                        "SeriesNumber": 1,
                        "InstanceNumber": n + 1,
                    },
                )
        return {"patients": patients, "years": [FIRST_YEAR + y for y in range(years)], "per_year": studies // years}

    return cached(f"query-{studies}-{years}", make)


def series_corpus(count: int) -> tuple[Path, dict[str, Any]]:
    """One study with one series of *count* CT instances (full CT header, private tags, 32x32 pixels)."""

    def make(folder: Path) -> dict[str, Any]:
        from pydicom.uid import generate_uid

        template = _template(True, 32)
        uids = (generate_uid(), generate_uid())
        for n in range(count):
            _write(
                template,
                folder / f"{n:05d}.dcm",
                uids,
                {
                    "PatientID": f"SERIES{count:05d}",
                    "PatientName": f"SERIES^COUNT{count}",
                    "StudyDate": "20250615",
                    "AccessionNumber": f"S{count:07d}",
                    "SeriesNumber": 1,
                    "InstanceNumber": n + 1,
                    "ImagePositionPatient": [-160.0, -160.0, -0.5 * n],
                    "SliceLocation": -0.5 * n,
                },
            )
        return {"study": uids[0], "series": uids[1], "count": count}

    return cached(f"series-{count}", make)


def bench_corpus(kind: str, count: int, tag: str) -> tuple[Path, dict[str, Any]]:
    """corpus.py's generator (fresh UIDs on each generation), cached under its own name."""

    def make(folder: Path) -> dict[str, Any]:
        import pydicom

        from corpus import generate

        paths = generate(kind, folder, count, seed=17, per_series=count if kind == "ct" and tag == "wado" else None)
        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        return {"study": str(first.StudyInstanceUID), "count": count, "bytes": sum(p.stat().st_size for p in paths)}

    return cached(f"{kind}-{count}-{tag}", make)


# ---------------------------------------------------------------- servers


@dataclass
class Web:
    """A running server and how to reach its DICOMweb service."""

    key: str
    server: Server
    base: str  # http://127.0.0.1:PORT/dicom-web
    headers: dict[str, str]

    def client(self) -> Client:
        return Client(self.base, self.headers)


class Client:
    """A keep-alive requests session on one server's DICOMweb root. (requests rather than httpx:
    httpx's streaming caps a WADO-RS retrieval at about 500 MB/s here, requests' at 1.4 GB/s.)"""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=600, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=600, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.session.close()


def start_orthanc_dicomweb(workdir: Path) -> Web:
    """Orthanc with Debian's configuration plus the DICOMweb plugin (metadata "Full")."""
    binary = ensure_orthanc(("orthanc-dicomweb", PLUGIN))
    port, http = free_port(), free_port()
    config = json.loads(_strip_comments(Path("/etc/orthanc/orthanc.json").read_text()))
    config.update(
        {
            "Name": "bench",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "DicomAet": "ORTHANC",
            "DicomPort": port,
            "HttpPort": http,
            "Plugins": [PLUGIN],
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Host": f"127.0.0.1:{http}",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
    )
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(workdir / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    server = Server("Orthanc 1.10 + DICOMweb 1.7 (Debian)", "ORTHANC", port, process, workdir)
    try:
        wait_port(port)
        wait_port(http)
        web = Web("orthanc", server, f"http://127.0.0.1:{http}/dicom-web", {"Accept-Encoding": "identity"})
        with web.client() as client:
            client.get("/studies").raise_for_status()  # the plugin answers
    except BaseException:
        server.stop()
        raise
    return web


def start_openpacs_dicomweb(workdir: Path) -> Web:
    """OpenPACS with its defaults; a user and an API token made with the CLI on the same data dir."""
    port, http = free_port(), free_port()
    data = workdir / "data"
    log = (workdir / "openpacs.log").open("wb")
    serve = ["serve", "--data-dir", str(data), "--dicom-port", str(port), "--http-port", str(http), "--hl7-port", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "openpacs", *serve, "--log-level", "WARNING"],
        stdout=log,  # the first start's admin password lands there: not used
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    server = Server("OpenPACS", "OPENPACS", port, process, workdir)
    try:
        wait_port(port)
        wait_port(http)
        cli = [sys.executable, "-m", "openpacs", "user"]
        add = [*cli, "add", USER, "--role", "admin", "--password", PASSWORD, "--data-dir", str(data)]
        subprocess.run(add, check=True, capture_output=True, env=ENV)
        token = subprocess.run(
            [*cli, "token", USER, "--label", "bench", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            text=True,
            env=ENV,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
        web = Web("openpacs", server, f"http://127.0.0.1:{http}/dicom-web", headers)
        with web.client() as client:
            client.get("/studies", params={"limit": 1}).raise_for_status()  # the token works
    except BaseException:
        server.stop()
        raise
    return web


# ---------------------------------------------------------------- measures


class Problems:
    """What looked wrong: printed at once, kept in the results."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()

    def add(self, web: Web, text: str) -> None:
        line = f"{web.server.name}: {text}"
        with self.lock:
            self.items.append(line)
        print(f"  PROBLEM {line}", flush=True)

    def check(self, web: Web, ok: bool, text: str) -> bool:
        if not ok:
            self.add(web, text)
        return ok


def _ok(response: requests.Response, what: str) -> requests.Response:
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


def _timed_get(client: Client, url: str, params: dict[str, Any], accept: str) -> tuple[float, requests.Response]:
    started = time.perf_counter()
    response = client.get(url, params=params, headers={"Accept": accept})
    _ = response.content
    return (time.perf_counter() - started) * 1000, response


def _answers(response: requests.Response) -> list[dict[str, Any]]:
    return orjson.loads(response.content) if response.status_code == 200 and response.content else []


def qido(web: Web, sizes: Sizes, query: dict[str, Any], series: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """Median latencies of four QIDO-RS searches; the number of answers checked."""
    out: dict[str, Any] = {}
    rng = random.Random(3)
    with web.client() as client:
        for _ in range(3):  # warm the connection and the server's caches alike
            _timed_get(client, "/studies", {"PatientID": query["patients"][0]}, DICOM_JSON)

        def measure(
            key: str, label: str, repeats: int, request: Callable[[int], tuple[str, dict[str, Any], int]]
        ) -> None:
            times, counts = [], set()
            for n in range(repeats):
                url, params, expected = request(n)
                ms, response = _timed_get(client, url, params, DICOM_JSON)
                _ok(response, label)
                times.append(ms)
                count = len(_answers(response))
                counts.add(count)
                problems.check(web, count == expected, f"{label} {params}: {count} answers, {expected} expected")
            out[key] = statistics.median(times)
            print(f"{web.server.name:40} {label:42} {out[key]:8.2f} ms  ({sorted(counts)} answers)", flush=True)

        measure(
            "qido_patient_ms",
            "QIDO studies by PatientID",
            sizes.queries,
            lambda _: ("/studies", {"PatientID": rng.choice(query["patients"])}, 1),
        )
        years = query["years"]
        measure(
            "qido_date_ms",
            "QIDO studies by one-year date range",
            sizes.repeats,
            lambda n: (
                "/studies",
                {"StudyDate": f"{years[n % len(years)]}0101-{years[n % len(years)]}1231"},
                query["per_year"],
            ),
        )
        measure("qido_limit_ms", "QIDO /studies?limit=100", sizes.repeats, lambda _: ("/studies", {"limit": 100}, 100))
        instances = f"/studies/{series['study']}/series/{series['series']}/instances"
        measure("qido_instances_ms", "QIDO instances of a series", sizes.repeats, lambda _: (instances, {}, 100))
        # what a study answer holds, to compare the servers
        response = _ok(client.get("/studies", params={"PatientID": query["patients"][1]}), "QIDO")
        answers = _answers(response)
        out["qido_study_keys"] = sorted(answers[0]) if answers else []
    return out


def metadata(web: Web, sizes: Sizes, series: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """The first and the warm series metadata calls; the answer checked."""
    url = f"/studies/{series['study']}/series/{series['series']}/metadata"
    out: dict[str, Any] = {}
    with web.client() as client:
        first, response = _timed_get(client, url, {}, DICOM_JSON)
        _ok(response, "metadata")
        items = _answers(response)
        expected = series["count"]
        problems.check(web, len(items) == expected, f"metadata: {len(items)} instances, {expected} expected")
        keys = [set(item) for item in items]
        out["metadata_keys"] = sorted(set.intersection(*keys)) if keys else []
        out["metadata_bytes"] = len(response.content)
        problems.check(
            web,
            len({orjson.dumps(item.get("00080018")) for item in items}) == len(items),
            "metadata: SOP Instance UIDs repeat",
        )
        warm = []
        for _ in range(sizes.metadata):
            ms, response = _timed_get(client, url, {}, DICOM_JSON)
            _ok(response, "metadata")
            warm.append(ms)
        out["metadata_first_ms"] = first
        out["metadata_warm_ms"] = statistics.median(warm)
        print(
            f"{web.server.name:40} {'series metadata, ' + str(series['count']) + ' instances':42} "
            f"first {first:7.0f} ms, warm {out['metadata_warm_ms']:7.0f} ms "
            f"({len(response.content) / 1e6:.1f} MB)",
            flush=True,
        )
    return out


def _stream(client: Client, url: str, accept: str, keep: bool) -> tuple[float, int, str, bytes]:
    """Seconds, bytes, Content-Type (and the body when *keep*) of a streamed GET."""
    chunks: list[bytes] = []
    size = 0
    started = time.perf_counter()
    with client.get(url, headers={"Accept": accept}, stream=True) as response:
        if response.status_code != 200:
            raise RuntimeError(f"WADO-RS {accept}: HTTP {response.status_code} {response.text[:300]}")
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
            if keep:
                chunks.append(chunk)
        content_type = response.headers.get("content-type", "")
    return time.perf_counter() - started, size, content_type, b"".join(chunks)


def _syntax(part: bytes) -> str:
    """The Transfer Syntax UID (0002,0010) of a Part 10 file (explicit VR little endian meta)."""
    at = part.find(b"\x02\x00\x10\x00UI", 0, 4096)
    if at < 0:
        return "?"
    (length,) = struct.unpack_from("<H", part, at + 6)
    return part[at + 8 : at + 8 + length].rstrip(b"\x00 ").decode("ascii", "replace")


def _parts(body: bytes, content_type: str) -> list[tuple[str, int, str]]:
    """(Content-Type, length, transfer syntax of the file) of each part of a multipart/related body."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return []
    out = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        part_type = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-type:"):
                part_type = line.split(":", 1)[1].strip()
        out.append((part_type, len(data) - 2, _syntax(data[:4096])))
    return out


def wado(web: Web, sizes: Sizes, study: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """MB/s of a study's retrieval with both Accept headers; the first answer of each checked."""
    out: dict[str, Any] = {}
    url = f"/studies/{study['study']}"
    with web.client() as client:
        for key, accept in (("wado_any_mb_s", ACCEPT_ANY), ("wado_default_mb_s", ACCEPT_DEFAULT)):
            _, size, content_type, body = _stream(client, url, accept, keep=True)
            parts = _parts(body, content_type)
            del body
            problems.check(web, len(parts) == study["count"], f"WADO {accept}: {len(parts)} parts, {study['count']}")
            stored = study["bytes"]
            problems.check(web, size >= stored, f"WADO {accept}: {size} bytes, less than the {stored} bytes sent")
            syntaxes = {syntax for _, _, syntax in parts}
            problems.check(web, syntaxes == {EXPLICIT_LE}, f"WADO {accept}: files in transfer syntaxes {syntaxes}")
            declared = {t.partition("transfer-syntax=")[2].strip('"') for t, _, _ in parts}
            out[key.replace("_mb_s", "_part_syntax")] = sorted(declared)
            rates = []
            for _ in range(sizes.wado_runs):
                seconds, size, _, _ = _stream(client, url, accept, keep=False)
                rates.append(size / 1e6 / seconds)
            out[key] = statistics.median(rates)
            out[key.replace("_mb_s", "_runs")] = rates
            print(
                f"{web.server.name:40} {'WADO-RS study, ' + key.split('_')[1]:42} {out[key]:8.0f} MB/s "
                f"({size / 1e6:.0f} MB, runs {', '.join(f'{r:.0f}' for r in rates)})",
                flush=True,
            )
    return out


def _bodies(folder: Path) -> list[tuple[bytes, int]]:
    """multipart/related bodies of BATCH instances each, with a fixed boundary."""
    files = sorted(folder.glob("*.dcm"))
    out = []
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        pieces = []
        for path in batch:
            pieces += [f"--{_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode(), path.read_bytes(), b"\r\n"]
        pieces.append(f"--{_BOUNDARY}--\r\n".encode())
        out.append((b"".join(pieces), len(batch)))
    return out


_BOUNDARY = "bench-" + secrets.token_hex(12)
_STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={_BOUNDARY}'


def stow(web: Web, folder: Path, clients: int, problems: Problems) -> float:
    """Instances/s of STOW-RS of every instance of *folder*, from *clients* clients at once."""
    bodies = _bodies(folder)
    total = sum(n for _, n in bodies)
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[BaseException] = []
    stored = [0]

    def client_loop() -> None:
        try:
            with web.client() as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        body, count = queue.pop()
                    response = client.post(
                        "/studies", data=body, headers={"Content-Type": _STOW_TYPE, "Accept": DICOM_JSON}
                    )
                    if response.status_code != 200:
                        problems.add(web, f"STOW-RS: HTTP {response.status_code} {response.text[:300]}")
                    try:
                        answer = orjson.loads(response.content) if response.content else {}
                    except orjson.JSONDecodeError:
                        answer = {}
                    done = len(answer.get("00081199", {}).get("Value", []))
                    failed = len(answer.get("00081198", {}).get("Value", []))
                    if done != count or failed:
                        problems.add(web, f"STOW-RS: {done} of {count} stored, {failed} failed")
                    with lock:
                        stored[0] += done
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    problems.check(web, stored[0] == total, f"STOW-RS: {stored[0]} of {total} instances stored")
    return total / elapsed


# ---------------------------------------------------------------- the run


@contextmanager
def running(start: Callable[[Path], Web]) -> Iterator[Web]:
    """A fresh server in a temporary folder under bench/work, stopped whatever happens."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, ExitStack() as stack:
        settle()
        web = start(Path(tmp))
        stack.callback(web.server.stop)
        yield web


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    phases = [p for p in PHASES if not args.phases or p in args.phases]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))} (choose from {', '.join(PHASES)})")
    query = small = large = wado_study = None
    if "qido" in phases:
        query = query_corpus(sizes.studies, sizes.years)
        small = series_corpus(sizes.series_small)
    if "metadata" in phases:
        large = series_corpus(sizes.series_large)
    if "wado" in phases:
        wado_study = bench_corpus("ct", sizes.wado, "wado")
    stow_sets = {}
    if "stow" in phases:
        for kind, count in (("ct", sizes.stow_ct), ("small", sizes.stow_small)):
            for clients in (1, 4):
                stow_sets[f"stow_{kind}_{clients}"] = (bench_corpus(kind, count, f"stow{clients}")[0], clients)
    problems = Problems()
    results: dict[str, Any] = {"sizes": sizes.__dict__, "phases": phases, "servers": {}}
    for start in (start_orthanc_dicomweb, start_openpacs_dicomweb):
        with running(start) as web:
            entry: dict[str, Any] = results["servers"].setdefault(web.key, {"name": web.server.name})
            loads = [c for c in (query, small, large, wado_study) if c is not None]
            if loads:
                started = time.perf_counter()
                for folder, _ in loads:
                    store(web.server, [folder])
                count = sum(len(list(f.glob("*.dcm"))) for f, _ in loads)
                print(f"{web.server.name:40} loaded {count} instances in {time.perf_counter() - started:.1f} s")
                settle()
            # the machine may be shared: say how busy it was
            entry["loadavg"] = os.getloadavg()[0]
            print(f"{web.server.name:40} load average {entry['loadavg']:.2f}", flush=True)
            steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
            if query and small:
                steps.append(("qido", lambda w=web: qido(w, sizes, query[1], small[1], problems)))
            if large:
                steps.append(("metadata", lambda w=web: metadata(w, sizes, large[1], problems)))
            if wado_study:
                steps.append(("wado", lambda w=web: wado(w, sizes, wado_study[1], problems)))
            for name, (folder, clients) in stow_sets.items():

                def one(
                    w: Web = web, name: str = name, folder: Path = folder, clients: int = clients
                ) -> dict[str, float]:
                    settle()
                    rate = stow(w, folder, clients, problems)
                    print(f"{w.server.name:40} {name:42} {rate:8.0f} instances/s", flush=True)
                    return {name: rate}

                steps.append((name, one))
            for name, step in steps:
                try:
                    entry.update(step())
                except Exception as exc:
                    problems.add(web, f"phase {name} failed: {exc}")
                    traceback.print_exc()
            problems.check(web, web.server.process.poll() is None, "the server process died")
    orthanc, ours = results["servers"].get("orthanc", {}), results["servers"].get("openpacs", {})
    results["ratios"] = {
        key: (orthanc[key] / ours[key] if key.endswith("_ms") else ours[key] / orthanc[key])
        for _, key, _ in ROWS
        if isinstance(orthanc.get(key), float) and isinstance(ours.get(key), float) and ours[key] and orthanc[key]
    }
    for kind in ("qido_study_keys", "metadata_keys"):
        if kind in orthanc and kind in ours:
            only_orthanc = sorted(set(orthanc[kind]) - set(ours[kind]))
            only_ours = sorted(set(ours[kind]) - set(orthanc[kind]))
            results[f"{kind}_only_orthanc"], results[f"{kind}_only_openpacs"] = only_orthanc, only_ours
    results["problems"] = problems.items
    results["reference_orthanc"] = REFERENCE
    results["targets"] = TARGETS
    return results


def markdown(results: dict[str, Any]) -> str:
    o, p, r = results["servers"].get("orthanc", {}), results["servers"].get("openpacs", {}), results["ratios"]
    lines = [
        "| measure | OpenPACS | Orthanc | OpenPACS vs Orthanc | target | Orthanc reference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key, fmt in ROWS:
        if key not in o and key not in p:
            continue
        ours = fmt.format(p[key]) if key in p else "failed"
        theirs = fmt.format(o[key]) if key in o else "failed"
        ratio = f"{r[key]:.2f}x" if key in r else "-"
        target = f"≥ {TARGETS[key]:g}x" if key in TARGETS else ""
        if key in r and key in TARGETS:
            target += " ✓" if r[key] >= TARGETS[key] else " ✗"
        reference = fmt.format(REFERENCE[key]) if key in REFERENCE else ""
        sizes = results["sizes"]
        text = label.format(**sizes, per_year=sizes["studies"] // sizes["years"])
        lines.append(f"| {text} | {ours} | {theirs} | {ratio} | {target} | {reference} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpora, for a try")
    parser.add_argument(
        "--phases",
        type=lambda v: {p.strip() for p in v.split(",") if p.strip()},
        default=set(),
        help=f"only these of {','.join(PHASES)}",
    )
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = run(args)
    results["seconds"] = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"dicomweb-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print()
    print(markdown(results))
    print(
        "(ratios above 1 favour OpenPACS: throughput ours/Orthanc, latency Orthanc/ours; "
        "the reference column is Orthanc measured earlier on this machine)"
    )
    for kind in ("qido_study_keys", "metadata_keys"):
        for side in ("orthanc", "openpacs"):
            extra = results.get(f"{kind}_only_{side}")
            if extra:
                print(f"{kind}: only {side} returns {', '.join(extra)}")
    if results["problems"]:
        print("\nproblems:")
        for line in results["problems"]:
            print(f"- {line}")
    print(f"\n{path.relative_to(WORK.parent.parent)} written in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
