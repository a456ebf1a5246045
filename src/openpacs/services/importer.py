"""ImportService: ``openpacs import`` of files and folders through the ingest service."""

from __future__ import annotations

import getpass
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openpacs.domain.errors import OpenPacsError
from openpacs.domain.part10 import encode_file_meta, has_file_meta, looks_like_dicom, parse_part10
from openpacs.domain.records import Actor, ActorType, Issuer, Origin, StoreStatus
from openpacs.services.ingest import IngestService
from openpacs.services.network import iter_files

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """What an import did."""

    imported: int = 0
    duplicates: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    conflicts: int = 0


class ImportService:
    """Imports files with several workers; thread-safe."""

    def __init__(self, ingest: IngestService, *, default_issuer: Issuer) -> None:
        self._ingest = ingest
        self._default_issuer = default_issuer

    def origin(self) -> Origin:
        """The CLI as origin (the OS user is the actor)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return Origin(
            actor=Actor(ActorType.CLI, user, "local"),
            transport="import",
            default_issuer=self._default_issuer,
        )

    def import_paths(
        self,
        paths: Iterable[Path],
        *,
        workers: int = 4,
        progress: Callable[[Path, str], None] | None = None,
    ) -> ImportSummary:
        """Import every file under *paths*; non-DICOM files are skipped and listed."""
        summary = ImportSummary()
        lock = threading.Lock()
        origin = self.origin()

        def one(path: Path) -> None:
            outcome = self._import_file(path, origin)
            with lock:
                if outcome in {"imported", "imported-conflict"}:
                    summary.imported += 1
                    summary.conflicts += outcome == "imported-conflict"
                elif outcome == "duplicate":
                    summary.duplicates += 1
                elif outcome.startswith("skipped:"):
                    summary.skipped.append(str(path))
                else:
                    summary.rejected[str(path)] = outcome.split(":", 1)[1]
            if progress is not None:
                progress(path, outcome)

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="import") as pool:
            for future in [pool.submit(one, p) for p in iter_files(paths)]:
                future.result()
        return summary

    def _import_file(self, path: Path, origin: Origin) -> str:
        return self.import_file(path, origin)[0]

    def import_file(self, path: Path, origin: Origin) -> tuple[str, str]:
        """Import one file: (outcome, Study Instance UID). The outcome is ``imported``,
        ``imported-conflict``, ``duplicate``, ``skipped:REASON`` or ``rejected:REASON``."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"rejected:{exc.strerror or exc}", ""
        if not looks_like_dicom(data):
            return "skipped:not DICOM", ""
        try:
            if not has_file_meta(data):
                parsed = parse_part10(data, bulk_threshold=1 << 30)
                meta = encode_file_meta(parsed.transfer_syntax_uid, parsed.sop_class_uid, parsed.sop_instance_uid, "")
                data = meta + data
            outcome = self._ingest.store(data, origin)
        except OpenPacsError as exc:
            return f"rejected:{exc.reason}", ""
        except Exception as exc:
            log.exception("importing %s failed", path)
            return f"rejected:{type(exc).__name__}: {exc}", ""
        if outcome.status in (StoreStatus.DUPLICATE, StoreStatus.DUPLICATE_DIFFERS):
            return "duplicate", outcome.study_instance_uid
        return ("imported-conflict" if outcome.identity_conflict else "imported"), outcome.study_instance_uid
