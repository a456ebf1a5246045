"""Reading worklists for radiologists: what a list shows, how it is filtered and sorted.

A reading list is a view of studies with the status of their requested procedures (a study
without a procedure, unscheduled or from before the orders, counts as completed). Filters:
modality (of the study), body part (of a series), priority (of the order, STAT first),
procedure status, ordering department, age (minutes since the status was reached), a named
reading worklist a workflow rule assigned the study to, and claims (unclaimed, or mine). A
study is unread while its procedures are in progress or completed (no report yet). A claim
gives a study to one reader at a time; others see who holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from openpacs.domain.errors import InvalidQuery
from openpacs.domain.orders import PRIORITY_RANK, PROCEDURE_STATUSES

UNREAD = ("in-progress", "completed")
#: What a reading list shows by default: waiting to be read, and read but not final
DEFAULT_STATUSES = ("in-progress", "completed", "preliminary")
_CODE = re.compile(r"^[A-Za-z0-9 _.^-]{1,64}$")
_NAME = re.compile(r"^[\w .-]{1,64}$")


@dataclass(frozen=True)
class ReadingCriteria:
    """A reading list filter (saved under a name, or given per request)."""

    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    departments: tuple[str, ...] = ()
    worklist: str = ""  # assigned to this reading worklist (workflow rule ``assign``)
    min_age_minutes: int | None = None  # in its status for at least this long
    max_age_minutes: int | None = None
    unclaimed: bool = False
    mine: bool = False  # claimed by the caller

    def __post_init__(self) -> None:
        for name in ("modalities", "body_parts", "priorities", "departments"):
            values = getattr(self, name)
            if len(values) > 50 or not all(isinstance(v, str) and _CODE.match(v) for v in values):
                raise InvalidQuery(f"{name}: up to 50 values of letters, digits, ' ', '.', '_', '^' or '-'")
        unknown = [p for p in self.priorities if p not in PRIORITY_RANK or not p]
        if unknown:
            raise InvalidQuery(f"unknown priority {unknown[0]!r}: STAT, HIGH, MEDIUM, ROUTINE or LOW")
        wrong = [s for s in self.statuses if s not in PROCEDURE_STATUSES]
        if wrong or not self.statuses:
            raise InvalidQuery(f"statuses: one or more of {', '.join(PROCEDURE_STATUSES)}")
        if self.worklist and not _NAME.match(self.worklist):
            raise InvalidQuery("worklist: a reading worklist name (1 to 64 letters, digits, ' ', '.', '_', '-')")
        for name in ("min_age_minutes", "max_age_minutes"):
            value = getattr(self, name)
            if value is not None and not (0 <= value <= 10_000_000):
                raise InvalidQuery(f"{name} is a number of minutes (0 to 10,000,000)")
        if self.unclaimed and self.mine:
            raise InvalidQuery("unclaimed and mine exclude each other")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReadingCriteria:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidQuery(f"unknown filter {unknown[0]!r}: one of {', '.join(sorted(known))}")
        values = {key: _parse(key, raw) for key, raw in data.items()}
        return cls(**values)


def _parse(key: str, raw: Any) -> Any:
    """One filter value from JSON or a query string."""
    if key in ("modalities", "body_parts", "priorities", "statuses", "departments"):
        listed = [v.strip() for v in raw.split(",") if v.strip()] if isinstance(raw, str) else raw
        if not isinstance(listed, list):
            raise InvalidQuery(f"{key} is a list (or comma-separated text)")
        upper = key in ("modalities", "body_parts", "priorities")
        return tuple(str(v).upper() if upper else str(v) for v in listed)
    if key in ("min_age_minutes", "max_age_minutes"):
        try:
            return None if raw in (None, "") else int(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidQuery(f"{key} is a number of minutes") from exc
    if key in ("unclaimed", "mine"):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    return str(raw)


@dataclass
class ReadingItem:
    """One study of a reading list."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_description: str
    modalities: str
    status: str
    status_at: datetime | None
    priority: str
    department: str
    procedure_pk: int | None
    claimed_by: str = ""
    claimed_at: datetime | None = None
    body_parts: list[str] = field(default_factory=list)
    worklists: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "accession_number": self.accession_number,
            "study_description": self.study_description,
            "modalities": [m for m in self.modalities.split("\\") if m],
            "body_parts": self.body_parts,
            "status": self.status,
            "status_at": self.status_at.isoformat() if self.status_at else None,
            "priority": self.priority,
            "department": self.department,
            "procedure": self.procedure_pk,
            "claimed_by": self.claimed_by or None,
            "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None,
            "reading_worklists": self.worklists,
        }


@dataclass(frozen=True)
class SavedFilter:
    """A reading list filter saved under a name, for its owner or shared ("" owner)."""

    name: str
    owner: str
    criteria: ReadingCriteria
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shared": not self.owner,
            "owner": self.owner or None,
            "criteria": self.criteria.to_json(),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def check_filter_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidQuery("a filter name has 1 to 64 letters, digits, ' ', '.', '_' or '-'")
    return name
