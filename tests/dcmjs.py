"""dcmjs-dimse (npm) as an independent DICOM client of the workflow tests: MPPS N-CREATE and
N-SET, storage commitment N-ACTION with the report on the same association or on a listener of
its own (``tests/tools/dimse_workflow_client.cjs``). ``scripts/setup.sh test`` installs the
package; a missing one fails the test, it is never skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

VERSION = "0.3.3"
SCRIPT = Path(__file__).resolve().parent / "tools" / "dimse_workflow_client.cjs"


def dcmjs_dir() -> Path:
    """Where setup installs dcmjs-dimse (outside the repository, never committed)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "openpacs" / f"dcmjs-dimse-{VERSION}"


def _run(*args: str, timeout: float = 60) -> dict[str, Any]:
    folder = dcmjs_dir()
    node = shutil.which("node")
    if node is None or not (folder / "node_modules" / "dcmjs-dimse" / "package.json").exists():
        raise AssertionError(f"node and dcmjs-dimse {VERSION} are needed in {folder}: run scripts/setup.sh test")
    done = subprocess.run(
        [node, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DCMJS_DIMSE_DIR": str(folder)},
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"dcmjs-dimse client printed no result ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _with_file(command: str, payload: Any, *args: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        path.write_text(json.dumps(payload))
        return _run(command, "127.0.0.1", *args, str(path), *extra)


def mpps_create(port: int, called: str, calling: str, uid: str, dataset: dict[str, Any]) -> dict[str, Any]:
    """N-CREATE on Modality Performed Procedure Step; {"status", "error_comment"}."""
    return _with_file("mpps-create", dataset, str(port), called, calling, uid)


def mpps_set(port: int, called: str, calling: str, uid: str, dataset: dict[str, Any]) -> dict[str, Any]:
    """N-SET on Modality Performed Procedure Step; {"status", "error_comment"}."""
    return _with_file("mpps-set", dataset, str(port), called, calling, uid)


def commit(
    port: int, called: str, calling: str, transaction_uid: str, refs: list[tuple[str, str]],
    listen_port: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """N-ACTION (storage commitment) and the N-EVENT-REPORT: {"action_status", "event_type",
    "association" ("same" or "separate"), "committed", "failed"}."""
    extra = (str(listen_port),) if listen_port else ()
    return _with_file("commit", [list(r) for r in refs], str(port), called, calling, transaction_uid, extra=extra)
