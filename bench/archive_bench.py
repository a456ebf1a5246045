"""OpenPACS side by side with Debian's Orthanc, in one run, with ratios.

    .venv/bin/python bench/archive_bench.py            # everything (about 10 minutes)
    .venv/bin/python bench/archive_bench.py --quick    # smaller corpora, for a try

Measures, for both servers started fresh with their defaults (Orthanc: Debian's
configuration, SQLite index, SyncStorageArea; OpenPACS: embedded defaults):
- ingest with DCMTK's storescu of 2,000 CT instances of 0.5 MB and 5,000 of 3.5 KB,
  on one association and on four associations at once (instances/s);
- study-level C-FIND by Patient ID: median round trip of 200 queries on an open
  association, the same client against both (milliseconds);
- C-MOVE of a 200-instance study to DCMTK's storescp (instances/s);
- memory after the 7,000-instance load (PSS of the server processes, MB).
Every DICOM tool runs with TCP_NODELAY=1. Results go to bench/results/ as JSON and are
printed as a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "TCP_NODELAY": "1"}
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def dcmtk(name: str) -> str:
    venv = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv)
    found = shutil.which(name, path=path + os.pathsep + "/usr/bin")
    if not found:
        raise SystemExit(f"DCMTK's {name} is needed (apt-get install dcmtk)")
    return found


def ensure_orthanc(*plugins: tuple[str, str]) -> str:
    """Debian's Orthanc binary, with the (package, plugin file) pairs asked for; apt installs them as root."""
    found = shutil.which("Orthanc")
    missing = [package for package, path in plugins if not Path(path).exists()]
    if found and not missing:
        return found
    if os.geteuid() == 0:
        if not found:
            missing.insert(0, "orthanc")
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("Orthanc")
    absent = [package for package, path in plugins if not Path(path).exists()]
    if not found or absent:
        raise SystemExit(f"Debian's packages are needed: apt-get install orthanc {' '.join(absent)}")
    return found


@dataclass
class Server:
    name: str
    ae_title: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    extra_pids: list[int] = field(default_factory=list)

    def pss_mb(self) -> float:
        total = 0
        for pid in [self.process.pid, *self.extra_pids]:
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def orthanc_config(workdir: Path, port: int, http: int, modalities: dict[str, list[Any]]) -> dict[str, Any]:
    """Debian's Orthanc configuration with its own storage, ports and *modalities*, open to DICOM peers."""
    config: dict[str, Any] = json.loads(_strip_comments(Path("/etc/orthanc/orthanc.json").read_text()))
    config.update(
        {
            "Name": "bench",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "DicomAet": "ORTHANC",
            "DicomPort": port,
            "HttpPort": http,
            "Plugins": [],
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": modalities,
        }
    )
    return config


def start_orthanc(workdir: Path, dest_port: int) -> Server:
    binary = ensure_orthanc()
    port, http = free_port(), free_port()
    config = orthanc_config(workdir, port, http, {"dest": ["DEST", "127.0.0.1", dest_port]})
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(workdir / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    wait_port(port)
    return Server("Orthanc 1.10 (Debian)", "ORTHANC", port, process, workdir)


def _strip_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        out.append(line)
    joined = "\n".join(out)
    while "/*" in joined:
        start = joined.index("/*")
        end = joined.index("*/", start)
        joined = joined[:start] + joined[end + 2 :]
    return joined


def start_openpacs(workdir: Path, dest_port: int) -> Server:
    port, http = free_port(), free_port()
    data = workdir / "data"
    log = (workdir / "openpacs.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openpacs",
            "serve",
            "--data-dir",
            str(data),
            "--dicom-port",
            str(port),
            "--http-port",
            str(http),
            "--hl7-port",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    wait_port(port)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openpacs",
            "node",
            "add",
            "dest",
            "--ae-title",
            "DEST",
            "--host",
            "127.0.0.1",
            "--port",
            str(dest_port),
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
        env=ENV,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openpacs",
            "node",
            "add",
            "movescu",
            "--ae-title",
            "MOVESCU",
            "--host",
            "127.0.0.1",
            "--port",
            "104",
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
        env=ENV,
    )
    return Server("OpenPACS", "OPENPACS", port, process, workdir)


def corpus(kind: str, count: int) -> Path:
    from corpus import generate

    folder = WORK / f"{kind}-{count}"
    marker = WORK / f"{kind}-{count}.complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate(kind, folder, count, seed=11)
        marker.write_text("ok")
    return folder


def split(folder: Path, parts: int) -> list[Path]:
    files = sorted(folder.glob("*.dcm"))
    target = folder.parent / f"{folder.name}-split{parts}"
    marker = folder.parent / f"{folder.name}-split{parts}.complete"
    if not marker.exists():
        shutil.rmtree(target, ignore_errors=True)
        for n in range(parts):
            (target / str(n)).mkdir(parents=True)
        # whole series go to one sender, as modalities send them
        series_size = max(1, len(files) // (parts * 4))
        for i, path in enumerate(files):
            os.link(path, target / str((i // series_size) % parts) / path.name)
        marker.write_text("ok")
    return [target / str(n) for n in range(parts)]


def store(server: Server, folders: list[Path]) -> float:
    """Seconds to send every folder, one storescu (one association) per folder, at once."""
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            [dcmtk("storescu"), "-aec", server.ae_title, "+sd", "127.0.0.1", str(server.port), str(f)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        for f in folders
    ]
    for sender in senders:
        _, err = sender.communicate()
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed against {server.name}: {err.decode()[-500:]}")
    return time.perf_counter() - started


def find_latency(server: Server, patient_ids: list[str], queries: int) -> float:
    """Median milliseconds of a study-level C-FIND by Patient ID on an open association."""
    from openpacs.dimse import commands as cmd
    from openpacs.dimse.identifiers import encode_identifier
    from openpacs.dimse.negotiation import request

    find = "1.2.840.10008.5.1.4.1.2.2.1"
    assoc = request(
        "127.0.0.1",
        server.port,
        calling_ae="FINDSCU",
        called_ae=server.ae_title,
        contexts=[(find, ("1.2.840.10008.1.2.1",))],
        max_pdu=65536,
        timeout=30,
    )
    (context,) = assoc.contexts.values()
    times = []
    rng = random.Random(5)
    try:
        for n in range(queries):
            identifier = encode_identifier(
                {
                    "00080052": {"vr": "CS", "Value": ["STUDY"]},
                    "00100020": {"vr": "LO", "Value": [rng.choice(patient_ids)]},
                    "00100010": {"vr": "PN"},
                    "0020000D": {"vr": "UI"},
                    "00080020": {"vr": "DA"},
                    "00080061": {"vr": "CS"},
                },
                "1.2.840.10008.1.2.1",
                [],
            )
            started = time.perf_counter()
            assoc.send(
                context.id,
                {"CommandField": cmd.C_FIND_RQ, "MessageID": n + 1, "Priority": 0, "AffectedSOPClassUID": find},
                identifier,
            )
            while True:
                status = assoc.receive().command["Status"]
                if status not in (0xFF00, 0xFF01):
                    break
            times.append((time.perf_counter() - started) * 1000)
            if status != 0:
                raise RuntimeError(f"C-FIND failed on {server.name}: 0x{status:04X}")
    finally:
        assoc.release()
    return statistics.median(times)


@contextmanager
def storescp(out: Path) -> Iterator[int]:
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "DEST", "--ignore", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        cwd=out,
    )
    wait_port(port)
    try:
        yield port
    finally:
        process.terminate()
        process.wait()


def move(server: Server, study_uid: str, count: int) -> float:
    """Instances/s of a study-level C-MOVE to the storescp destination."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            dcmtk("movescu"),
            "-v",
            "-S",
            "-aet",
            "MOVESCU",
            "-aec",
            server.ae_title,
            "-aem",
            "DEST",
            "127.0.0.1",
            str(server.port),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    if "Final Move Response (Success)" not in output:
        raise RuntimeError(f"C-MOVE failed on {server.name}: {output[-800:]}")
    return count / elapsed


def settle() -> None:
    """Let the disk finish background writeback between phases."""
    os.sync()
    time.sleep(3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pydicom

    ct_count, small_count = (300, 800) if args.quick else (2000, 5000)
    ct = corpus("ct", ct_count)
    small = corpus("small", small_count)
    move_study_folder = corpus("ct", ct_count)  # its first study has 200 instances (corpus.py)
    first = pydicom.dcmread(sorted(move_study_folder.glob("*.dcm"))[0], stop_before_pixels=True)
    move_study, patient_ids = (
        str(first.StudyInstanceUID),
        sorted({str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in sorted(small.glob("*.dcm"))[::50]}),
    )
    study_size = sum(
        1
        for p in sorted(ct.glob("*.dcm"))[:250]
        if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == move_study
    )
    results: dict[str, Any] = {"corpus": {"ct": ct_count, "small": small_count}, "servers": {}}
    starters = {"orthanc": start_orthanc, "openpacs": start_openpacs}
    phases = [
        ("ct_1", lambda: [ct]),
        ("small_1", lambda: [small]),
        ("ct_4", lambda: split(ct, 4)),
        ("small_4", lambda: split(small, 4)),
    ]
    for phase, folders_of in [p for p in phases if not args.phases or p[0] in args.phases]:
        for key, start in starters.items():
            with tempfile.TemporaryDirectory(dir=WORK) as tmp, storescp(Path(tmp) / "dest") as dest_port:
                settle()
                server = start(Path(tmp), dest_port)
                try:
                    folders = folders_of()
                    count = sum(len(list(f.glob("*.dcm"))) for f in folders)
                    seconds = store(server, folders)
                    entry = results["servers"].setdefault(key, {"name": server.name})
                    entry[f"ingest_{phase}"] = count / seconds
                    print(f"{server.name:24} {phase:8} {count / seconds:8.1f} instances/s", flush=True)
                    if phase == "small_1":
                        # the 7,000-instance load: the CT corpus on top, then memory, C-FIND, C-MOVE
                        store(server, [ct])
                        entry["pss_mb"] = server.pss_mb()
                        entry["find_median_ms"] = find_latency(server, patient_ids, 200)
                        entry["move_per_s"] = move(server, move_study, study_size)
                        print(
                            f"{server.name:24} memory {entry['pss_mb']:.0f} MB, "
                            f"C-FIND {entry['find_median_ms']:.2f} ms,"
                            f" C-MOVE {entry['move_per_s']:.0f}/s",
                            flush=True,
                        )
                finally:
                    server.stop()
    orthanc, ours = results["servers"]["orthanc"], results["servers"]["openpacs"]
    results["ratios"] = {
        k: (ours[k] / orthanc[k] if not k.endswith("_ms") and k != "pss_mb" else orthanc[k] / ours[k])
        for k in orthanc
        if k != "name"
    }
    return results


def markdown(results: dict[str, Any]) -> str:
    o, p, r = results["servers"]["orthanc"], results["servers"]["openpacs"], results["ratios"]
    rows = [
        ("storescu, CT 0.5 MB, 1 association (instances/s)", "ingest_ct_1", "{:.0f}"),
        ("storescu, CT 0.5 MB, 4 associations (instances/s)", "ingest_ct_4", "{:.0f}"),
        ("storescu, 3.5 KB, 1 association (instances/s)", "ingest_small_1", "{:.0f}"),
        ("storescu, 3.5 KB, 4 associations (instances/s)", "ingest_small_4", "{:.0f}"),
        ("C-FIND study level by Patient ID, median (ms)", "find_median_ms", "{:.2f}"),
        ("C-MOVE of a 200-instance study (instances/s)", "move_per_s", "{:.0f}"),
        ("memory after 7,000 instances, PSS (MB)", "pss_mb", "{:.0f}"),
    ]
    lines = ["| measure | Orthanc | OpenPACS | OpenPACS vs Orthanc |", "|---|---:|---:|---:|"]
    for label, key, fmt in [row for row in rows if row[1] in r]:
        lines.append(f"| {label} | {fmt.format(o[key])} | {fmt.format(p[key])} | {r[key]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpora, for a try")
    parser.add_argument(
        "--phases",
        type=lambda v: set(v.split(",")),
        default=set(),
        help="only these of ct_1,small_1,ct_4,small_4 (small_1 includes memory, C-FIND and C-MOVE)",
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = run(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"archive-{stamp}.json").write_text(json.dumps(results, indent=2))
    print()
    print(markdown(results))
    print("(ratios above 1 favour OpenPACS: throughput ours/Orthanc; latency and memory Orthanc/ours)")


if __name__ == "__main__":
    main()
