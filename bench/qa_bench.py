"""Corrections: OpenPACS (SQLite and PostgreSQL) side by side with Debian's Orthanc 1.10, in one run.

    .venv/bin/python bench/qa_bench.py            # 5,000 + 2,000 instances (about 3 minutes)
    .venv/bin/python bench/qa_bench.py --quick    # 500 + 200 instances

The same corpus is stored (storescu, one association) in a fresh OpenPACS on SQLite,
a fresh OpenPACS on PostgreSQL (a database made and dropped here) and a fresh Orthanc:
- patient BENCH00001 with one study of N instances (2 series);
- patient QATARGET with one study of M instances;
- patient QAOTHER with one instance.
Then each server does the two corrections an administrator does most:
- move the M-instance study to patient QAOTHER: OpenPACS `/api/qa/move-study`;
  Orthanc `POST /studies/{id}/modify` replacing PatientID and PatientName (Orthanc has
  no reallocation: it rewrites every instance under new UIDs);
- merge patient BENCH00001 (N instances) into QATARGET: OpenPACS
  `/api/qa/merge-patients`; Orthanc `POST /patients/{id}/modify` with the target's
  PatientID and PatientName (Orthanc has no merge either);
- then merge the M-instance study (now QAOTHER's) into QAOTHER's one-instance study,
  every moved series and instance under new UIDs: OpenPACS `/api/qa/merge-studies`
  (the old identities rejected by a 113038 note); Orthanc `POST /studies/{id}/merge`
  with `KeepSource: false` (it rewrites every instance and deletes the originals).
Each is timed from the request to the answer (Orthanc's modify runs synchronously),
then checked: a study-level query by the new Patient ID finds the study.
Results go to bench/results/ as JSON and are printed as a Markdown table with ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pydicom
import requests

from archive_bench import ENV, RESULTS, WORK, Server, free_port, settle, store, wait_port
from corpus import generate
from dicomweb_bench import PASSWORD, USER, start_orthanc_dicomweb

DATA = WORK / "qa"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def corpus(count: int, moved: int) -> list[Path]:
    """The three patients' folders (made once per size)."""
    root = DATA / f"{count}-{moved}"
    done = root / "done"
    if not done.exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        generate("small", root / "source", count, seed=41, per_series=count // 2)
        for name, size, seed in (("target", moved, 42), ("other", 1, 43)):
            for path in generate("small", root / name, size, seed=seed, per_series=max(1, size // 2)):
                ds = pydicom.dcmread(path)
                ds.PatientID = "QATARGET" if name == "target" else "QAOTHER"
                ds.PatientName = "TARGET^TOM" if name == "target" else "OTHER^OLGA"
                ds.save_as(path, enforce_file_format=True)
        done.write_text("ok")
    return [root / "source", root / "target", root / "other"]


def study_of(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def start_openpacs(workdir: Path, database_url: str | None) -> tuple[Server, str, dict[str, str]]:
    port, http = free_port(), free_port()
    data = workdir / "data"
    extra = ["--database-url", database_url] if database_url else []
    log = (workdir / "openpacs.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "openpacs", "serve", "--data-dir", str(data), "--dicom-port", str(port),
         "--http-port", str(http), "--hl7-port", "0", "--log-level", "WARNING", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=ENV,
    )  # fmt: skip
    name = "OpenPACS (PostgreSQL)" if database_url else "OpenPACS (SQLite)"
    server = Server(name, "OPENPACS", port, process, workdir)
    wait_port(port)
    wait_port(http)
    cli = [sys.executable, "-m", "openpacs", "user", "--data-dir", str(data), *extra]
    subprocess.run([*cli[:4], "add", USER, "--role", "admin", "--password", PASSWORD, *cli[4:]], check=True,
                   capture_output=True, env=ENV)  # fmt: skip
    token = subprocess.run([*cli[:4], "token", USER, *cli[4:]], check=True, capture_output=True, text=True,
                           env=ENV).stdout.strip()  # fmt: skip
    return server, f"http://127.0.0.1:{http}", {"Authorization": f"Bearer {token}"}


def openpacs_run(database_url: str | None, folders: list[Path]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        settle()
        server, base, headers = start_openpacs(Path(tmp), database_url)
        try:
            store(server, folders)
            settle()
            http = requests.Session()
            http.headers.update(headers)
            out: dict[str, Any] = {"name": server.name}
            started = time.perf_counter()
            moved = http.post(
                base + "/api/qa/move-study",
                json={"study": study_of(folders[1]), "to_patient": {"patient_id": "QAOTHER"}, "reason": "bench"},
                timeout=600,
            )
            out["move_study_s"] = time.perf_counter() - started
            moved.raise_for_status()
            started = time.perf_counter()
            merged = http.post(
                base + "/api/qa/merge-patients",
                json={"source": {"patient_id": "BENCH00001"}, "target": {"patient_id": "QATARGET"}, "reason": "bench"},
                timeout=600,
            )
            out["merge_s"] = time.perf_counter() - started
            merged.raise_for_status()
            out["merge_affected"] = merged.json()["summary"]["affected"]
            found = http.get(base + "/dicom-web/studies", params={"PatientID": "QATARGET"}, timeout=60).json()
            out["check"] = [s["0020000D"]["Value"][0] for s in found] == [study_of(folders[0])]
            started = time.perf_counter()
            merged = http.post(
                base + "/api/qa/merge-studies",
                json={"source": study_of(folders[1]), "target": study_of(folders[2]), "reason": "bench"},
                timeout=600,
            )
            out["merge_studies_s"] = time.perf_counter() - started
            merged.raise_for_status()
            (study,) = http.get(
                base + "/dicom-web/studies",
                params={"StudyInstanceUID": study_of(folders[2]), "includefield": "NumberOfStudyRelatedInstances"},
                timeout=60,
            ).json()
            out["check"] = out["check"] and study["00201208"]["Value"] == [len(list(folders[1].glob("*.dcm"))) + 1]
            return out
        finally:
            server.stop()


def orthanc_run(folders: list[Path]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        settle()
        web = start_orthanc_dicomweb(Path(tmp))
        base = web.base.removesuffix("/dicom-web")
        try:
            store(web.server, folders)
            settle()
            http = requests.Session()

            def lookup(uid: str) -> str:
                return str(http.post(base + "/tools/lookup", data=uid, timeout=60).json()[0]["ID"])

            out: dict[str, Any] = {"name": "Orthanc 1.10 (Debian)"}
            study = lookup(study_of(folders[1]))
            # Orthanc 1.10 refuses a study-level modify of PatientID ("the parent PatientID cannot
            # be manually modified"): an Orthanc administrator rewrites each instance, uploads
            # the rewritten copies and deletes the original study
            body = {"Replace": {"PatientID": "QAOTHER", "PatientName": "OTHER^OLGA"}, "Force": True,
                    "Keep": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]}  # fmt: skip
            started = time.perf_counter()
            for instance in http.get(f"{base}/studies/{study}/instances", timeout=600).json():
                modified = http.post(f"{base}/instances/{instance['ID']}/modify", json=body, timeout=600)
                modified.raise_for_status()
                http.delete(f"{base}/instances/{instance['ID']}", timeout=600).raise_for_status()
                http.post(f"{base}/instances", data=modified.content, timeout=600).raise_for_status()
            out["move_study_s"] = time.perf_counter() - started
            patient = http.get(f"{base}/studies/{lookup(study_of(folders[0]))}", timeout=60).json()["ParentPatient"]
            body = {"Replace": {"PatientID": "QATARGET", "PatientName": "TARGET^TOM"}, "Force": True,
                    "Synchronous": True}  # fmt: skip
            started = time.perf_counter()
            http.post(f"{base}/patients/{patient}/modify", json=body, timeout=3600).raise_for_status()
            out["merge_s"] = time.perf_counter() - started
            found = http.get(web.base + "/studies", params={"PatientID": "QATARGET"}, timeout=60).json()
            # Orthanc keeps the source (new UIDs for the copies): the target holds a copy of the study
            out["check"] = len(found) >= 1
            target = lookup(study_of(folders[2]))
            body = {"Resources": [lookup(study_of(folders[1]))], "KeepSource": False, "Synchronous": True}
            started = time.perf_counter()
            http.post(f"{base}/studies/{target}/merge", json=body, timeout=3600).raise_for_status()
            out["merge_studies_s"] = time.perf_counter() - started
            count = len(http.get(f"{base}/studies/{target}/instances", timeout=60).json())
            out["check"] = out["check"] and count == len(list(folders[1].glob("*.dcm"))) + 1
            return out
        finally:
            web.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 + 200 instances")
    args = parser.parse_args()
    count, moved = (500, 200) if args.quick else (5000, 2000)
    DATA.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    folders = corpus(count, moved)
    import psycopg

    name = f"openpacs_qa_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        runs = [
            openpacs_run(None, folders),
            openpacs_run(f"postgresql://postgres@127.0.0.1:5432/{name}", folders),
            orthanc_run(folders),
        ]
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    orthanc = runs[-1]
    lines = [
        "| measure | OpenPACS (SQLite) | OpenPACS (PostgreSQL) | Orthanc | ratio SQLite | ratio PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in ((f"move a {moved}-instance study to another patient (s)", "move_study_s"),
                       (f"merge a patient of {count} instances (s)", "merge_s"),
                       (f"merge a {moved}-instance study into another, new UIDs (s)", "merge_studies_s")):  # fmt: skip
        sqlite, pg = runs[0][key], runs[1][key]
        lines.append(
            f"| {label} | {sqlite:.3f} | {pg:.3f} | {orthanc[key]:.1f} | "
            f"{orthanc[key] / sqlite:.0f}x faster | {orthanc[key] / pg:.0f}x faster |"
        )
    results = {"count": count, "moved": moved, "runs": runs}
    path = RESULTS / f"qa-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    print("checks:", {r["name"]: r["check"] for r in runs})
    print(f"{path} written")


if __name__ == "__main__":
    main()
