"""Migration from an old archive: the studies it walks, and what the verification found.

A migration is a job (kind ``migrate``): it lists the studies of the source (a node, by
C-FIND, or a folder tree), brings them over study by study, then counts each study there
and here. Every study is a :class:`MigrationItem`; its state says how far it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ItemState(StrEnum):
    PENDING = "pending"  # listed, not brought over yet
    TRANSFERRED = "transferred"  # brought over, not verified yet
    VERIFIED = "verified"  # the counts here match the counts there
    MISMATCH = "mismatch"  # the counts differ (detail lists what is missing)
    FAILED = "failed"  # the source refused or failed it (detail says why)


class Phase(StrEnum):
    """Where a migration job is: it lists, transfers, verifies, then is done."""

    LIST = "list"
    TRANSFER = "transfer"
    VERIFY = "verify"
    DONE = "done"


@dataclass
class MigrationItem:
    """One study of a migration."""

    study_instance_uid: str
    patient_id: str = ""
    study_date: str = ""
    state: ItemState = ItemState.PENDING
    there_series: int | None = None
    there_instances: int | None = None
    here_series: int | None = None
    here_instances: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    pk: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "study_date": self.study_date,
            "state": str(self.state),
            "there": {"series": self.there_series, "instances": self.there_instances},
            "here": {"series": self.here_series, "instances": self.here_instances},
            "detail": self.detail,
        }
