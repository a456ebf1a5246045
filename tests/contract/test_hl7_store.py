"""The HL7 message store on SQLite and PostgreSQL: what is received is stored before the ACK,
found again by its summary and by free text, and refused messages are kept with the reason."""

from __future__ import annotations

import pytest

from openpacs.bootstrap import Application
from openpacs.domain.errors import NotFound
from openpacs.domain.hl7 import MessageQuery

A08 = (
    b"MSH|^~\\&|RIS|HOSP|OPENPACS|HOSP|20261128120000||ADT^A08^ADT_A01|C1|P|2.5.1||||||8859/1\r"
    b"PID|||PAT9^^^HOSP^MR||M\xfcller^J\xfcrgen 50%||19700101|M\r"
)


def test_received_messages_are_stored_and_found(app: Application) -> None:
    reply = app.hl7.receive(A08, "10.0.0.1:5000")
    assert b"MSA|AA|C1" in reply
    assert b"MSA|AR" in app.hl7.receive(b"PID|||1\r", "10.0.0.1:5000")
    assert app.hl7.counts() == {"received": 1, "rejected": 1}
    (found,) = app.hl7.messages(MessageQuery(patient_id="PAT9"))
    assert found.summary is not None and (found.summary.message_type, found.summary.charset) == ("ADT", "8859/1")
    assert found.raw == A08 and found.peer == "10.0.0.1:5000"
    assert [m.pk for m in app.hl7.messages(MessageQuery(text="Jürgen 50%"))] == [found.pk]  # in its own charset
    assert app.hl7.messages(MessageQuery(text="50_")) == []  # LIKE wildcards are plain text
    assert [m.status for m in app.hl7.messages(MessageQuery(status="rejected"))] == ["rejected"]
    assert [m.pk for m in app.hl7.messages(MessageQuery(message_type="adt", trigger="a08", sender="RIS"))] == [found.pk]
    assert found.pk is not None
    shown = app.hl7.show(found.pk)
    assert shown["raw"].startswith("MSH|") and "Müller" in shown["raw"]
    pid = next(s for s in shown["segments"] if s["name"] == "PID")
    assert pid["fields"]["PID-3"] == "PAT9^^^HOSP^MR"
    with pytest.raises(NotFound):
        app.hl7.show(123456)
