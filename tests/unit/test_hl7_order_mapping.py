"""Reading orders and results out of HL7 messages (openpacs.domain.hl7_orders), field names
(hl7_fields), batch splitting and ACK checks (hl7), sender matching (hl7_senders)."""

from __future__ import annotations

import base64

import pytest

from openpacs.domain.addresses import is_loopback
from openpacs.domain.hl7 import check_ack, header, split_messages
from openpacs.domain.hl7_fields import FieldSpec, segments
from openpacs.domain.hl7_orders import OrderMessageError, is_cancel, mapping_with, orders_of, reports_of
from openpacs.domain.hl7_senders import SenderDirectory, SenderPolicy

MSH = "MSH|^~\\&|RIS|HOSP|PACS|HOSP|20261128||{kind}|C1|P|2.5.1"


def _segments(*lines: str) -> list:  # type: ignore[type-arg]
    return segments("\r".join(lines))


def test_field_specs_and_escapes() -> None:
    found = _segments(MSH.format(kind="ORM^O01"), "PID|||A\\S\\B^^^AUTH&1.2&ISO^MR~X^^^Y||N\\T\\M\\F\\^G")
    pid = next(s for s in found if s.name == "PID")
    assert FieldSpec.parse("PID-3.1").read(found) == "A^B"  # \S\ is a literal component separator
    assert FieldSpec.parse("PID-3.4.2").read(found) == "1.2"
    assert FieldSpec.parse("pid-3.1").read_all(found) == ["A^B", "X"]
    assert pid.get(5, 1) == "N&M|"
    assert FieldSpec.parse("MSH-9.2").read(found) == "O01" and FieldSpec.parse("MSH-1").read(found) == "|"
    assert FieldSpec.parse("ZDS-1").read(found) == ""
    assert str(FieldSpec.parse("OBR-18")) == "OBR-18"
    for bad in ("OBR18", "OB-1", "OBR-0", "OBR-1.2.3.4", ""):
        with pytest.raises(ValueError):
            FieldSpec.parse(bad)


def test_orm_pairs_make_steps_of_one_procedure() -> None:
    found = _segments(
        MSH.format(kind="ORM^O01"),
        "PID|||P1^^^HOSP^MR||Doe^John^^III^Dr||19700101|M",
        "ORC|NW|PL1|FI1||SC||^^^202612010930^^A",
        "OBR|1|PL1|FI1|CT1^CT head^L||||||||||||||ACC1|RP1|SPS1||||CT",
        "ORC|NW|PL1|FI1||SC||^^^202612011000^^A",
        "OBR|2|PL1|FI1|CT1^CT head^L||||||||||||||ACC1|RP1|SPS2||||CT",
        "ZDS|1.2.3^100^Application^DICOM",
    )
    orders = orders_of(found, default_issuer="SITE", authorities={})
    assert len(orders) == 2  # one per ORC group; both name the same procedure
    first = orders[0]
    assert first.patient.name == "Doe^John^^Dr^III" and first.patient.issuer == "SITE"
    (procedure,) = first.procedures
    assert procedure.requested_procedure_id == "RP1" and procedure.priority == "HIGH"
    assert procedure.code is not None and procedure.code.meaning == "CT head"
    (step,) = procedure.steps
    assert (step.start_date, step.start_time, step.modality) == ("20261201", "093000", "CT")
    assert orders[1].procedures[0].study_instance_uid == "1.2.3"  # ZDS of its group
    assert not is_cancel(first)


def test_omi_ipc_segments_and_overrides() -> None:
    found = _segments(
        MSH.format(kind="OMI^O23^OMI_O23"),
        "PID|||P2^^^OTHER^MR",
        "ORC|XO|PL2|||SC",
        "TQ1|||||||20261202080000+0100||S",
        "OBR|1|PL2||MR1^MR knee^L|||||||||||||||||CUSTOM7",
        "IPC|ACC2|RP2|1.2.4|S1|MR|PR1^T1^L|ST1|LOC1|AE1~AE2~AE1",
        "IPC|ACC2|RP2|1.2.4|S2|MR",
    )
    (order,) = orders_of(found, default_issuer="SITE", authorities={"OTHER": "OTHER-ISSUER"})
    assert order.patient.issuer == "OTHER-ISSUER"
    (procedure,) = order.procedures
    assert [s.scheduled_step_id for s in procedure.steps] == ["S1", "S2"]
    first = procedure.steps[0]
    assert first.station_ae_titles == ("AE1", "AE2") and first.station_name == "ST1"
    assert (first.start_date, first.start_time) == ("20261202", "080000")
    assert procedure.priority == "STAT" and procedure.study_instance_uid == "1.2.4"
    assert first.protocol_code is not None and first.protocol_code.meaning == "T1"
    custom = orders_of(
        found, default_issuer="SITE", authorities={}, overrides=mapping_with({"station_ae_title": "OBR-21"})
    )
    assert custom[0].procedures[0].steps[1].station_ae_titles == ("CUSTOM7",)
    with pytest.raises(ValueError, match="not a mapped field"):
        mapping_with({"nonsense": "OBR-1"})


def test_cancel_and_broken_orders() -> None:
    cancel = _segments(MSH.format(kind="ORM^O01"), "PID|||P3", "ORC|CA|PL3", "OBR|1|PL3")
    assert is_cancel(orders_of(cancel, default_issuer="", authorities={})[0])
    status_cancel = _segments(MSH.format(kind="ORM^O01"), "PID|||P3", "ORC|SC|PL3|||DC", "OBR|1|PL3")
    assert is_cancel(orders_of(status_cancel, default_issuer="", authorities={})[0])
    with pytest.raises(OrderMessageError) as no_pid:
        orders_of(_segments(MSH.format(kind="ORM^O01"), "ORC|NW|X"), default_issuer="", authorities={})
    assert no_pid.value.location == "PID"
    with pytest.raises(OrderMessageError) as no_id:
        orders_of(_segments(MSH.format(kind="ORM^O01"), "PID|||", "ORC|NW|X"), default_issuer="", authorities={})
    assert no_id.value.location == "PID^1^3"
    with pytest.raises(OrderMessageError) as no_number:
        orders_of(_segments(MSH.format(kind="ORM^O01"), "PID|||P", "ORC|NW", "OBR|1"), default_issuer="",
                  authorities={})  # fmt: skip
    assert no_number.value.location == "ORC^1^2"


def test_reports_text_documents_and_status() -> None:
    pdf = base64.b64encode(b"%PDF-1.4 report").decode()
    found = _segments(
        MSH.format(kind="ORU^R01"),
        "PID|||P4^^^HOSP^MR",
        "OBR|1|PL4|FI4|X|||20261128101500|||||||||||ACC4|RP4||||||C|||||||&Reader&Rita",
        "OBX|1|ST|113014^DICOM Study^DCM||1.2.5||||||F",
        "OBX|2|TX|IMP^Impression^L||First line\\.br\\second line||||||F",
        "OBX|3|TX|IMP^Impression^L||third||||||F",
        "OBR|2|PL5||X||||||||||||||ACC5|||||||P",
        f"OBX|1|ED|PDF^Report^L||^Application^PDF^Base64^{pdf[:10]}",
        pdf[10:] + "||||||F",
    )
    first, second = reports_of(found, default_issuer="SITE", authorities={})
    assert first.status == "amended" and first.result_status == "C"
    assert first.text == "Impression:\nFirst line\nsecond line\nthird"
    assert first.study_instance_uids == ("1.2.5",) and first.verifier == "Reader^Rita"
    assert first.observed_at == "20261128101500"
    assert second.status == "preliminary" and second.content_type == "application/pdf"
    assert second.content == b"%PDF-1.4 report"  # the Base64 broken over two lines is joined
    with pytest.raises(OrderMessageError, match="no text OBX"):
        reports_of(_segments(MSH.format(kind="ORU^R01"), "PID|||P", "OBR|1|PL"), default_issuer="", authorities={})
    with pytest.raises(OrderMessageError, match="Base64"):
        reports_of(
            _segments(MSH.format(kind="ORU^R01"), "PID|||P", "OBR|1|PL", "OBX|1|ED|X||^A^PDF^Base64^!!!"),
            default_issuer="", authorities={},
        )  # fmt: skip


def test_batches_split_and_acks_checked() -> None:
    batch = b"\xef\xbb\xbfFHS|^~\\&\nBHS|^~\\&\r\nMSH|^~\\&|A|B|||||ADT^A08|1|P|2.5\nPID|||1\nMSH|^~\\&|A|B|||||ADT^A08|2|P|2.5\nBTS|2\nFTS|1"
    messages = split_messages(batch)
    assert [m.split(b"|")[9] for m in messages] == [b"1", b"2"] and messages[0].endswith(b"PID|||1\r")
    sent = header(b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|77|P|2.5.1")
    assert check_ack(sent, b"MSH|^~\\&|C|D|A|B|2026||ACK|9|P|2.5.1\rMSA|AA|77").ok
    wrong = check_ack(sent, b"MSH|^~\\&|C|D|A|B|2026||ACK|9|P|2.5.1\rMSA|AA|78")
    assert not wrong.ok and "does not echo" in wrong.text
    refused = check_ack(sent, b"MSH|^~\\&|||||||ACK|9|P|2.5\rMSA|AE|77\rERR||PID^1^3|207^bad|E")
    assert not refused.ok and refused.code == "AE" and "bad" in refused.text
    assert not check_ack(sent, b"garbage").ok
    assert check_ack(sent, b"MSH|^~\\&|||||||ACK|9|P|2.5\rMSA|CA|77").ok  # no application ACK asked for
    asks = header(b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|77|P|2.5.1|||AL|AL")
    assert check_ack(asks, b"MSH|^~\\&|||||||ACK|9|P|2.5\rMSA|CA|77").waiting


def test_sender_directory() -> None:
    ris = SenderPolicy(application="RIS", facility="EAST", addresses=("10.0.0.0/8",))
    directory = SenderDirectory((ris,), accept_unknown=False)
    assert directory.find("RIS", "east", "10.1.2.3") is ris
    assert directory.find("RIS", "EAST", "192.168.1.1") is None
    assert directory.find("RIS^1.2^ISO", "EAST", "10.0.0.1") is ris  # HD: the namespace ID is compared
    assert directory.find("LAB", "EAST", "10.0.0.1") is None
    assert SenderDirectory((ris,), accept_unknown=True).find("LAB", "", "1.2.3.4") == SenderPolicy()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("")
