"""Peer archives the tests run beside OpenPACS: Debian's Orthanc, configured for one test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from conftest import free_port, require


@dataclass
class Orthanc:
    port: int
    http: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()

    def instances(self) -> list[str]:
        return list(httpx.get(f"http://127.0.0.1:{self.http}/instances", timeout=10).json())


def start_orthanc(workdir: Path, modalities: dict[str, list[Any]]) -> Orthanc:
    """Orthanc with Debian's configuration, its own storage, and *modalities* (name -> [AE, host, port])."""
    from archive_bench import orthanc_config

    binary = shutil.which("Orthanc")
    require(binary is not None, "Debian's Orthanc (apt-get install orthanc)")
    assert binary is not None
    workdir.mkdir(parents=True, exist_ok=True)
    port, http = free_port(), free_port()
    config = orthanc_config(workdir, port, http, modalities)
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [binary, str(workdir / "orthanc.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http}/system", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return Orthanc(port, http, process, log)
