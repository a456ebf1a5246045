"""Index statements of the reallocations under new UIDs (issue 4): series moved into
another study, instances moved into another series, and the ``uid_alias`` table that maps
each retired UID to the one that replaced it.

ARCHITECTURE.md section 3: the stored bytes keep their UIDs; the series row takes the new
Series Instance UID in its attribute set, the instance row the new SOP Instance UID in its
own (``instance.attrs``), and every outbound path coerces.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import json_value
from openpacs.adapters.index.removal import recount_visible
from openpacs.ports.index import InstancePlace, iter_chunks

SOP_INSTANCE_UID = "00080018"
SERIES_INSTANCE_UID = "0020000E"
#: None written as SQL NULL (an instance without a set of its own), not as JSON null
_OWN_SET = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_REFERENCE = '"00081155"'
_UID_TOKEN = re.compile(r'"([0-9]+(?:\.[0-9]+)+)"')


class Reallocation:
    """The ReallocationStore port over one connection (inside the session's transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- reads ------------------------------------------------------------------------------

    def alias_of(self, uid: str) -> tuple[str, str] | None:
        a = t.uid_alias
        row = self.connection.execute(sa.select(a.c.level, a.c.new_uid).where(a.c.old_uid == uid)).first()
        return None if row is None else (row[0], row[1])

    def places(self, sop_instance_uids: Sequence[str]) -> dict[str, InstancePlace]:
        """Where each instance is (series, study, patient) and its own attribute set."""
        i, se, st = t.instance, t.series, t.study
        out: dict[str, InstancePlace] = {}
        for chunk in iter_chunks(list(sop_instance_uids)):
            rows = self.connection.execute(
                sa.select(
                    i.c.sop_instance_uid,
                    i.c.sop_class_uid,
                    i.c.rejection,
                    i.c.attrs,
                    se.c.series_instance_uid,
                    st.c.study_instance_uid,
                    st.c.patient_pk,
                )
                .select_from(i.join(se, se.c.pk == i.c.series_pk).join(st, st.c.pk == se.c.study_pk))
                .where(i.c.sop_instance_uid.in_(list(chunk)))
            )
            for r in rows:
                out[r[0]] = InstancePlace(r[0], r[1], r[4], r[5], r[6], r[2], json_value(r[3]) if r[3] else {})
        return out

    def series_members(self, series_uid: str) -> list[str]:
        i, se = t.instance, t.series
        rows = self.connection.execute(
            sa.select(i.c.sop_instance_uid)
            .select_from(i.join(se, se.c.pk == i.c.series_pk))
            .where(se.c.series_instance_uid == series_uid)
            .order_by(i.c.instance_number, i.c.pk)
        )
        return [r[0] for r in rows]

    def series_of_study(self, study_uid: str) -> list[str]:
        se, st = t.series, t.study
        rows = self.connection.execute(
            sa.select(se.c.series_instance_uid)
            .select_from(se.join(st, st.c.pk == se.c.study_pk))
            .where(st.c.study_instance_uid == study_uid)
            .order_by(se.c.series_number, se.c.pk)
        )
        return [r[0] for r in rows]

    def series_study(self, series_uid: str) -> str | None:
        se, st = t.series, t.study
        return self.connection.execute(
            sa.select(st.c.study_instance_uid)
            .select_from(se.join(st, st.c.pk == se.c.study_pk))
            .where(se.c.series_instance_uid == series_uid)
        ).scalar()

    def referencing(self, patient_pks: Collection[int], uids: Collection[str]) -> list[tuple[str, dict[str, Any]]]:
        """(SOP Instance UID, header overlaid with its own set) of the instances of these patients
        whose header or own set names any of *uids* (references of GSPS, KOS, SR and the like)."""
        i, se, st = t.instance, t.series, t.study
        wanted = set(uids)
        out = []
        rows = self.connection.execute(
            sa.select(
                i.c.sop_instance_uid,
                se.c.series_instance_uid,
                st.c.study_instance_uid,
                sa.cast(i.c.header, sa.Text).label("header"),
                sa.cast(i.c.attrs, sa.Text).label("attrs"),
            )
            .select_from(i.join(se, se.c.pk == i.c.series_pk).join(st, st.c.pk == se.c.study_pk))
            .where(st.c.patient_pk.in_(list(patient_pks)))
        )
        for uid, series_uid, study_uid, header, attrs in rows:
            # every reference holds a Referenced SOP Instance UID (0008,1155): a substring test
            # drops the other objects, a token scan of the JSON text finds the candidates without
            # parsing their headers; an object's own UIDs are not references
            if _REFERENCE not in header and (not attrs or _REFERENCE not in attrs):
                continue
            tokens = set(_UID_TOKEN.findall(header))
            if attrs:
                tokens.update(_UID_TOKEN.findall(attrs))
            tokens -= {uid, series_uid, study_uid}
            if tokens & wanted:
                merged: dict[str, Any] = orjson.loads(header)
                if attrs and attrs != "null":
                    merged.update(orjson.loads(attrs))
                out.append((uid, merged))
        return out

    # -- writes -----------------------------------------------------------------------------

    def create_series_like(self, template_uid: str, study_uid: str, attrs: dict[str, Any], now: datetime) -> None:
        """A new, empty series in *study_uid* (the ``source_ae_title`` of *template_uid* kept)."""
        from openpacs.adapters.index import columns as cols

        se, st = t.series, t.study
        source = self.connection.execute(
            sa.select(se.c.source_ae_title).where(se.c.series_instance_uid == template_uid)
        ).scalar()
        study_pk = self.connection.execute(sa.select(st.c.pk).where(st.c.study_instance_uid == study_uid)).scalar_one()
        self.connection.execute(
            sa.insert(se).values(
                series_instance_uid=attrs[SERIES_INSTANCE_UID]["Value"][0],
                study_pk=study_pk,
                attrs=attrs,
                source_ae_title=source or "",
                created_at=now,
                updated_at=now,
                **cols.series_columns(attrs),
            )
        )

    def create_study_like(self, patient_pk: int, attrs: dict[str, Any], now: datetime) -> None:
        from openpacs.adapters.index import columns as cols

        self.connection.execute(
            sa.insert(t.study).values(
                study_instance_uid=attrs["0020000D"]["Value"][0],
                patient_pk=patient_pk,
                attrs=attrs,
                created_at=now,
                updated_at=now,
                last_instance_at=now,
                **cols.study_columns(attrs),
            )
        )

    def remove_if_empty(self, level: str, uid: str) -> bool:
        """Remove a series without instances, or a study without series (undo of a creation)."""
        se, st, i = t.series, t.study, t.instance
        if level == "SERIES":
            pk = self.connection.execute(sa.select(se.c.pk).where(se.c.series_instance_uid == uid)).scalar()
            if pk is None:
                return True
            if self.connection.execute(sa.select(sa.func.count()).where(i.c.series_pk == pk)).scalar_one():
                return False
            self.connection.execute(sa.delete(t.series_request).where(t.series_request.c.series_pk == pk))
            self.connection.execute(sa.delete(se).where(se.c.pk == pk))
            return True
        pk = self.connection.execute(sa.select(st.c.pk).where(st.c.study_instance_uid == uid)).scalar()
        if pk is None:
            return True
        if self.connection.execute(sa.select(sa.func.count()).where(se.c.study_pk == pk)).scalar_one():
            return False
        self.connection.execute(sa.delete(st).where(st.c.pk == pk))
        return True

    def set_series_study(self, series_uid: str, study_uid: str, now: datetime) -> None:
        se, st = t.series, t.study
        study_pk = sa.select(st.c.pk).where(st.c.study_instance_uid == study_uid).scalar_subquery()
        self.connection.execute(
            sa.update(se).where(se.c.series_instance_uid == series_uid).values(study_pk=study_pk, updated_at=now)
        )

    def set_instances_series(self, sop_instance_uids: Sequence[str], series_uid: str) -> None:
        i, se = t.instance, t.series
        series_pk = self.connection.execute(
            sa.select(se.c.pk).where(se.c.series_instance_uid == series_uid)
        ).scalar_one()
        for chunk in iter_chunks(list(sop_instance_uids)):
            self.connection.execute(
                sa.update(i).where(i.c.sop_instance_uid.in_(list(chunk))).values(series_pk=series_pk)
            )

    def rename_series(self, old: str, new: str, now: datetime) -> None:
        se = t.series
        attrs = json_value(
            self.connection.execute(sa.select(se.c.attrs).where(se.c.series_instance_uid == old)).scalar_one()
        )
        attrs = {**attrs, SERIES_INSTANCE_UID: {"vr": "UI", "Value": [new]}}
        self.connection.execute(
            sa.update(se)
            .where(se.c.series_instance_uid == old)
            .values(series_instance_uid=new, attrs=attrs, updated_at=now)
        )
        self._aliases("SERIES", [(old, new)], now)

    def rename_instances(self, pairs: Sequence[tuple[str, str]], now: datetime) -> None:
        """Give instances new SOP Instance UIDs (their own set carries it; back to the header's
        value, the set drops it)."""
        i = t.instance
        olds = [old for old, _ in pairs]
        current: dict[str, tuple[int, Any, str]] = {}
        header_uid = i.c.header[SOP_INSTANCE_UID]["Value"][0].as_string()
        for chunk in iter_chunks(olds):
            for pk, uid, attrs, received in self.connection.execute(
                sa.select(i.c.pk, i.c.sop_instance_uid, i.c.attrs, header_uid).where(
                    i.c.sop_instance_uid.in_(list(chunk))
                )
            ):
                current[uid] = (pk, json_value(attrs) if attrs else {}, received)
        updates = []
        for old, new in pairs:
            pk, attrs, received = current[old]
            own = {k: v for k, v in attrs.items() if k != SOP_INSTANCE_UID}
            if new != received:
                own[SOP_INSTANCE_UID] = {"vr": "UI", "Value": [new]}
            updates.append({"b_pk": pk, "b_uid": new, "b_attrs": own or None})
        statement = (
            sa.update(i)
            .where(i.c.pk == sa.bindparam("b_pk"))
            .values(sop_instance_uid=sa.bindparam("b_uid"), attrs=sa.bindparam("b_attrs", type_=_OWN_SET))
        )
        if updates and {new for _, new in pairs} & set(olds):
            # UIDs swapped inside one batch: two steps, so that none meets the unique constraint
            parked = [{"b_pk": u["b_pk"], "b_uid": f"~{u['b_pk']}", "b_attrs": u["b_attrs"]} for u in updates]
            self.connection.execute(statement, parked)
        if updates:
            self.connection.execute(statement, updates)
        self._aliases("IMAGE", pairs, now)

    def set_instance_attrs(self, items: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        i = t.instance
        statement = (
            sa.update(i)
            .where(i.c.sop_instance_uid == sa.bindparam("b_uid"))
            .values(attrs=sa.bindparam("b_attrs", type_=_OWN_SET))
        )
        rows = [{"b_uid": uid, "b_attrs": attrs or None} for uid, attrs in items]
        if rows:
            self.connection.execute(statement, rows)

    def set_alias(self, level: str, old: str, new: str | None, now: datetime) -> None:
        """Point *old* at *new* (None: remove the alias): a study merged into another."""
        a = t.uid_alias
        self.connection.execute(sa.delete(a).where(a.c.old_uid == old))
        if new is not None:
            self.connection.execute(sa.insert(a).values(level=level, old_uid=old, new_uid=new, created_at=now))

    def recount(self, study_uids: Collection[str]) -> None:
        st = t.study
        pks = [
            r[0]
            for chunk in iter_chunks(list(study_uids))
            for r in self.connection.execute(sa.select(st.c.pk).where(st.c.study_instance_uid.in_(list(chunk))))
        ]
        recount_visible(self.connection, pks)

    def _aliases(self, level: str, pairs: Sequence[tuple[str, str]], now: datetime) -> None:
        """Keep ``uid_alias`` one step deep: a retired UID always names the current one.

        Renaming a -> b retires a (alias a -> b) and repoints x -> a to x -> b; renaming b back
        to a (an undo) takes a back (its alias goes) and repoints x -> b to x -> a.
        """
        a = t.uid_alias
        news = [new for _, new in pairs]
        taken_back: set[str] = set()
        for chunk in iter_chunks(news):
            taken_back.update(
                r[0] for r in self.connection.execute(sa.select(a.c.old_uid).where(a.c.old_uid.in_(list(chunk))))
            )
        for chunk in iter_chunks(sorted(taken_back)):
            self.connection.execute(sa.delete(a).where(a.c.old_uid.in_(list(chunk))))
        repoint = sa.update(a).where(a.c.new_uid == sa.bindparam("b_old")).values(new_uid=sa.bindparam("b_new"))
        if pairs:
            self.connection.execute(repoint, [{"b_old": old, "b_new": new} for old, new in pairs])
        inserts = [
            {"level": level, "old_uid": old, "new_uid": new, "created_at": now}
            for old, new in pairs
            if new not in taken_back
        ]
        if inserts:
            self.connection.execute(sa.insert(a), inserts)
