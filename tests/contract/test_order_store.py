"""Orders, worklist items, reports and the error queue on SQLite and PostgreSQL, through the
message service and its consumer: what a message creates, changes and cancels, the status
history, retention, and the merged-ID policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from openpacs.bootstrap import Application
from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.hl7 import MessageQuery
from openpacs.domain.records import Actor
from openpacs.services.reconcile import PatientRef

ORM = (
    "MSH|^~\\&|RIS|HOSP|PACS|HOSP|2026||ORM^O01|{control}|P|2.3.1\r"
    "PID|||{patient}^^^HOSP^MR||Doe^Jane||19800202|F\r"
    "ORC|{orc1}|PL-{order}|||SC||^^^202612010800^^R\r"
    "OBR|1|PL-{order}||CT^CT chest^L||||||||||||||ACC-{order}|RP-{order}|SPS-{order}||||CT\r"
)
ORU = (
    "MSH|^~\\&|RPT|HOSP|PACS|HOSP|2026||ORU^R01|{control}|P|2.5.1\rPID|||{patient}^^^HOSP^MR\r"
    "OBR|1|PL-{order}||CT|||||||||||||ACC-{order}|RP-{order}|||||||{status}\rOBX|1|TX|IMP^Impression||Normal.\r"
)
ACTOR = Actor.system("tests")


def _apply(app: Application, text: str) -> dict[str, str]:
    reply = app.hl7.receive(text.encode(), "127.0.0.1:4000")
    assert b"MSA|AA|" in reply, reply
    app.hl7_processor.process_pending()
    control = text.split("|")[9]
    (found,) = app.hl7.messages(MessageQuery(control_id=control))
    return {"status": found.status, "note": found.error}


def test_order_lifecycle_and_reports(app: Application) -> None:
    created = _apply(app, ORM.format(control="C1", patient="P1", orc1="NW", order="1"))
    assert created["status"] == "processed" and "created (1 procedures, 1 steps)" in created["note"]
    (order,) = app.orders.orders(accession="ACC-1")
    (item,) = app.orders.worklist(date="20261201", modality="CT")
    assert item.status == "SCHEDULED" and item.order_pk == order.pk and item.start_time == "080000"
    assert item.attrs["00401001"]["Value"] == ["RP-1"]
    # the same NW again is an update, not a second order
    _apply(app, ORM.format(control="C2", patient="P1", orc1="NW", order="1"))
    assert len(app.orders.orders(patient_id="P1")) == 1
    assert [s.pk for s in app.orders.worklist(patient_id="P1")] == [item.pk]

    for control, status in (("R1", "P"), ("R2", "F")):
        result = _apply(app, ORU.format(control=control, patient="P1", order="1", status=status))
        assert result["status"] == "processed", result
    detail = app.orders.order(order.pk)
    (procedure,) = detail["procedures"]
    assert procedure["status"] == "final"
    assert [h["status"] for h in procedure["history"]] == ["scheduled", "preliminary", "final"]
    assert [r["status"] for r in procedure["reports"]] == ["final", "preliminary"]
    (final,) = app.orders.reports(status="final")
    assert final.entry.text == "Impression:\nNormal." and final.procedure_pk == procedure["id"]
    assert app.orders.report(final.pk).entry.content == b"Impression:\nNormal."
    with pytest.raises(NotFound):
        app.orders.report(99999)
    with pytest.raises(NotFound):
        app.orders.order(99999)

    cancelled = _apply(app, ORM.format(control="C3", patient="P1", orc1="CA", order="1"))
    assert "cancelled (1 steps discontinued)" in cancelled["note"]
    assert app.orders.worklist(statuses=["SCHEDULED"]) == []
    # a cancel does not undo a final report: the procedure stays final (the status moves forward only)
    assert app.orders.orders(status="final")[0].pk == order.pk
    assert app.orders.orders(status="cancelled") == []


def test_error_queue_retention_and_merged_ids(app: Application) -> None:
    failed = _apply(app, ORM.format(control="F1", patient="P2", orc1="CA", order="404"))
    assert failed["status"] == "failed" and "no order PL-404" in failed["note"]
    held = _apply(app, ORM.format(control="F2", patient="P2", orc1="NW", order="5"))
    assert held["status"] == "received"  # waits behind F1
    queue = app.hl7.error_queue()
    (entry,) = queue["failed"]
    assert entry["control_id"] == "F1" and entry["holds_back"] == 1
    with pytest.raises(Conflict):
        app.hl7.reprocess([entry["id"] + 1], ACTOR)  # F2 is waiting, not handled
    assert app.hl7.skip([entry["id"]], ACTOR) == [entry["id"]]
    app.hl7_processor.process_pending()
    (f2,) = app.hl7.messages(MessageQuery(control_id="F2"))
    assert f2.status == "processed"
    assert app.hl7.reprocess([entry["id"]], ACTOR) == [entry["id"]]
    app.hl7_processor.process_pending()
    assert app.hl7.messages(MessageQuery(control_id="F1"))[0].status == "failed"

    # retention: handled messages older than the limit go, failed ones stay
    later = app.hl7._clock
    app.hl7._clock = lambda: later() + timedelta(days=100)  # type: ignore[method-assign]
    removed = app.hl7.purge(90)
    app.hl7._clock = later  # type: ignore[method-assign]
    assert removed >= 1 and [m.status for m in app.hl7.messages(MessageQuery())] == ["failed"]

    # merged IDs: an order for the old ID goes to the surviving patient (follow)
    for pid in ("OLD1", "NEW1"):
        _apply(app, f"MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A04|REG{pid}|P|2.5.1\rPID|||{pid}^^^HOSP^MR||X^Y\r")
    merged = _apply(
        app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A40|M1|P|2.5.1\rPID|||NEW1^^^HOSP^MR\rMRG|OLD1^^^HOSP^MR\r"
    )
    assert merged["status"] == "processed"
    assert app.reconcile.surviving(PatientRef("OLD1", app.settings.identity.default_issuer or "")) is not None
    again = _apply(
        app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A40|M2|P|2.5.1\rPID|||NEW1^^^HOSP^MR\rMRG|OLD1^^^HOSP^MR\r"
    )
    assert "already merged" in again["note"]
    _apply(app, ORM.format(control="C9", patient="OLD1", orc1="NW", order="9"))
    (order,) = app.orders.orders(accession="ACC-9")
    assert order.patient_id == "NEW1"
    app.hl7_processor._merged_id_policy = "reject"
    rejected = _apply(app, ORM.format(control="C10", patient="OLD1", orc1="NW", order="10"))
    assert rejected["status"] == "failed" and "was merged into" in rejected["note"]


def test_a10_marks_todays_steps_arrived(app: Application) -> None:
    today = app.hl7._clock().astimezone().strftime("%Y%m%d")
    _apply(app, ORM.format(control="T1", patient="P3", orc1="NW", order="7").replace("202612010800", f"{today}0900"))
    _apply(app, ORM.format(control="T2", patient="P3", orc1="NW", order="8"))  # another day: stays
    arrived = _apply(app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A10|A1|P|2.5.1\rPID|||P3^^^HOSP^MR\r")
    assert arrived["note"] == f"1 scheduled steps of {today} marked arrived"
    statuses = {s.attrs["00401001"]["Value"][0]: s.status for s in app.orders.worklist(patient_id="P3")}
    assert statuses == {"RP-7": "ARRIVED", "RP-8": "SCHEDULED"}
    steps = app.orders.worklist(patient_id="P3", statuses=["ARRIVED"])
    assert steps[0].attrs["00400100"]["Value"][0]["00400020"]["Value"] == ["ARRIVED"]
    assert replace(steps[0], attrs={}).to_json()["status"] == "ARRIVED"


def test_adt_a01_a31_a34(app: Application) -> None:
    """A01 (admit) registers, A31 (update person) updates, A34 (merge patient ID only) merges."""
    admit = _apply(app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A01|AD1|P|2.3\rPID|||A1^^^HOSP^MR||Admit^Ann\r")
    assert admit == {"status": "processed", "note": "patient A1 registered"}
    _apply(app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A01|AD2|P|2.3\rPID|||A2^^^HOSP^MR||Other^Ann\r")
    update = _apply(
        app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A31|AD3|P|2.3\rPID|||A1^^^HOSP^MR||Person^Ann||19500505\r"
    )
    assert update["status"] == "processed" and update["note"].startswith("operation ")
    merge = _apply(app, "MSH|^~\\&|HIS|HOSP|PACS|HOSP|2026||ADT^A34|AD4|P|2.3\rPID|||A2^^^HOSP^MR\rMRG|A1^^^HOSP^MR\r")
    assert merge["status"] == "processed", merge
    surviving = app.reconcile.surviving(PatientRef("A1", app.settings.identity.default_issuer or ""))
    assert surviving is not None and surviving.patient_id == "A2"
