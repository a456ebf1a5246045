"""Reading values out of DICOM JSON (PS3.18 F.2) data sets, and converting to pydicom."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

JsonDataset = dict[str, Any]


def values(ds: JsonDataset, key: str) -> list[Any]:
    """The Value list of an element ([] when absent or empty)."""
    element = ds.get(key)
    if not element:
        return []
    found = element.get("Value")
    return list(found) if found else []


def first(ds: JsonDataset, key: str) -> Any:
    """The first value of an element, or None."""
    found = values(ds, key)
    return found[0] if found else None


def text(ds: JsonDataset, key: str) -> str:
    """The first value as text ('' when absent); person names give their alphabetic group."""
    value = first(ds, key)
    if value is None:
        return ""
    if isinstance(value, dict):
        return person_name_text(value)
    return str(value)


def multi_text(ds: JsonDataset, key: str) -> str:
    """All values joined by backslash, as DICOM encodes a multi-valued string."""
    return "\\".join(
        "" if v is None else (person_name_text(v) if isinstance(v, dict) else str(v)) for v in values(ds, key)
    )


def person_name_text(value: dict[str, str]) -> str:
    """A PN JSON value as its DICOM string form (groups joined by '=')."""
    groups = [value.get("Alphabetic", ""), value.get("Ideographic", ""), value.get("Phonetic", "")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def items(ds: JsonDataset, key: str) -> list[JsonDataset]:
    """The items of a sequence element."""
    return [item for item in values(ds, key) if isinstance(item, dict)]


def to_dataset(ds: JsonDataset) -> Dataset:
    """A pydicom Dataset from DICOM JSON; bulk data references become empty values."""
    return Dataset.from_json(ds, bulk_data_uri_handler=lambda _tag, _vr, _uri: b"")


def element_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two JSON elements carry the same value (a missing element equals an empty one)."""
    a_value = (a or {}).get("Value") or []
    b_value = (b or {}).get("Value") or []
    return bool(a_value == b_value)
