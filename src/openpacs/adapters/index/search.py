"""Queries on the index: matching conditions translated to SQL, the rest left to the domain.

Conditions on indexed columns become SQL (PS3.4 C.2.2.2 semantics: IN for single
values and UID lists, LIKE for wild cards, comparisons for ranges); all other
conditions are evaluated on the attribute sets with :func:`openpacs.domain.matching.matches`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC
from itertools import islice
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import columns as cols
from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import FastStatements, json_value
from openpacs.domain.matching import Condition, MatchType, Query, matches
from openpacs.domain.names import fold
from openpacs.domain.records import BlobRef, StoredInstance
from openpacs.domain.tags import Level, json_key, level_of_tag, tag_of
from openpacs.ports.index import MatchRow, iter_chunks

_MODALITIES_IN_STUDY = json_key(tag_of("ModalitiesInStudy"))
_SOP_CLASSES_IN_STUDY = json_key(tag_of("SOPClassesInStudy"))
_SOP_INSTANCE_UID = json_key(tag_of("SOPInstanceUID"))
_SOP_CLASS_UID = json_key(tag_of("SOPClassUID"))
_INSTANCE_NUMBER = json_key(tag_of("InstanceNumber"))

# (table, column, kind): kind 'text', 'pn', 'int', 'time' (comparable time), 'date'
_COLUMNS: dict[str, tuple[sa.Table, str, str]] = {
    cols.PATIENT_ID: (t.patient, "patient_id", "text"),
    cols.PATIENT_NAME: (t.patient, "patient_name", "pn"),
    cols.BIRTH_DATE: (t.patient, "patient_birth_date", "date"),
    cols.SEX: (t.patient, "patient_sex", "text"),
    cols.STUDY_UID: (t.study, "study_instance_uid", "text"),
    cols.STUDY_DATE: (t.study, "study_date", "date"),
    cols.STUDY_TIME: (t.study, "study_time", "time"),
    cols.ACCESSION: (t.study, "accession_number", "text"),
    cols.STUDY_ID: (t.study, "study_id", "text"),
    cols.STUDY_DESCRIPTION: (t.study, "study_description", "text"),
    cols.REFERRING: (t.study, "referring_physician_name", "pn"),
    cols.SERIES_UID: (t.series, "series_instance_uid", "text"),
    cols.MODALITY: (t.series, "modality", "text"),
    cols.SERIES_NUMBER: (t.series, "series_number", "int"),
    cols.SERIES_DESCRIPTION: (t.series, "series_description", "text"),
    cols.BODY_PART: (t.series, "body_part_examined", "text"),
    cols.SERIES_DATE: (t.series, "series_date", "date"),
    cols.SERIES_TIME: (t.series, "series_time", "time"),
    _SOP_INSTANCE_UID: (t.instance, "sop_instance_uid", "text"),
    _SOP_CLASS_UID: (t.instance, "sop_class_uid", "text"),
    _INSTANCE_NUMBER: (t.instance, "instance_number", "int"),
}

_TABLE_OF_LEVEL = {
    Level.PATIENT: t.patient,
    Level.STUDY: t.study,
    Level.SERIES: t.series,
    Level.IMAGE: t.instance,
}


def _like_pattern(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


class _Params:
    """Bind parameters of one query, named after the condition they come from."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> sa.BindParameter[Any]:
        name = f"{self.prefix}_{len(self.values)}"
        self.values[name] = value
        return sa.bindparam(name)


def _sql_condition(cond: Condition, fold_names: bool, bind: _Params) -> sa.ColumnElement[bool] | None:
    """SQL for a condition on an indexed column, or None when the domain must evaluate it.

    Values become bind parameters, so that the statement of a query depends only on its
    shape and can be built once (see :func:`_statement`).
    """
    if cond.key == _MODALITIES_IN_STUDY and cond.kind is MatchType.SINGLE:
        return sa.exists(
            sa.select(1)
            .select_from(t.series)
            .where(t.series.c.study_pk == t.study.c.pk, t.series.c.modality.in_([bind(v) for v in cond.values]))
        )
    spec = _COLUMNS.get(cond.key)
    if spec is None or cond.kind is MatchType.SEQUENCE:
        return None
    table, name, kind = spec
    column = table.c[name]
    values = list(cond.values)
    if kind == "pn":
        if not fold_names:
            return None  # case-sensitive name matching is left to the domain
        column = table.c[name + "_match"]
        values = [fold(v.split("=", 1)[0].rstrip("^ ")) for v in values]
    if cond.kind is MatchType.RANGE:
        if kind not in ("date", "time"):
            return None
        clauses: list[sa.ColumnElement[bool]] = [column != ""]
        if cond.low:
            clauses.append(column >= bind(cond.low))
        if cond.high:
            clauses.append(column <= bind(cond.high))
        return sa.and_(*clauses)
    if cond.kind is MatchType.WILDCARD:
        if kind in ("int", "date", "time"):
            return None
        return sa.or_(*(column.like(bind(_like_pattern(v)), escape="\\") for v in values))
    if kind == "int":
        try:
            return column.in_([bind(int(float(v))) for v in values])
        except ValueError:
            return sa.false()
    if kind in ("date", "time"):
        return None
    return column.in_([bind(v) for v in values])


_STATEMENTS: dict[tuple[Any, ...], tuple[sa.Select[Any], tuple[int, ...]]] = {}


def _statement(query: Query, fold_names: bool, limited: bool) -> tuple[sa.Select[Any], dict[str, Any], list[Condition]]:
    """The SELECT of a query (cached by the query's shape), its parameters, and what SQL leaves."""
    shape = (
        query.level,
        fold_names,
        limited,
        tuple((c.key, c.kind, len(c.values), bool(c.low), bool(c.high)) for c in query.conditions),
    )
    params: dict[str, Any] = {}
    cached = _STATEMENTS.get(shape)
    clauses: list[sa.ColumnElement[bool] | None] = []
    for n, cond in enumerate(query.conditions):
        bind = _Params(f"p{n}")
        clauses.append(_sql_condition(cond, fold_names, bind))
        params.update(bind.values)
    in_sql = tuple(n for n, clause in enumerate(clauses) if clause is not None)
    remaining = [c for n, c in enumerate(query.conditions) if n not in in_sql]
    if cached is None:
        select = _base_select(query.level)
        for clause in clauses:
            if clause is not None:
                select = select.where(clause)
        if limited and not remaining:
            select = select.limit(sa.bindparam("q_limit")).offset(sa.bindparam("q_offset"))
        if len(_STATEMENTS) < 2000:
            _STATEMENTS[shape] = (select, in_sql)
        return select, params, remaining
    return cached[0], params, remaining


def _base_select(level: Level) -> sa.Select[Any]:
    p, s, se, i = t.patient, t.study, t.series, t.instance
    columns: list[Any] = [p.c.pk.label("patient_pk"), p.c.attrs.label("patient_attrs")]
    columns += [
        p.c.num_studies,
        p.c.num_series.label("p_num_series"),
        p.c.num_instances.label("p_num_instances"),
    ]
    from_: Any = p
    if level in (Level.STUDY, Level.SERIES, Level.IMAGE):
        columns += [
            s.c.pk.label("study_pk"),
            s.c.attrs.label("study_attrs"),
            s.c.num_series.label("s_num_series"),
            s.c.num_instances.label("s_num_instances"),
            s.c.modalities_in_study,
            s.c.sop_classes_in_study,
        ]
        from_ = s.join(p, p.c.pk == s.c.patient_pk)
    if level in (Level.SERIES, Level.IMAGE):
        columns += [
            se.c.pk.label("series_pk"),
            se.c.attrs.label("series_attrs"),
            se.c.num_instances.label("se_num_instances"),
        ]
        from_ = se.join(s, s.c.pk == se.c.study_pk).join(p, p.c.pk == s.c.patient_pk)
    if level is Level.IMAGE:
        columns += [i.c.pk.label("instance_pk"), i.c.header, i.c.attrs.label("instance_attrs")]
        from_ = i.join(se, se.c.pk == i.c.series_pk).join(s, s.c.pk == se.c.study_pk).join(p, p.c.pk == s.c.patient_pk)
    select = sa.select(*columns).select_from(from_).where(p.c.merged_into_pk.is_(None))
    # rejected and soft-deleted instances are not shown, nor what holds nothing else
    # (the aggregates count visible instances only)
    select = select.where(
        {
            Level.PATIENT: p.c.num_instances > 0,
            Level.STUDY: s.c.num_instances > 0,
            Level.SERIES: se.c.num_instances > 0,
            Level.IMAGE: i.c.rejection.is_(None),
        }[level]
    )
    return select.order_by(_TABLE_OF_LEVEL[level].c.pk)


def _row(level: Level, r: Any) -> MatchRow:
    row = MatchRow(patient=json_value(r.patient_attrs))
    row.counts = {
        "NumberOfPatientRelatedStudies": r.num_studies,
        "NumberOfPatientRelatedSeries": r.p_num_series,
        "NumberOfPatientRelatedInstances": r.p_num_instances,
    }
    if level in (Level.STUDY, Level.SERIES, Level.IMAGE):
        row.study = json_value(r.study_attrs)
        row.counts.update(
            {
                "NumberOfStudyRelatedSeries": r.s_num_series,
                "NumberOfStudyRelatedInstances": r.s_num_instances,
                "ModalitiesInStudy": [m for m in r.modalities_in_study.split("\\") if m],
                "SOPClassesInStudy": [c for c in r.sop_classes_in_study.split("\\") if c],
            }
        )
    if level in (Level.SERIES, Level.IMAGE):
        row.series = json_value(r.series_attrs)
        row.counts["NumberOfSeriesRelatedInstances"] = r.se_num_instances
    if level is Level.IMAGE:
        row.instance = json_value(r.header)
        own = json_value(r.instance_attrs) if r.instance_attrs else None
        if own:
            # the instance's own set (a new SOP Instance UID after a reallocation) over its header
            row.instance = {**row.instance, **own}
    return row


def _element_for(row: MatchRow, key: str) -> dict[str, Any] | None:
    if key in (_MODALITIES_IN_STUDY, _SOP_CLASSES_IN_STUDY):
        name = "ModalitiesInStudy" if key == _MODALITIES_IN_STUDY else "SOPClassesInStudy"
        return {
            "vr": "CS" if name == "ModalitiesInStudy" else "UI",
            "Value": row.counts.get(name, []),
        }
    level = level_of_tag(int(key, 16))
    source = {
        Level.PATIENT: row.patient,
        Level.STUDY: row.study,
        Level.SERIES: row.series,
        Level.IMAGE: row.instance,
    }[level]
    element = source.get(key)
    if element is None and level is not Level.IMAGE and row.instance:
        element = row.instance.get(key)
    return element if isinstance(element, dict) else None


def find_rows(
    connection: Connection, fast: FastStatements, query: Query, *, fold_names: bool, limit: int | None, offset: int
) -> Iterator[MatchRow]:
    """Rows matching *query*, at its level."""
    limited = limit is not None or offset > 0
    select, params, remaining = _statement(query, fold_names, limited)
    if limited and not remaining:
        params["q_limit"] = limit if limit is not None else 2**62
        params["q_offset"] = offset
    rows = (_row(query.level, r) for r in fast.execute(connection, select, params))
    if not remaining:
        yield from rows
        return
    filtered = (
        row for row in rows if all(matches(c, _element_for(row, c.key), fold_names=fold_names) for c in remaining)
    )
    stop = None if limit is None else offset + limit
    yield from islice(filtered, offset, stop)


def load_stored_instances(
    connection: Connection,
    level: Level,
    uids: Sequence[str],
    *,
    hidden: bool = False,
    pk_range: tuple[int, int, Sequence[int]] | None = None,
) -> list[StoredInstance]:
    """Every visible instance under the given studies, series or instances, in study/series/instance
    order; with *hidden*, the rejected and soft-deleted ones too (what administrators see)."""
    p, s, se, i, loc = t.patient, t.study, t.series, t.instance, t.location
    column = {
        Level.STUDY: s.c.study_instance_uid,
        Level.SERIES: se.c.series_instance_uid,
        Level.IMAGE: i.c.sop_instance_uid,
    }.get(level)
    if column is None:
        column = p.c.patient_id
    found: list[StoredInstance] = []
    # the instances of a series share their attribute sets: each distinct text is parsed once
    sets: dict[str, dict[str, Any]] = {}

    def parsed(text: str) -> dict[str, Any]:
        value = sets.get(text)
        if value is None:
            value = sets[text] = orjson.loads(text)
        return value

    for chunk in iter_chunks(list(uids)):
        select = (
            sa.select(
                i.c.pk,
                i.c.sop_instance_uid,
                i.c.sop_class_uid,
                i.c.instance_number,
                i.c.source_ae_title,
                i.c.called_ae_title,
                i.c.rejection,
                sa.cast(i.c.header, sa.Text).label("header"),
                i.c.level_values,
                sa.cast(i.c.attrs, sa.Text).label("instance_attrs"),
                i.c.received_at,
                se.c.series_instance_uid,
                sa.cast(se.c.attrs, sa.Text).label("series_attrs"),
                s.c.study_instance_uid,
                sa.cast(s.c.attrs, sa.Text).label("study_attrs"),
                sa.cast(p.c.attrs, sa.Text).label("patient_attrs"),
                loc.c.store,
                loc.c.key,
                loc.c.size,
                loc.c.checksum,
                loc.c.transfer_syntax_uid,
            )
            .select_from(
                i.join(loc, loc.c.instance_pk == i.c.pk)
                .join(se, se.c.pk == i.c.series_pk)
                .join(s, s.c.pk == se.c.study_pk)
                .join(p, p.c.pk == s.c.patient_pk)
            )
            .where(column.in_(list(chunk)))
            .where(sa.true() if hidden else i.c.rejection.is_(None))
            .where(
                sa.true()
                if pk_range is None
                else ((i.c.pk > pk_range[0]) & (i.c.pk <= pk_range[1])) | i.c.pk.in_(list(pk_range[2]))
            )
            .order_by(s.c.pk, se.c.series_number, se.c.pk, i.c.instance_number, i.c.pk)
        )
        for r in connection.execute(select):
            found.append(
                StoredInstance(
                    sop_instance_uid=r.sop_instance_uid,
                    sop_class_uid=r.sop_class_uid,
                    series_instance_uid=r.series_instance_uid,
                    study_instance_uid=r.study_instance_uid,
                    transfer_syntax_uid=r.transfer_syntax_uid,
                    blob=BlobRef(r.store, r.key, r.size),
                    checksum=r.checksum,
                    header_text=r.header,
                    level_values=r.level_values,
                    patient_attrs=parsed(r.patient_attrs),
                    study_attrs=parsed(r.study_attrs),
                    series_attrs=parsed(r.series_attrs),
                    instance_attrs=orjson.loads(r.instance_attrs) or {} if r.instance_attrs else {},
                    instance_number=r.instance_number,
                    pk=int(r.pk),
                    source_ae_title=r.source_ae_title,
                    called_ae_title=r.called_ae_title,
                    hidden=r.rejection,
                    received_at=r.received_at
                    if r.received_at is None or r.received_at.tzinfo
                    else r.received_at.replace(tzinfo=UTC),
                )
            )
    return found
