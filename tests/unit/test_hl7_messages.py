"""Reading HL7 v2 messages and answering them: summaries, character sets, ACKs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from openpacs.domain.hl7 import Hl7Error, ack, find, header, normalise, parse
from openpacs.domain.hl7_fields import FieldSpec

SHARED = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "hl7"
NOW = datetime(2026, 11, 28, 12, 0, 0)
ORM = (
    b"MSH|^~\\&|RIS|HOSP|PACS|HOSP|20261128||ORM^O01|C7|P|2.3.1\r"
    b"PID|||P1^^^HOSP~N1^^^NATIONAL||DOE^JOHN\r"
    b"ORC|NW|PL1|FL1\r"
    b"OBR|1|PL1|FL1|CT^Head||||||||||||||ACC42|RP1|SPS1||||CT\r"
)


def test_the_summary_of_an_order() -> None:
    _, summary = parse(ORM)
    assert (summary.message_type, summary.trigger, summary.control_id, summary.version) == ("ORM", "O01", "C7", "2.3.1")
    assert (summary.patient_id, summary.accession) == ("P1", "ACC42")
    assert summary.sender == "RIS|HOSP"


def test_line_ends_bom_and_blanks_are_tolerated() -> None:
    messy = b"\xef\xbb\xbf" + ORM.replace(b"\r", b"\r\n") + b"   \n\n"
    assert normalise(messy) == ORM.rstrip(b"\r")
    assert parse(messy)[1].control_id == "C7"


def test_character_sets_follow_msh_18_or_the_bytes() -> None:
    latin = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5||||||8859/1\rPID|||X||M\xfcller\r"
    message, summary = parse(latin)
    pid = find(message, "PID")
    assert summary.charset == "8859/1" and pid is not None and pid.get(5) == "Müller"
    undeclared_utf8 = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|||X||M\xc3\xbcller\r"
    assert FieldSpec.parse("PID-5").read(parse(undeclared_utf8)[0]) == "Müller"
    undeclared_latin = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|||X||M\xfcller\r"
    assert FieldSpec.parse("PID-5").read(parse(undeclared_latin)[0]) == "Müller"
    with pytest.raises(Hl7Error, match="not valid utf-8"):
        parse(b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|||X||M\xfcller\r")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "100"),
        (b"PID|||1", "100"),
        (b"MSH|^~\\&|A|B|C|D|2026||ADT^A08||P|2.5", "101"),
        (b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|3.0", "203"),
        (b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|X|2.5", "202"),
    ],
)
def test_unreadable_messages_say_why(raw: bytes, code: str) -> None:
    with pytest.raises(Hl7Error) as caught:
        parse(raw)
    assert caught.value.error_code == code and caught.value.code == "AR"


def test_the_ack_mirrors_and_echoes_with_the_messages_own_separators() -> None:
    odd = b"MSH#*~\\&#RIS#HOSP#PACS#HOSP#2026##ADT*A08#C9#P#2.5.1\r"
    summary = parse(odd)[1]
    reply = ack(summary, "AA", now=NOW, control_id="OP1").decode()
    msh, msa = reply.split("\r")[:2]
    assert msh.split("#")[2:12] == [
        "PACS",
        "HOSP",
        "RIS",
        "HOSP",
        "20261128120000",
        "",
        "ACK*A08*ACK",
        "OP1",
        "P",
        "2.5.1",
    ]
    assert msa == "MSA#AA#C9"
    refused = ack(header(odd), "AR", now=NOW, control_id="OP2", text="bad # thing", error_code="207").decode()
    assert "ERR###207*bad   thing#E" in refused  # separators in the text are blanked
    anonymous = ack(None, "AR", now=NOW, control_id="OP3", text="no MSH", error_code="100").decode()
    assert anonymous.startswith("MSH|^~\\&|OPENPACS|") and "MSA|AR|" in anonymous


def test_every_shared_message_is_read() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing")
    for path in sorted(SHARED.rglob("*.hl7")):
        _, summary = parse(path.read_bytes())
        assert summary.message_type and summary.control_id, path.name
