"""Forwarding: OpenPACS side by side with Debian's Orthanc 1.10, in one run.

    .venv/bin/python bench/routing_bench.py            # 2,000 CT instances (about 0.5 MB each)
    .venv/bin/python bench/routing_bench.py --quick    # 300

The same CT corpus is stored (storescu, one association) in a fresh OpenPACS (SQLite) and
a fresh Orthanc, then each forwards the study to DCMTK's storescp (``--ignore``: it
receives and discards):
- OpenPACS: ``POST /api/jobs/forward`` (a forwarding job: one association, instance order,
  the core's fast data path), timed until the job is done;
- Orthanc: ``POST /modalities/dest/store`` with ``Synchronous: true``.
Then, in-process, the cost of the queue's bookkeeping per instance: the change-feed
listener turning 2,000 stored instances into forwarding jobs (one per study), per instance.
Results go to bench/results/ as JSON and are printed as a Markdown table with ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
import requests

from archive_bench import ENV, RESULTS, WORK, corpus, settle, start_orthanc, store, storescp
from qa_bench import start_openpacs


def studies_of(folder: Path) -> list[str]:
    return sorted({str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in folder.glob("*.dcm")})


def openpacs_run(folder: Path, count: int) -> list[dict[str, Any]]:
    """Forward every study of the corpus, to a node taking 1 association, then 2 (the default)."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, storescp(Path(tmp) / "received") as dest_port:
        settle()
        server, base, headers = start_openpacs(Path(tmp), None)
        try:
            for name, slots in (("dest1", 1), ("dest2", 2)):
                subprocess.run(
                    [sys.executable, "-m", "openpacs", "node", "add", name, "--ae-title", name.upper(),
                     "--host", "127.0.0.1", "--port", str(dest_port), "--max-associations", str(slots),
                     "--data-dir", str(Path(tmp) / "data")],
                    check=True, capture_output=True, env=ENV,
                )  # fmt: skip
            store(server, [folder])
            settle()
            http = requests.Session()
            http.headers.update(headers)
            studies = studies_of(folder)  # read before the clock starts, as for Orthanc
            out = []
            for name, slots in (("dest1", 1), ("dest2", 2)):
                started = time.perf_counter()
                ids = []
                for study in studies:
                    job = http.post(base + "/api/jobs/forward", json={"study": study, "node": name}, timeout=60)
                    job.raise_for_status()
                    ids.append(job.json()["id"])
                shown: list[dict[str, Any]] = []
                while True:
                    shown = [http.get(f"{base}/api/jobs/{pk}", timeout=60).json() for pk in ids]
                    if all(j["state"] in ("done", "failed") for j in shown):
                        break
                    time.sleep(0.1)  # polling often would load the server under test
                elapsed = time.perf_counter() - started
                sent = sum(j["progress"]["sent"] for j in shown)
                out.append(
                    {
                        "name": f"OpenPACS (SQLite), {slots} association{'s' if slots > 1 else ''}",
                        "seconds": elapsed,
                        "rate": count / elapsed,
                        "check": sent == count and all(j["state"] == "done" for j in shown),
                    }
                )
                settle()
            return out
        finally:
            server.stop()


def orthanc_run(folder: Path, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, storescp(Path(tmp) / "received") as dest_port:
        settle()
        server = start_orthanc(Path(tmp), dest_port)
        base = f"http://127.0.0.1:{json.loads((Path(tmp) / 'orthanc.json').read_text())['HttpPort']}"
        try:
            store(server, [folder])
            settle()
            http = requests.Session()
            ids = [
                http.post(base + "/tools/lookup", data=uid, timeout=60).json()[0]["ID"] for uid in studies_of(folder)
            ]
            started = time.perf_counter()
            answer = http.post(
                base + "/modalities/dest/store", json={"Resources": ids, "Synchronous": True}, timeout=3600
            )
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            sent = int(answer.json().get("InstancesCount", count))
            return {
                "name": "Orthanc 1.10 (Debian)",
                "seconds": elapsed,
                "rate": count / elapsed,
                "check": sent == count,
            }
        finally:
            server.stop()


def bookkeeping(count: int) -> dict[str, Any]:
    """Microseconds per instance of the listener's work (rules matched, jobs queued per study)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from helpers import TEST_ORIGIN, application
    from openpacs.domain.records import Actor, ActorType, Node
    from openpacs.domain.rules import Action, ActionKind, Condition, Rule, RuleEvent

    actor = Actor(ActorType.SYSTEM, "bench")
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        app = application(Path(tmp), None)
        try:
            app.nodes.add(Node("dest", "DEST", "127.0.0.1", 1), actor)
            app.routing.add(
                Rule("ct", RuleEvent.INSTANCE, [Condition.parse("Modality=CT")], [Action(ActionKind.FORWARD, "dest")]),
                actor,
            )
            template = pydicom.dcmread(next(iter(sorted(corpus("small", 2000).glob("*.dcm")))))
            for n in range(count):
                template.SOPInstanceUID = f"1.2.826.0.1.3680043.10.995.{n}"
                template.StudyInstanceUID = f"1.2.826.0.1.3680043.10.995.9{n // 500}"
                template.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.995.9{n // 500}.1"
                template.Modality = "CT"
                buffer = io.BytesIO()
                template.save_as(buffer, enforce_file_format=True)
                app.ingest.store(buffer.getvalue(), TEST_ORIGIN)
            started = time.perf_counter()
            read = 0
            while True:
                got = app.routing.consume()
                if not got:
                    break
                read += got
            elapsed = time.perf_counter() - started
            jobs = app.jobs.jobs()
            return {"instances": count, "changes": read, "jobs": len(jobs), "us_per_instance": elapsed / count * 1e6}
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 instances")
    args = parser.parse_args()
    count = 300 if args.quick else 2000
    RESULTS.mkdir(parents=True, exist_ok=True)
    folder = corpus("ct", count)
    runs = [*openpacs_run(folder, count), orthanc_run(folder, count)]
    kept = bookkeeping(count)
    theirs = runs[-1]
    lines = [
        f"| forwarding {count} CT instances ({len(studies_of(folder))} studies) to storescp | instances/s | s | "
        "ratio to Orthanc |",
        "|---|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['name']} | {run['rate']:.0f} | {run['seconds']:.2f} | {run['rate'] / theirs['rate']:.2f}x |"
        )
    results = {"count": count, "runs": runs, "bookkeeping": kept}
    path = RESULTS / f"routing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    print(
        f"queue bookkeeping: {kept['us_per_instance']:.0f} us per instance "
        f"({kept['changes']} changes read, {kept['jobs']} jobs for {kept['instances']} instances)"
    )
    print("checks:", {r["name"]: r["check"] for r in runs})
    print(f"{path} written")


if __name__ == "__main__":
    main()
