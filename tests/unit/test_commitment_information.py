"""Storage commitment Event Information and Action Information (PS3.4 J.3), encoded as on the wire."""

from __future__ import annotations

from openpacs.dimse.commitment import action_information, parse_event_information
from openpacs.dimse.identifiers import decode_identifier, encode_identifier
from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.commitment import CommitmentResult, failure_text

CT = "1.2.840.10008.5.1.4.1.1.2"


def test_action_information_round_trips_on_the_wire() -> None:
    refs = [(CT, "1.2.3.1"), (CT, "1.2.3.2")]
    wire = encode_identifier(action_information("9.8.7", refs), tsx.IMPLICIT_LE, [])
    back = decode_identifier(wire, tsx.IMPLICIT_LE)
    assert back["00081195"]["Value"] == ["9.8.7"]
    assert [(i["00081150"]["Value"][0], i["00081155"]["Value"][0]) for i in back["00081199"]["Value"]] == refs


def test_event_information_with_failures() -> None:
    info = action_information("9.8.7", [(CT, "1.2.3.1")])
    info["00081198"] = {
        "vr": "SQ",
        "Value": [
            {
                "00081150": {"vr": "UI", "Value": [CT]},
                "00081155": {"vr": "UI", "Value": ["1.2.3.2"]},
                "00081197": {"vr": "US", "Value": [0x0112]},
            }
        ],
    }
    wire = encode_identifier(info, tsx.EXPLICIT_LE, [])
    result = parse_event_information(decode_identifier(wire, tsx.EXPLICIT_LE))
    assert result == CommitmentResult("9.8.7", [(CT, "1.2.3.1")], [(CT, "1.2.3.2", 0x0112)])
    assert result.event_type == 2
    assert failure_text(0x0112) == "0x0112 no such object instance"
    assert parse_event_information({"00081195": {"vr": "UI", "Value": ["1"]}}).event_type == 1
