"""Modality Worklist queries (PS3.4 K.6.1, Modality Worklist Information Model - FIND).

A worklist C-FIND identifier names the keys to match and the keys to return; the Scheduled
Procedure Step attributes sit inside the Scheduled Procedure Step Sequence (0040,0100), so
most of its matching is sequence matching (PS3.4 C.2.2.2.6). Matching follows PS3.4
C.2.2.2 (the same rules as the Query/Retrieve models, :mod:`openpacs.domain.matching`),
plus the combined date and time range matching of PS3.4 C.2.2.2.5.1 for the Scheduled
Procedure Step Start Date and Time.

The answer carries every key of the identifier, with the item's value or empty (PS3.4
K.6.1.2.2 / C.2.2.1.2); a sequence key with an empty item returns the whole sequence, one
with keys in its item returns each stored item reduced to those keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import InvalidQuery
from openpacs.domain.matching import Condition, MatchType, comparable, condition_from_json, matches

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

SPS_SEQUENCE = "00400100"
STATION_AE_TITLE = "00400001"
START_DATE = "00400002"
START_TIME = "00400003"
MODALITY = "00080060"
PATIENT_ID = "00100020"
SPS_STATUS = "00400020"
_CHARSET = "00080005"
_NOT_MATCHED = frozenset({_CHARSET, "00080052"})  # character set; a Query/Retrieve Level sent by mistake


@dataclass(frozen=True)
class Prefilter:
    """What the index can select by column before the full match (all optional)."""

    patient_ids: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    station_ae_titles: tuple[str, ...] = ()
    date_low: str = ""
    date_high: str = ""


@dataclass(frozen=True)
class WorklistQuery:
    """A parsed worklist identifier."""

    identifier: dict[str, Any]
    conditions: tuple[Condition, ...]
    prefilter: Prefilter

    def matches(self, item: dict[str, Any]) -> bool:
        """Whether a worklist item (DICOM JSON) satisfies every condition."""
        for cond in self.conditions:
            if cond.kind is MatchType.SEQUENCE and cond.key == SPS_SEQUENCE:
                stored = [i for i in (item.get(SPS_SEQUENCE, {}).get("Value") or []) if isinstance(i, dict)]
                if not any(_step_matches(cond.items, step) for step in stored):
                    return False
            elif not matches(cond, item.get(cond.key)):
                return False
        return True

    def answer(self, item: dict[str, Any]) -> dict[str, Any]:
        """The answer for a matching item: the identifier's keys with the item's values."""
        return _project(self.identifier, item)


def _step_matches(conditions: tuple[Condition, ...], step: dict[str, Any]) -> bool:
    date = next((c for c in conditions if c.key == START_DATE), None)
    time = next((c for c in conditions if c.key == START_TIME), None)
    combined = (
        date is not None
        and time is not None
        and date.kind is MatchType.RANGE
        and time.kind is MatchType.RANGE
        and date.low != date.high
    )
    for cond in conditions:
        if combined and cond.key in (START_DATE, START_TIME):
            continue
        if not matches(cond, step.get(cond.key)):
            return False
    if combined and date is not None and time is not None:
        return _datetime_in(date, time, dj.text(step, START_DATE), dj.text(step, START_TIME))
    return True


def _datetime_in(date: Condition, time: Condition, stored_date: str, stored_time: str) -> bool:
    """Combined date and time range matching (PS3.4 C.2.2.2.5.1): the bounds are the date
    bound joined with the time bound, so '20261128-20261129' with '0800-1000' runs from the
    28th at 08:00 to the 29th at 10:00."""
    if not stored_date:
        return False
    stored = comparable("DA", stored_date) + comparable("TM", stored_time or "000000")
    low = date.low + (time.low or "000000.000000") if date.low else ""
    high = date.high + (time.high or "235959.999999") if date.high else ""
    if low and stored < low:
        return False
    return not (high and stored > high)


def _project(request: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in request.items():
        if key == _CHARSET or key.startswith("0000"):
            continue
        stored = item.get(key)
        vr = str((element or {}).get("vr", "UN"))
        if vr == "SQ":
            wanted = [i for i in ((element or {}).get("Value") or []) if isinstance(i, dict)]
            stored_items = [i for i in ((stored or {}).get("Value") or []) if isinstance(i, dict)]
            if not wanted or not wanted[0]:
                out[key] = {"vr": "SQ", "Value": stored_items}
            else:
                out[key] = {"vr": "SQ", "Value": [_project(wanted[0], i) for i in stored_items]}
            continue
        if stored is not None and stored.get("Value"):
            out[key] = {"vr": stored.get("vr", vr), "Value": stored["Value"]}
        else:
            out[key] = {"vr": stored.get("vr", vr) if stored else vr}
    return out


def parse_worklist_query(identifier: dict[str, Any]) -> WorklistQuery:
    """Build a WorklistQuery from a C-FIND identifier (DICOM JSON); raises InvalidQuery
    (A900) for a malformed matching key."""
    conditions = []
    for key, element in identifier.items():
        if key in _NOT_MATCHED or key.startswith("0000") or len(key) != 8:
            continue
        if not isinstance(element, dict):
            raise InvalidQuery(f"({key[:4]},{key[4:]}) is not a data element")
        cond = condition_from_json(key, element)
        if cond is not None:
            conditions.append(cond)
    return WorklistQuery(identifier, tuple(conditions), _prefilter(conditions))


def _single(cond: Condition | None) -> tuple[str, ...]:
    if cond is None or cond.kind is not MatchType.SINGLE:
        return ()
    return tuple(v for v in cond.values if "\\" not in v)


def _prefilter(conditions: list[Condition]) -> Prefilter:
    top = {c.key: c for c in conditions}
    sps = top.get(SPS_SEQUENCE)
    step = {c.key: c for c in sps.items} if sps is not None else {}
    date = step.get(START_DATE)
    low = high = ""
    if date is not None and date.kind is MatchType.RANGE:
        low, high = date.low, date.high
    return Prefilter(
        patient_ids=_single(top.get(PATIENT_ID)),
        modalities=tuple(v.upper() for v in _single(step.get(MODALITY))),
        station_ae_titles=_single(step.get(STATION_AE_TITLE)),
        date_low=low,
        date_high=high,
    )
