"""Index statements of the corrections (issue 4): study-to-patient links, merge links,
identifiers, and the operations journal (``qa_operation``, ``qa_operation_object``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import json_value
from openpacs.adapters.index.removal import recount_patient, recount_visible
from openpacs.domain.qa import Edit, Operation, OperationKind
from openpacs.domain.records import Actor, ActorType, PatientIdentifier
from openpacs.domain.tags import Level
from openpacs.ports.index import InstanceState


def set_study_patient(connection: Connection, study_pk: int, patient_pk: int, now: datetime) -> None:
    st = t.study
    old = connection.execute(sa.select(st.c.patient_pk).where(st.c.pk == study_pk)).scalar_one()
    connection.execute(sa.update(st).where(st.c.pk == study_pk).values(patient_pk=patient_pk, updated_at=now))
    for pk in {old, patient_pk}:
        recount_patient(connection, pk)


def set_merged_into(connection: Connection, patient_pk: int, target_pk: int | None, now: datetime) -> None:
    p = t.patient
    connection.execute(sa.update(p).where(p.c.pk == patient_pk).values(merged_into_pk=target_pk, updated_at=now))


def replace_identifier(
    connection: Connection,
    patient_pk: int,
    old: PatientIdentifier | None,
    new: PatientIdentifier | None,
    now: datetime,
) -> None:
    pi = t.patient_identifier
    if old is not None:
        connection.execute(
            sa.delete(pi).where(
                pi.c.patient_pk == patient_pk,
                pi.c.value == old.value,
                pi.c.issuer_namespace == old.issuer.namespace,
                pi.c.issuer_universal_id == old.issuer.universal_id,
                pi.c.issuer_universal_id_type == old.issuer.universal_id_type,
            )
        )
    if new is not None:
        connection.execute(
            sa.insert(pi).values(
                patient_pk=patient_pk,
                value=new.value[:64],
                issuer_namespace=new.issuer.namespace[:64],
                issuer_universal_id=new.issuer.universal_id[:64],
                issuer_universal_id_type=new.issuer.universal_id_type[:16],
                type_code=new.type_code[:16],
                created_at=now,
            )
        )


def study_uids_of(connection: Connection, patient_pk: int) -> list[str]:
    st = t.study
    rows = connection.execute(sa.select(st.c.study_instance_uid).where(st.c.patient_pk == patient_pk).order_by(st.c.pk))
    return [r[0] for r in rows]


def counts_of(connection: Connection, level: str, pk: int) -> dict[str, int]:
    """Studies, series and instances under a patient, study or series (for previews)."""
    if level == "PATIENT":
        row = connection.execute(
            sa.select(t.patient.c.num_studies, t.patient.c.num_series, t.patient.c.num_instances).where(
                t.patient.c.pk == pk
            )
        ).one()
        return {"studies": row[0], "series": row[1], "instances": row[2]}
    if level == "STUDY":
        series, instances = connection.execute(
            sa.select(t.study.c.num_series, t.study.c.num_instances).where(t.study.c.pk == pk)
        ).one()
        return {"studies": 1, "series": series, "instances": instances}
    count = connection.execute(sa.select(t.series.c.num_instances).where(t.series.c.pk == pk)).scalar_one()
    return {"series": 1, "instances": count}


def add_operation(connection: Connection, operation: Operation, actor: Actor, now: datetime) -> int:
    o = t.qa_operation
    # an operation replayed from the journal (index rebuild) keeps its key
    explicit = {} if operation.id is None else {"pk": operation.id}
    pk = connection.execute(
        sa.insert(o)
        .values(
            **explicit,
            kind=str(operation.kind),
            source=operation.source,
            actor_type=str(actor.type),
            actor_id=actor.id[:200],
            actor_address=actor.address[:100],
            reason=operation.reason,
            params=operation.params,
            edits=[e.to_json() for e in operation.edits],
            summary=operation.summary,
            undo_of_pk=operation.undo_of,
            created_at=now,
        )
        .returning(o.c.pk)
    ).scalar_one()
    objects = operation.objects()
    if objects:
        connection.execute(
            sa.insert(t.qa_operation_object), [{"operation_pk": pk, "object_key": key[:200]} for key in objects]
        )
    if operation.undo_of is not None:
        connection.execute(sa.update(o).where(o.c.pk == operation.undo_of).values(undone_by_pk=pk))
    return int(pk)


def _operation(row: Any) -> Operation:
    created = row.created_at
    return Operation(
        kind=OperationKind(row.kind),
        reason=row.reason,
        params=json_value(row.params),
        edits=[Edit.from_json(e) for e in json_value(row.edits)],
        summary=json_value(row.summary),
        id=int(row.pk),
        undo_of=row.undo_of_pk,
        source=row.source,
        actor=Actor(ActorType(row.actor_type), row.actor_id, row.actor_address),
        created_at=created if created is None or created.tzinfo else created.replace(tzinfo=UTC),
        undone_by=row.undone_by_pk,
    )


def operation(connection: Connection, pk: int) -> Operation | None:
    row = connection.execute(sa.select(t.qa_operation).where(t.qa_operation.c.pk == pk)).first()
    return None if row is None else _operation(row)


def operations(connection: Connection, limit: int, before_pk: int | None) -> list[Operation]:
    o = t.qa_operation
    select = sa.select(o).order_by(o.c.pk.desc()).limit(limit)
    if before_pk is not None:
        select = select.where(o.c.pk < before_pk)
    return [_operation(r) for r in connection.execute(select)]


def later_operations(connection: Connection, objects: Sequence[str], after_pk: int) -> list[int]:
    """Operations after *after_pk*, not undone, touching any of *objects*."""
    if not objects:
        return []
    o, ob = t.qa_operation, t.qa_operation_object
    rows = connection.execute(
        sa.select(o.c.pk)
        .distinct()
        .select_from(o.join(ob, ob.c.operation_pk == o.c.pk))
        .where(ob.c.object_key.in_([k[:200] for k in objects]), o.c.pk > after_pk, o.c.undone_by_pk.is_(None))
        # an undo of a later operation cancels that operation out: neither holds the objects
        .where(o.c.undo_of_pk.is_(None) | (o.c.undo_of_pk < after_pk))
        .order_by(o.c.pk)
    )
    return [int(r[0]) for r in rows]


def instance_states(connection: Connection, level: Level, uid: str) -> list[InstanceState]:
    i, se, st = t.instance, t.series, t.study
    column = {
        Level.STUDY: st.c.study_instance_uid,
        Level.SERIES: se.c.series_instance_uid,
        Level.IMAGE: i.c.sop_instance_uid,
    }[level]
    rows = connection.execute(
        sa.select(
            i.c.sop_instance_uid, i.c.sop_class_uid, se.c.series_instance_uid, st.c.study_instance_uid, i.c.rejection
        )
        .select_from(i.join(se, se.c.pk == i.c.series_pk).join(st, st.c.pk == se.c.study_pk))
        .where(column == uid)
        .order_by(se.c.pk, i.c.instance_number, i.c.pk)
    )
    return [InstanceState(*row) for row in rows]


def set_hidden(connection: Connection, sop_instance_uids: Sequence[str], state: str | None, now: datetime) -> None:
    i, se = t.instance, t.series
    uids = list(sop_instance_uids)
    study_pks: set[int] = set()
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        connection.execute(
            sa.update(i)
            .where(i.c.sop_instance_uid.in_(chunk))
            .values(rejection=state, rejected_at=None if state is None else now)
        )
        study_pks.update(
            r[0]
            for r in connection.execute(
                sa.select(se.c.study_pk)
                .distinct()
                .select_from(i.join(se, se.c.pk == i.c.series_pk))
                .where(i.c.sop_instance_uid.in_(chunk))
            )
        )
    recount_visible(connection, study_pks)


def hidden_before(connection: Connection, states: Sequence[str], before: datetime, limit: int) -> list[InstanceState]:
    i, se, st = t.instance, t.series, t.study
    rows = connection.execute(
        sa.select(
            i.c.sop_instance_uid, i.c.sop_class_uid, se.c.series_instance_uid, st.c.study_instance_uid, i.c.rejection
        )
        .select_from(i.join(se, se.c.pk == i.c.series_pk).join(st, st.c.pk == se.c.study_pk))
        .where(i.c.rejection.in_(list(states)), i.c.rejected_at < before)
        .order_by(i.c.rejected_at, i.c.pk)
        .limit(limit)
    )
    return [InstanceState(*row) for row in rows]


def reset_operation_sequence(connection: Connection) -> None:
    """After operations were inserted with their keys (a rebuild): new ones follow them."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('qa_operation', 'pk'), COALESCE(MAX(pk), 1), MAX(pk) IS NOT NULL)"
            " FROM qa_operation"
        )
