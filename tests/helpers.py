"""Helpers shared by tests: identifiers as DICOM JSON, in-process applications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from openpacs import bootstrap
from openpacs.adapters.storage.memory import MemoryBlobStore
from openpacs.domain.records import Actor, ActorType, Origin
from openpacs.ports.blobstore import BlobStore
from openpacs.settings import Settings, load_settings


def identifier(level: str, keys: dict[str, str], charset: str = "") -> dict[str, Any]:
    """A query identifier in DICOM JSON from keyword -> value (empty: universal)."""
    out: dict[str, Any] = {"00080052": {"vr": "CS", "Value": [level]}}
    if charset:
        out["00080005"] = {"vr": "CS", "Value": [charset]}
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        vr = str(dictionary_VR(tag))
        element: dict[str, Any] = {"vr": vr}
        if value:
            if vr == "PN":
                element["Value"] = [{"Alphabetic": value}]
            else:
                element["Value"] = value.split("\\")
        out[f"{tag:08X}"] = element
    return out


def settings_for(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data", database_url=database_url, **overrides)


def application(
    tmp_path: Path, database_url: str, blobs: BlobStore | None = None, **overrides: Any
) -> bootstrap.Application:
    return bootstrap.build(settings_for(tmp_path, database_url, **overrides), blobs=blobs or MemoryBlobStore())


TEST_ORIGIN = Origin(Actor(ActorType.SYSTEM, "tests"), "import", calling_ae="TESTSCU")
