"""The corrections journal: an append-only record per operation in the blob store
(``journal/YYYY/MM/DD/<id>.json``), written before the operation's transaction commits,
so that an index rebuilt from storage replays the corrections (ARCHITECTURE.md section 3).

A record is the operation as the API shows it (``Operation.to_json``) with, for each
patient key its edits name, the identifiers the patient held before the operation: keys
are the index's own, identifiers are what a rebuilt index finds the patient by again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from openpacs.domain.qa import Edit, EditKind, Operation
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import IndexSession

PREFIX = "journal/"


def key_of(operation: Operation, now: datetime) -> str:
    assert operation.id is not None
    return f"{PREFIX}{now:%Y/%m/%d}/{operation.id:012d}.json"


def patient_keys(edits: Iterable[Edit]) -> set[int]:
    """The patient keys an operation's edits name."""
    keys: set[int] = set()
    for edit in edits:
        if edit.target.get("level") == "PATIENT":
            keys.add(int(edit.target["pk"]))
        if edit.kind in (EditKind.STUDY_PATIENT, EditKind.MERGED_INTO):
            keys.update(int(v) for v in (edit.old, edit.new) if v is not None)
        if edit.kind is EditKind.CREATED and edit.target.get("level") == "STUDY":
            keys.update(int(side["patient_pk"]) for side in (edit.old, edit.new) if side is not None)
    return keys


def patients_of(session: IndexSession, edits: Iterable[Edit]) -> dict[str, list[dict[str, str]]]:
    """Patient key -> the identifiers the patient holds now (read before the edits apply)."""
    out = {}
    for pk in sorted(patient_keys(edits)):
        out[str(pk)] = [
            {
                "value": i.value,
                "issuer": i.issuer.namespace,
                "universal_id": i.issuer.universal_id,
                "universal_id_type": i.issuer.universal_id_type,
            }
            for i in session.identifiers(pk)
        ]
    return out


def write(blobs: BlobStore, operation: Operation, now: datetime, **extra: Any) -> str:
    """Write the operation's record (durable on return); returns its key."""
    record = orjson.dumps(
        {"journal": "openpacs-qa", "version": 1, **operation.to_json(), **extra}, option=orjson.OPT_SORT_KEYS
    )
    key = key_of(operation, now)
    if blobs.exists(key):
        # left by a transaction that wrote its entry and never committed (a crash in between):
        # the key of an operation is taken by the one that committed; the rebuild keeps the later
        key = key.removesuffix(".json") + f"-{uuid.uuid4().hex[:12]}.json"
    blobs.put(key, record)
    return key
