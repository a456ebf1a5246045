"""Index statements of the HL7 message store (table ``hl7_message``)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import FastStatements, aware
from openpacs.domain.hl7 import MessageQuery, StoredMessage, Summary


def _message(row: Any) -> StoredMessage:
    summary = Summary(
        message_type=row.message_type,
        trigger=row.trigger,
        structure="",
        control_id=row.control_id,
        processing_id=row.processing_id,
        version=row.version,
        sending_application=row.sending_application,
        sending_facility=row.sending_facility,
        receiving_application=row.receiving_application,
        receiving_facility=row.receiving_facility,
        charset=row.charset,
        accept_ack_type="",
        application_ack_type="",
        patient_id=row.patient_id,
        accession=row.accession,
        encoding="|^~\\&",
    )
    received = aware(row.received_at)
    assert received is not None
    return StoredMessage(
        direction=row.direction,
        received_at=received,
        status=row.status,
        raw=bytes(row.raw),
        summary=summary if row.message_type or row.control_id else None,
        peer=row.peer,
        error=row.error,
        ack_code=row.ack_code,
        processed_at=aware(row.processed_at),
        pk=int(row.pk),
    )


_INSERT = sa.insert(t.hl7_message).returning(t.hl7_message.c.pk)
_SUMMARY_COLUMNS = (
    "sending_application", "sending_facility", "receiving_application", "receiving_facility", "message_type",
    "trigger", "control_id", "version", "processing_id", "charset", "patient_id", "accession",
)  # fmt: skip


class Hl7MessageTable:
    """The Hl7MessageStore port over one connection."""

    def __init__(self, connection: Connection, fast: FastStatements) -> None:
        self.connection = connection
        self._fast = fast

    def add_message(self, message: StoredMessage) -> int:
        s = message.summary

        def cut(value: str, size: int) -> str:
            return value[:size]

        values: dict[str, Any] = {
            "direction": message.direction,
            "received_at": message.received_at,
            "peer": cut(message.peer, 200),
            "status": message.status,
            "error": message.error[:4000],
            "ack_code": message.ack_code,
            "raw": message.raw,
            "processed_at": message.processed_at,
        }
        values.update(dict.fromkeys(_SUMMARY_COLUMNS, ""))
        if s is not None:
            values.update(
                sending_application=cut(s.sending_application, 200),
                sending_facility=cut(s.sending_facility, 200),
                receiving_application=cut(s.receiving_application, 200),
                receiving_facility=cut(s.receiving_facility, 200),
                message_type=cut(s.message_type, 16),
                trigger=cut(s.trigger, 16),
                control_id=cut(s.control_id, 200),
                version=cut(s.version, 16),
                processing_id=cut(s.processing_id, 4),
                charset=cut(s.charset, 32),
                patient_id=cut(s.patient_id, 200),
                accession=cut(s.accession, 200),
            )
        # the receive path: a prebuilt statement (adapters/index/fast.py)
        return int(self._fast.execute(self.connection, _INSERT, values).scalar_one())

    def message(self, pk: int) -> StoredMessage | None:
        m = t.hl7_message
        row = self.connection.execute(sa.select(m).where(m.c.pk == pk)).first()
        return None if row is None else _message(row)

    def messages(self, query: MessageQuery) -> list[StoredMessage]:
        m = t.hl7_message
        select = sa.select(m)
        for column, value in (
            (m.c.message_type, query.message_type.upper()),
            (m.c.trigger, query.trigger.upper()),
            (m.c.patient_id, query.patient_id),
            (m.c.accession, query.accession),
            (m.c.status, query.status),
            (m.c.control_id, query.control_id),
            (m.c.direction, query.direction),
        ):
            if value:
                select = select.where(column == value)
        if query.sender:
            select = select.where(sa.or_(m.c.sending_application == query.sender, m.c.sending_facility == query.sender))
        if query.since is not None:
            select = select.where(m.c.received_at >= query.since)
        if query.until is not None:
            select = select.where(m.c.received_at < query.until)
        if query.before is not None:
            select = select.where(m.c.pk < query.before)
        if query.text:
            # messages keep their own character set: look for the text as UTF-8 and as ISO 8859-1
            needles = {query.text.encode("utf-8")}
            with contextlib.suppress(UnicodeEncodeError):
                needles.add(query.text.encode("iso8859-1"))
            if self.connection.dialect.name == "sqlite":  # LIKE does not see into a BLOB
                select = select.where(sa.or_(*(sa.func.instr(m.c.raw, n) > 0 for n in needles)))
            else:
                patterns = [
                    b"%" + n.replace(b"\\", b"\\\\").replace(b"%", b"\\%").replace(b"_", b"\\_") + b"%" for n in needles
                ]  # bytea LIKE, backslash escapes
                select = select.where(sa.or_(*(m.c.raw.bool_op("LIKE")(p) for p in patterns)))
        rows = self.connection.execute(select.order_by(m.c.pk.desc()).limit(max(1, min(query.limit, 1000))))
        return [_message(r) for r in rows]

    def pending(self, limit: int) -> list[StoredMessage]:
        """Inbound messages waiting to be applied, in arrival order."""
        m = t.hl7_message
        rows = self.connection.execute(
            sa.select(m).where(m.c.status == "received", m.c.direction == "in").order_by(m.c.pk).limit(limit)
        )
        return [_message(r) for r in rows]

    def held_patients(self) -> set[tuple[str, str]]:
        """(sender, patient ID) of the failed messages: their later messages wait."""
        m = t.hl7_message
        rows = self.connection.execute(
            sa.select(m.c.sending_application, m.c.sending_facility, m.c.patient_id)
            .where(m.c.status == "failed", m.c.patient_id != "")
            .distinct()
        )
        return {(f"{r.sending_application}|{r.sending_facility}", r.patient_id) for r in rows}

    def set_status(self, pk: int, status: str, error: str, now: datetime) -> None:
        m = t.hl7_message
        self.connection.execute(
            sa.update(m)
            .where(m.c.pk == pk)
            .values(status=status, error=error[:4000], processed_at=None if status == "received" else now)
        )

    def outbox(self, destination: str, limit: int) -> list[StoredMessage]:
        """Outbound messages queued for *destination*, oldest first."""
        m = t.hl7_message
        rows = self.connection.execute(
            sa.select(m)
            .where(m.c.direction == "out", m.c.status == "queued", m.c.peer == destination)
            .order_by(m.c.pk)
            .limit(limit)
        )
        return [_message(r) for r in rows]

    def waiting_counts(self) -> dict[tuple[str, str], int]:
        """(sender, patient ID) -> number of inbound messages waiting to be applied."""
        m = t.hl7_message
        rows = self.connection.execute(
            sa.select(m.c.sending_application, m.c.sending_facility, m.c.patient_id, sa.func.count())
            .where(m.c.status == "received", m.c.direction == "in")
            .group_by(m.c.sending_application, m.c.sending_facility, m.c.patient_id)
        )
        return {(f"{r[0]}|{r[1]}", r[2]): int(r[3]) for r in rows}

    def set_ack(self, pk: int, code: str) -> None:
        m = t.hl7_message
        self.connection.execute(sa.update(m).where(m.c.pk == pk).values(ack_code=code[:2]))

    def set_summary(self, pk: int, s: Summary) -> None:
        m = t.hl7_message
        self.connection.execute(
            sa.update(m)
            .where(m.c.pk == pk)
            .values(
                sending_application=s.sending_application[:200],
                sending_facility=s.sending_facility[:200],
                receiving_application=s.receiving_application[:200],
                receiving_facility=s.receiving_facility[:200],
                message_type=s.message_type[:16],
                trigger=s.trigger[:16],
                control_id=s.control_id[:200],
                version=s.version[:16],
                processing_id=s.processing_id[:4],
                charset=s.charset[:32],
                patient_id=s.patient_id[:200],
                accession=s.accession[:200],
            )
        )

    def delete_before(self, before: datetime, statuses: Sequence[str]) -> int:
        m = t.hl7_message
        result = self.connection.execute(sa.delete(m).where(m.c.received_at < before, m.c.status.in_(list(statuses))))
        return int(result.rowcount or 0)

    def message_counts(self) -> dict[str, int]:
        m = t.hl7_message
        rows = self.connection.execute(sa.select(m.c.status, sa.func.count()).group_by(m.c.status))
        return {status: int(n) for status, n in rows}
