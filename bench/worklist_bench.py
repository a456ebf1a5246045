"""Modality Worklist query latency and storage commitment, OpenPACS side by side with DCMTK's
wlmscpfs and Orthanc (Debian's 1.10 with its ModalityWorklists plugin), in one run.

    .venv/bin/python bench/worklist_bench.py                 # 10,000 entries, 2,000-instance commitment
    .venv/bin/python bench/worklist_bench.py --quick         # 1,000 entries, 300 instances

Worklist: the same N items (generated with a fixed seed: 20 stations, 4 modalities, dates
spread over 30 days around today) are written as DCMTK ``.wl`` files for wlmscpfs and
Orthanc, and loaded into OpenPACS with ``openpacs worklist import``. Each query is what a
modality sends: one association per query (pynetdicom, TCP_NODELAY), C-FIND on the Modality
Worklist Information Model, the usual return keys; once with pynetdicom as the client and once
with a lean requestor (OpenPACS's own PDU code), since pynetdicom's association alone costs
about 9 ms here and would hide the servers' own time. Three queries: a station's entries of
today, a modality's entries of today, and a patient by ID over all dates. Every system must
return the same number of matches for each query (checked).

Storage commitment: one study of M small CT instances stored (DCMTK storescu) into OpenPACS
and into Orthanc; then, as SCU, N-ACTION with all M references, timed until the
N-EVENT-REPORT arrives (OpenPACS sends it on the request's association, Orthanc on an
association of its own to the bench's SCP).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
)
from pynetdicom.transport import AssociationSocket

from archive_bench import ENV, RESULTS, WORK, dcmtk, ensure_orthanc, free_port, orthanc_config, settle, wait_port

WORKLIST_PLUGIN = "/usr/share/orthanc/plugins/libModalityWorklists.so"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
_create_socket = AssociationSocket._create_socket


def _nodelay(self: AssociationSocket, address: Any) -> socket.socket:
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


AssociationSocket._create_socket = _nodelay  # type: ignore[method-assign]


# -- the worklist -----------------------------------------------------------------------------


def write_items(folder: Path, count: int) -> None:
    """*count* worklist items as DCMTK .wl files (a bare data set, Explicit VR Little Endian)."""
    rng = random.Random(20261128)
    today = date.today()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = f"BENCH^PATIENT{n}"
        ds.PatientID = f"WL{n:06d}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = rng.choice("FM")
        ds.AccessionNumber = f"ACC{n:07d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1000.{n}"
        ds.RequestedProcedureID = f"RP{n}"
        ds.RequestedProcedureDescription = "BENCH EXAM"
        ds.RequestedProcedurePriority = rng.choice(["ROUTINE", "STAT", "HIGH"])
        ds.ReferringPhysicianName = "REF^DOC"
        sps = Dataset()
        sps.Modality = rng.choice(["CT", "MR", "CR", "US"])
        sps.ScheduledStationAETitle = f"STATION{rng.randrange(20):02d}"
        sps.ScheduledProcedureStepStartDate = (today + timedelta(days=rng.randrange(-15, 15))).strftime("%Y%m%d")
        sps.ScheduledProcedureStepStartTime = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00"
        sps.ScheduledPerformingPhysicianName = "PERF^DOC"
        sps.ScheduledProcedureStepDescription = "BENCH STEP"
        sps.ScheduledProcedureStepID = f"SPS{n}"
        sps.ScheduledProcedureStepStatus = "SCHEDULED"
        ds.ScheduledProcedureStepSequence = [sps]
        ds.save_as(folder / f"{n:06d}.wl", implicit_vr=False, little_endian=True)


def query(station: str = "", day: str = "", modality: str = "", patient_id: str = "") -> Dataset:
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    sps = Dataset()
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = day
    sps.ScheduledProcedureStepStartTime = ""
    sps.Modality = modality
    sps.ScheduledPerformingPhysicianName = ""
    sps.ScheduledProcedureStepDescription = ""
    sps.ScheduledProcedureStepID = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def find_times(port: int, called: str, ds: Dataset, count: int) -> tuple[list[float], int]:
    """Milliseconds per query (association, C-FIND, release) and the number of matches."""
    ae = AE(ae_title="BENCHMOD")
    ae.add_requested_context(ModalityWorklistInformationFind)
    times, matches = [], -1
    for _ in range(count):
        started = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not assoc.is_established:
            raise SystemExit(f"{called} on port {port} refused the association")
        found = 0
        for status, _identifier in assoc.send_c_find(ds, ModalityWorklistInformationFind):
            code = status.get("Status") if status is not None else None
            if code in (0xFF00, 0xFF01):
                found += 1
            elif code != 0:
                raise SystemExit(f"{called}: C-FIND failed (status {code}; an empty one: the association was aborted)")
        assoc.release()
        times.append((time.perf_counter() - started) * 1000)
        matches = found
    return times, matches


def find_times_lean(port: int, called: str, ds: Dataset, count: int) -> tuple[list[float], int]:
    """The same with a lean requestor (OpenPACS's own PDU code, no polling reactor): the time is
    then the server's, not pynetdicom's (its association alone costs about 9 ms here)."""
    from openpacs.dimse import commands as cmd
    from openpacs.dimse.identifiers import encode_identifier
    from openpacs.dimse.negotiation import request

    identifier = ds.to_json_dict()
    times, matches = [], -1
    for _ in range(count):
        started = time.perf_counter()
        assoc = request("127.0.0.1", port, calling_ae="BENCHMOD", called_ae=called,
                        contexts=[(str(ModalityWorklistInformationFind), ("1.2.840.10008.1.2.1",))],
                        max_pdu=1 << 20, timeout=60)  # fmt: skip
        context = assoc.contexts_for(str(ModalityWorklistInformationFind))[0]
        command = {"CommandField": cmd.C_FIND_RQ, "MessageID": 1, "Priority": 0,
                   "AffectedSOPClassUID": str(ModalityWorklistInformationFind)}  # fmt: skip
        assoc.send(context.id, command, encode_identifier(identifier, context.transfer_syntax, []))
        found = 0
        while True:
            reply = assoc.receive()
            status = int(reply.command.get("Status", 0xC000))
            if status in (0xFF00, 0xFF01):
                found += 1
                continue
            if status != 0:
                raise SystemExit(f"{called}: C-FIND failed (0x{status:04X})")
            break
        assoc.release(30)
        times.append((time.perf_counter() - started) * 1000)
        matches = found
    return times, matches


CLIENTS = {"pynetdicom": find_times, "lean": find_times_lean}


def start(command: list[str], log: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env or ENV)
    wait_port(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worklist(work: Path, entries: int, queries: int) -> dict[str, Any]:
    items = WORK / f"worklist-{entries}"
    if not (items / "done").exists():
        shutil.rmtree(items, ignore_errors=True)
        write_items(items / "WLMSCP", entries)
        (items / "WLMSCP" / "lockfile").touch()
        (items / "done").touch()
    today = date.today().strftime("%Y%m%d")
    cases = {
        "station, today": query(station="STATION07", day=today),
        "modality, today": query(modality="CT", day=today),
        "patient ID, any date": query(patient_id=f"WL{entries // 2:06d}"),
    }
    systems: dict[str, Callable[[], tuple[subprocess.Popen[bytes], int, str]]] = {}

    def openpacs() -> tuple[subprocess.Popen[bytes], int, str]:
        data = work / "openpacs"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "openpacs", "worklist", "import", "--data-dir", str(data), str(items / "WLMSCP")],
            check=True, stdout=subprocess.DEVNULL, env=ENV,
        )  # fmt: skip
        print(f"  OpenPACS: {entries} entries imported in {time.perf_counter() - started:.1f} s", flush=True)
        port, http = free_port(), free_port()
        command = [sys.executable, "-m", "openpacs", "serve", "--data-dir", str(data), "--dicom-port", str(port),
                   "--http-port", str(http), "--hl7-port", "0", "--log-level", "WARNING"]  # fmt: skip
        return start(command, work / "openpacs.log", port), port, "OPENPACS"

    def wlmscpfs() -> tuple[subprocess.Popen[bytes], int, str]:
        port = free_port()
        return start([dcmtk("wlmscpfs"), "-dfp", str(items), str(port)], work / "wlmscpfs.log", port), port, "WLMSCP"

    def orthanc() -> tuple[subprocess.Popen[bytes], int, str]:
        binary = ensure_orthanc(("orthanc", WORKLIST_PLUGIN))
        port, http = free_port(), free_port()
        config = orthanc_config(work / "orthanc", port, http, {})
        config["Plugins"] = [WORKLIST_PLUGIN]
        config["DicomAlwaysAllowFindWorklist"] = True
        config["Worklists"] = {"Enable": True, "Database": str(items / "WLMSCP")}
        (work / "orthanc").mkdir(exist_ok=True)
        (work / "orthanc.json").write_text(json.dumps(config))
        return start([binary, str(work / "orthanc.json")], work / "orthanc.log", port), port, "ORTHANC"

    systems = {"OpenPACS": openpacs, "DCMTK wlmscpfs": wlmscpfs, "Orthanc 1.10 worklist plugin": orthanc}
    results: dict[str, dict[str, Any]] = {}
    for name, launch in systems.items():
        settle()
        process, port, called = launch()
        try:
            results[name] = {}
            for client, measure in CLIENTS.items():
                for case, ds in cases.items():
                    measure(port, called, ds, 5)  # warm-up
                    times, matches = measure(port, called, ds, queries)
                    ordered = sorted(times)
                    results[name][f"{case} ({client})"] = {
                        "matches": matches,
                        "median_ms": statistics.median(ordered),
                        "p95_ms": ordered[int(len(ordered) * 0.95) - 1],
                    }
                    median = statistics.median(ordered)
                    print(f"  {name}, {case}, {client}: {matches} matches, median {median:.2f} ms", flush=True)
        finally:
            stop(process)
    for case in results["OpenPACS"]:
        counts = {results[n][case]["matches"] for n in results}
        if len(counts) != 1:
            raise SystemExit(f"the systems disagree on '{case}': {[(n, results[n][case]['matches']) for n in results]}")
    return results


# -- storage commitment -----------------------------------------------------------------------


def write_study(folder: Path, count: int) -> list[tuple[str, str]]:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    base = dcmread(get_testdata_file("CT_small.dcm"))
    base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for n in range(count):
        base.SOPInstanceUID = base.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        base.InstanceNumber = n + 1
        base.save_as(folder / f"{n:05d}.dcm", enforce_file_format=True)
        refs.append((str(base.SOPClassUID), str(base.SOPInstanceUID)))
    return refs


def commit_time(port: int, called: str, refs: list[tuple[str, str]], listen: int | None) -> tuple[float, int]:
    """Seconds from the N-ACTION-RQ to the N-EVENT-REPORT-RQ, and how many were committed."""
    got = threading.Event()
    box: dict[str, Any] = {}

    def on_report(event: Any) -> tuple[int, None]:
        box["at"] = time.perf_counter()
        box["info"] = event.event_information
        got.set()
        return 0, None

    ae = AE(ae_title="SCBENCH")
    ae.add_requested_context(StorageCommitmentPushModel)
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = None
    if listen is not None:
        server = ae.start_server(("127.0.0.1", listen), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        assoc = ae.associate(
            "127.0.0.1", port, ae_title=called,
            ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)],
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )  # fmt: skip
        info = Dataset()
        info.TransactionUID = generate_uid()
        items = []
        for sop_class, uid in refs:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
            items.append(item)
        info.ReferencedSOPSequence = items
        started = time.perf_counter()
        status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        if status is None or status.Status != 0:
            raise SystemExit(f"{called}: N-ACTION failed ({status})")
        if not got.wait(60):
            raise SystemExit(f"{called}: no N-EVENT-REPORT within 60 s")
        assoc.release()
        committed = len(box["info"].get("ReferencedSOPSequence", []))
        return box["at"] - started, committed
    finally:
        if server is not None:
            server.shutdown()


def commitment(work: Path, instances: int, trials: int) -> dict[str, Any]:
    study = work / "study"
    refs = write_study(study, instances)
    results: dict[str, Any] = {}
    listen = free_port()

    def store(port: int, called: str) -> None:
        subprocess.run(
            [dcmtk("storescu"), "-aec", called, "+sd", "127.0.0.1", str(port), str(study)],
            check=True, env=ENV, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    # OpenPACS
    settle()
    port, http = free_port(), free_port()
    command = [sys.executable, "-m", "openpacs", "serve", "--data-dir", str(work / "sc-openpacs"), "--dicom-port",
               str(port), "--http-port", str(http), "--hl7-port", "0", "--log-level", "WARNING"]  # fmt: skip
    process = start(command, work / "sc-openpacs.log", port)
    try:
        store(port, "OPENPACS")
        runs = [commit_time(port, "OPENPACS", refs, None) for _ in range(trials)]
        results["OpenPACS"] = runs
    finally:
        stop(process)
    # Orthanc: it reports on an association of its own to the requester's modality entry
    settle()
    binary = ensure_orthanc()
    port, http = free_port(), free_port()
    config = orthanc_config(work / "sc-orthanc", port, http, {"bench": ["SCBENCH", "127.0.0.1", listen]})
    (work / "sc-orthanc").mkdir(exist_ok=True)
    (work / "sc-orthanc.json").write_text(json.dumps(config))
    process = start([binary, str(work / "sc-orthanc.json")], work / "sc-orthanc.log", port)
    try:
        store(port, "ORTHANC")
        results["Orthanc 1.10"] = [commit_time(port, "ORTHANC", refs, listen) for _ in range(trials)]
    finally:
        stop(process)
    for name, runs in results.items():
        if any(committed != instances for _, committed in runs):
            raise SystemExit(f"{name} did not commit to every instance: {runs}")
    return {name: {"seconds": statistics.median(s for s, _ in runs), "all": [round(s, 3) for s, _ in runs]}
            for name, runs in results.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 entries, 300 instances, fewer queries")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=100, help="queries per case and system")
    parser.add_argument("--trials", type=int, default=3, help="commitment requests per system (median)")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.instances, args.queries = 1000, 300, 30
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        work = Path(tmp)
        print(f"worklist: {args.entries} entries, {args.queries} queries per case", flush=True)
        mwl = worklist(work, args.entries, args.queries)
        print(f"storage commitment: {args.instances} instances, {args.trials} requests", flush=True)
        sc = commitment(work, args.instances, args.trials)
    ours = mwl["OpenPACS"]
    print(f"\n| MWL, {args.entries} entries, one association per query | matches | "
          + " | ".join(f"{n} median ms (p95)" for n in mwl) + " | peers / OpenPACS |")  # fmt: skip
    print("|---|---:|" + "---:|" * len(mwl) + "---|")
    for case, row in ours.items():
        cells = " | ".join(f"{mwl[n][case]['median_ms']:.2f} ({mwl[n][case]['p95_ms']:.2f})" for n in mwl)
        ratios = ", ".join(
            f"{n.split()[0]} {mwl[n][case]['median_ms'] / row['median_ms']:.1f}x" for n in mwl if n != "OpenPACS"
        )
        print(f"| {case} | {row['matches']} | {cells} | {ratios} |")
    print(f"\n| Storage commitment, {args.instances} instances | seconds to N-EVENT-REPORT (median) | all |")
    print("|---|---:|---|")
    for name, row in sc.items():
        print(f"| {name} | {row['seconds']:.3f} | {', '.join(map(str, row['all']))} |")
    ratio = sc["Orthanc 1.10"]["seconds"] / sc["OpenPACS"]["seconds"]
    print(f"Orthanc / OpenPACS: {ratio:.1f}x; target (< 1 s): {'met' if sc['OpenPACS']['seconds'] < 1 else 'NOT met'}")
    typical = ours["station, today (pynetdicom)"]["median_ms"]
    print(f"MWL target (median < 20 ms, station query): {'met' if typical < 20 else 'NOT met'} ({typical:.2f} ms)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"worklist-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"worklist": mwl, "commitment": sc, "args": vars(args)}, indent=2))
    print(f"{out} written")


if __name__ == "__main__":
    main()
