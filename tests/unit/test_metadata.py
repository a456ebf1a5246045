"""WADO-RS metadata from the index: the spliced stored text equals the parsed and coerced answer."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from openpacs.domain.part10 import parse_part10
from openpacs.domain.records import BlobRef, StoredInstance
from openpacs.domain.tags import Level, level_elements
from openpacs.services.identity import level_attrs
from openpacs.services.metadata import metadata_json, metadata_of
from samples import sample_file

URL = "http://pacs.example:8042/dicom-web/studies/1/series/2/instances/3"


def _instance(header: dict[str, Any], text: str, **sets: dict[str, Any]) -> StoredInstance:
    return StoredInstance(
        sop_instance_uid="3",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series_instance_uid="2",
        study_instance_uid="1",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob=BlobRef("files", "k", 1),
        checksum="",
        header_text=text,
        patient_attrs=sets.get("patient", level_attrs(header, Level.PATIENT)),
        study_attrs=sets.get("study", level_attrs(header, Level.STUDY)),
        series_attrs=sets.get("series", level_attrs(header, Level.SERIES)),
        level_values=level_elements(header),
    )


@pytest.fixture(scope="module")
def ct_header() -> dict[str, Any]:
    header = parse_part10(sample_file("CT_small.dcm").read_bytes(), bulk_threshold=256).header
    assert any("BulkDataURI" in element for element in header.values())
    return header


# the stored header as SQLite keeps it (orjson, compact) and as PostgreSQL prints jsonb
TEXT_FORMS = {
    "sqlite": lambda h: orjson.dumps(h).decode(),
    "postgresql": lambda h: json.dumps(h, separators=(", ", ": "), ensure_ascii=False),
}


@pytest.mark.parametrize("form", TEXT_FORMS)
def test_an_unchanged_instance_is_spliced_to_the_same_answer(ct_header: dict[str, Any], form: str) -> None:
    instance = _instance(ct_header, TEXT_FORMS[form](ct_header))
    (answer,) = orjson.loads(metadata_json([instance], lambda _i: URL))
    assert "header" not in instance.__dict__  # answered from the text: the header was never parsed
    assert answer == metadata_of(instance, URL)
    pixel = answer["7FE00010"]
    assert pixel["BulkDataURI"].startswith(URL + "/bulk/") and "bytes=" not in pixel["BulkDataURI"]


def test_the_index_attribute_sets_win_over_the_stored_header(ct_header: dict[str, Any]) -> None:
    patient = level_attrs(ct_header, Level.PATIENT)
    patient["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": "CORRECTED^NAME"}]}
    instance = _instance(ct_header, orjson.dumps(ct_header).decode(), patient=patient)
    (answer,) = orjson.loads(metadata_json([instance], lambda _i: URL))
    assert answer["00100010"]["Value"] == [{"Alphabetic": "CORRECTED^NAME"}]
    assert answer["7FE00010"]["BulkDataURI"].startswith(URL + "/bulk/")


def test_a_url_needing_json_escapes_is_escaped(ct_header: dict[str, Any]) -> None:
    hostile = 'http://a"b\\c/dicom-web'
    instance = _instance(ct_header, orjson.dumps(ct_header).decode())
    (answer,) = orjson.loads(metadata_json([instance], lambda _i: hostile))
    assert answer["7FE00010"]["BulkDataURI"].startswith(hostile + "/bulk/")


def test_a_bulk_reference_that_is_not_a_byte_range_takes_the_parsed_path(ct_header: dict[str, Any]) -> None:
    header = dict(ct_header)
    header["7FE00010"] = {"vr": "OW", "BulkDataURI": "deflated"}
    instance = _instance(header, orjson.dumps(header).decode())
    (answer,) = orjson.loads(metadata_json([instance], lambda _i: URL))
    assert answer["7FE00010"]["BulkDataURI"] == f"{URL}/bulk/7FE00010"


def test_many_instances_make_one_array(ct_header: dict[str, Any]) -> None:
    text = orjson.dumps(ct_header).decode()
    instances = [_instance(ct_header, text) for _ in range(3)]
    assert len(orjson.loads(metadata_json(instances, lambda _i: URL))) == 3
    assert orjson.loads(metadata_json([], lambda _i: URL)) == []
