"""QueryService: C-FIND (and later QIDO-RS) answers from the index (PS3.4 C.4.1).

Answers are built from the attribute sets of the index (so they are coerced by
construction) and the computed keys; each answer carries exactly the keys of the
identifier, empty when the index has no value.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.matching import Model, Query, parse_query
from openpacs.domain.records import Actor
from openpacs.domain.tags import (
    COMPUTED_KEYWORDS,
    Level,
    json_key,
    keyword_of,
    level_of_tag,
    levels_down_to,
    tag_of,
    vr_of,
)
from openpacs.ports.index import AuditRecord, Index, MatchRow
from openpacs.services.commit import GroupCommitter

_QR_LEVEL = json_key(tag_of("QueryRetrieveLevel"))
_CHARSET = json_key(tag_of("SpecificCharacterSet"))
_RETRIEVE_AE = json_key(tag_of("RetrieveAETitle"))
_AVAILABILITY = json_key(tag_of("InstanceAvailability"))
_COMPUTED_BY_KEY = {json_key(tag_of(k)): k for k in COMPUTED_KEYWORDS}


class QueryService:
    """Answers queries; thread-safe."""

    def __init__(
        self,
        index: Index,
        committer: GroupCommitter,
        *,
        ae_title: str,
        fold_names: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._committer = committer
        self._ae_title = ae_title
        self._fold_names = fold_names
        self._clock = clock

    def parse(self, identifier: dict[str, Any], model: Model) -> Query:
        """Validate a query identifier (raises InvalidQuery)."""
        return parse_query(identifier, model)

    def find(
        self,
        query: Query,
        actor: Actor,
        *,
        limit: int | None = None,
        offset: int = 0,
        everything: bool = False,
    ) -> Generator[dict[str, Any], None, None]:
        """Answers (DICOM JSON) to a query, streamed; the query is audited when it ends.

        *everything* adds every attribute the index holds down to the query level
        (QIDO-RS ``includefield=all``).
        """
        count = 0
        outcome = "success"
        try:
            with self._index.session() as session:
                for row in session.find(query, fold_names=self._fold_names, limit=limit, offset=offset):
                    count += 1
                    yield self.answer(query, row, everything=everything)
        except GeneratorExit:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "failure"
            raise
        finally:
            self._audit(query, actor, count, outcome)

    def _audit(self, query: Query, actor: Actor, count: int, outcome: str) -> None:
        keys = {keyword_of(int(c.key, 16)): list(c.values) or [c.low, c.high] for c in query.conditions}
        record = AuditRecord(
            time=self._clock(),
            actor=actor,
            action="query",
            outcome=outcome,
            resources=[],
            details={"level": str(query.level), "keys": keys, "answers": count},
        )
        # a read changes nothing: its record joins the next transaction, the answer does not wait
        self._committer.submit_later(lambda _s, batch: batch.audit.append(record))

    def answer(self, query: Query, row: MatchRow, *, everything: bool = False) -> dict[str, Any]:
        """One answer: the identifier's keys filled from the row (all the row holds with *everything*)."""
        answer: dict[str, Any] = {_QR_LEVEL: {"vr": "CS", "Value": [str(query.level)]}}
        if everything:
            for level in levels_down_to(query.level):
                source = {
                    Level.PATIENT: row.patient,
                    Level.STUDY: row.study,
                    Level.SERIES: row.series,
                    Level.IMAGE: row.instance,
                }[level]
                for key, element in source.items():
                    answer.setdefault(key, _without_bulk(element))
            if query.level is Level.IMAGE:
                # the instance's own header first, then the index's sets over it (coercion)
                for key, element in row.instance.items():
                    answer[key] = _without_bulk(element)
                for source in (row.patient, row.study, row.series):
                    answer.update({k: _without_bulk(v) for k, v in source.items()})
        sources = {
            Level.PATIENT: row.patient,
            Level.STUDY: row.study,
            Level.SERIES: row.series,
            Level.IMAGE: row.instance,
        }
        for key in query.return_keys:
            if key in (_QR_LEVEL, _CHARSET):
                continue
            tag = int(key, 16)
            computed = _COMPUTED_BY_KEY.get(key)
            if computed is not None:
                answer[key] = _computed(computed, row)
                continue
            if key == _RETRIEVE_AE:
                answer[key] = {"vr": "AE", "Value": [self._ae_title]}
                continue
            if key == _AVAILABILITY:
                answer[key] = {"vr": "CS", "Value": ["ONLINE"]}
                continue
            level = level_of_tag(tag)
            element = sources[level].get(key) if level in sources else None
            if element is None and level is not Level.IMAGE and row.instance:
                element = row.instance.get(key)
            if element is None:
                vr = (query.identifier.get(key) or {}).get("vr") or vr_of(tag)
                answer[key] = {"vr": vr}
            else:
                answer[key] = _without_bulk(element)
        return answer


def _computed(keyword: str, row: MatchRow) -> dict[str, Any]:
    value = row.counts.get(keyword)
    if keyword == "ModalitiesInStudy":
        return {"vr": "CS", "Value": list(value or [])} if value else {"vr": "CS"}
    if keyword == "SOPClassesInStudy":
        return {"vr": "UI", "Value": list(value or [])} if value else {"vr": "UI"}
    return {"vr": "IS", "Value": [int(value)]} if value is not None else {"vr": "IS"}


def _without_bulk(element: dict[str, Any]) -> dict[str, Any]:
    if "BulkDataURI" in element:
        return {"vr": element.get("vr", "UN")}
    if element.get("vr") == "SQ":
        return {
            "vr": "SQ",
            "Value": [
                {k: _without_bulk(v) for k, v in item.items() if isinstance(v, dict)}
                for item in dj.values({"x": element}, "x")
                if isinstance(item, dict)
            ],
        }
    return element
