"""Instance metadata for WADO-RS (PS3.18 10.4.1.1.2 and Annex F.2): the index's headers as
they leave the archive (coerced), with bulk data referenced by URL; no file is read.

Most instances are not changed by the index's attribute sets: their metadata is the stored
header text with each byte-range ``BulkDataURI`` turned into a URL, spliced without parsing.
The others are parsed, coerced and serialised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from openpacs.domain.records import StoredInstance
from openpacs.services.outbound import coerced_header, coercion_changes

# the byte-range references of a stored header, as SQLite (compact) and PostgreSQL (jsonb) print them
_RANGE_FORMS = ('"BulkDataURI":"bytes=', '"BulkDataURI": "bytes=')
_ANY_BULK = '"BulkDataURI"'


def _with_bulk_urls(element: dict[str, Any], url: str, tag: str) -> dict[str, Any]:
    if "BulkDataURI" in element:
        uri = str(element["BulkDataURI"])
        suffix = uri[6:] if uri.startswith("bytes=") else tag
        return {"vr": element.get("vr", "UN"), "BulkDataURI": f"{url}/bulk/{suffix}"}
    if element.get("vr") == "SQ" and element.get("Value"):
        return {
            "vr": "SQ",
            "Value": [{k: _with_bulk_urls(v, url, k) for k, v in item.items()} for item in element["Value"]],
        }
    return element


def metadata_of(instance: StoredInstance, url: str) -> dict[str, Any]:
    """One instance's metadata as DICOM JSON; *url* is the instance's WADO-RS URL."""
    return {k: _with_bulk_urls(v, url, k) for k, v in coerced_header(instance).items()}


def _spliced(instance: StoredInstance, url: str) -> str | None:
    """The metadata text made from the stored header text, or None when that cannot be done."""
    text = instance.header_text
    if coercion_changes(instance):
        return None
    ranges = sum(text.count(form) for form in _RANGE_FORMS)
    if ranges != text.count(_ANY_BULK):
        return None
    if ranges:
        prefix = orjson.dumps(f"{url}/bulk/").decode()[1:-1]  # escaped, as inside a JSON string
        for form in _RANGE_FORMS:
            text = text.replace(form, form[:-6] + prefix)
    return text


def metadata_json(instances: Sequence[StoredInstance], url_of: Callable[[StoredInstance], str]) -> bytes:
    """The metadata of *instances* as a DICOM JSON array (application/dicom+json)."""
    pieces = []
    for instance in instances:
        url = url_of(instance)
        text = _spliced(instance, url)
        pieces.append(text if text is not None else orjson.dumps(metadata_of(instance, url)).decode())
    return ("[" + ",".join(pieces) + "]").encode()
