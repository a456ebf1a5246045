"""Plain records exchanged between services, ports and doors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

import orjson

from openpacs.domain.tags import Level


class ActorType(StrEnum):
    """Who did something (the audit's actor types)."""

    DICOM = "dicom"  # a DICOM node, id AE@address
    HL7 = "hl7"
    USER = "user"
    CLI = "cli"  # the command line, id the OS user
    RULE = "rule"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """The actor of an operation, as recorded in the audit."""

    type: ActorType
    id: str
    address: str = ""

    @classmethod
    def dicom(cls, ae_title: str, address: str) -> Actor:
        """A DICOM node, identified as AE@address."""
        return cls(ActorType.DICOM, f"{ae_title}@{address}", address)

    @classmethod
    def system(cls, what: str) -> Actor:
        """The archive itself (start-up, housekeeping)."""
        return cls(ActorType.SYSTEM, what)

    @classmethod
    def user(cls, name: str, address: str) -> Actor:
        """A user of the HTTP doors."""
        return cls(ActorType.USER, name, address)


@dataclass(frozen=True)
class Issuer:
    """An assigning authority of identifiers (IssuerOfPatientID and its qualifiers, PS3.3 C.7.1.1)."""

    namespace: str = ""
    universal_id: str = ""
    universal_id_type: str = ""

    @property
    def is_empty(self) -> bool:
        """Whether no issuer is named at all."""
        return not (self.namespace or self.universal_id)

    def same_as(self, other: Issuer) -> bool:
        """Two issuers are the same when the parts both name agree, and they name one in common."""
        common = False
        if self.namespace and other.namespace:
            if self.namespace != other.namespace:
                return False
            common = True
        if self.universal_id and other.universal_id:
            if (self.universal_id, self.universal_id_type) != (
                other.universal_id,
                other.universal_id_type,
            ):
                return False
            common = True
        return common or (self.is_empty and other.is_empty)

    def __str__(self) -> str:
        if self.universal_id:
            return f"{self.namespace}&{self.universal_id}&{self.universal_id_type}"
        return self.namespace


@dataclass(frozen=True)
class PatientIdentifier:
    """One identifier of a patient: a value within an issuer's namespace."""

    value: str
    issuer: Issuer = field(default_factory=Issuer)
    type_code: str = ""

    def same_as(self, other: PatientIdentifier) -> bool:
        """Whether both denote the same identifier."""
        return self.value == other.value and self.issuer.same_as(other.issuer)

    def __str__(self) -> str:
        issuer = str(self.issuer)
        return f"{self.value}^^^{issuer}" if issuer else self.value


@dataclass(frozen=True)
class Origin:
    """Where an incoming object comes from, and the receive policy that applies."""

    actor: Actor
    transport: str  # "c-store", "import", "stow-rs", ...
    called_ae: str = ""
    calling_ae: str = ""
    default_issuer: Issuer = field(default_factory=Issuer)


class StoreStatus(StrEnum):
    """How a store ended."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # kept the first copy (identical content)
    DUPLICATE_DIFFERS = "duplicate-differs"  # kept the first copy; the new one's content differs
    REPLACED = "replaced"  # overwrite policy
    REJECTED = "rejected"  # reject policy: the caller reports DuplicateRejected
    REFUSED = "refused"  # refused inside the transaction (its error says why)


@dataclass(frozen=True)
class StoreOutcome:
    """The result of storing one instance."""

    status: StoreStatus
    sop_instance_uid: str
    study_instance_uid: str
    identity_conflict: bool = False
    warning: str = ""
    error: Exception | None = None


@dataclass(frozen=True)
class Node:
    """A DICOM application entity we know (PS3.8 AE), with its permissions."""

    name: str
    ae_title: str
    host: str
    port: int
    allow_store: bool = True
    allow_find: bool = True
    allow_get: bool = True
    allow_move_destination: bool = True
    check_host: bool = False
    default_issuer: str = ""
    description: str = ""
    max_associations: int = 2  # forwarding jobs to it that may run at once (issue 5)


@dataclass(frozen=True)
class BlobRef:
    """Where an instance's bytes are: a store name and an opaque key."""

    store: str
    key: str
    size: int


@dataclass(frozen=True)
class StoredInstance:
    """An instance of the index with what the outbound path needs.

    The as-received header comes as the index's JSON text and is parsed on first use:
    retrieval decides on coercion from ``level_values`` alone, and metadata answers splice
    the text, so most requests never build the header's dictionaries.
    """

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str
    blob: BlobRef
    checksum: str
    header_text: str
    patient_attrs: dict[str, Any]
    study_attrs: dict[str, Any]
    series_attrs: dict[str, Any]
    instance_number: int | None = None
    received_at: datetime | None = None
    #: the header's patient, study and series level elements (None: not recorded, read the header)
    level_values: dict[str, Any] | None = None
    #: the instance's own set: a new SOP Instance UID, references rewritten (issue 4); {}: none
    instance_attrs: dict[str, Any] = field(default_factory=dict)
    pk: int = 0  # the index's key (routing ranges)
    source_ae_title: str = ""  # the calling AE title of the association that stored it
    called_ae_title: str = ""
    hidden: str | None = None

    @cached_property
    def header(self) -> dict[str, Any]:
        """The as-received header (DICOM JSON, bulk data as byte ranges of the stored file)."""
        parsed: dict[str, Any] = orjson.loads(self.header_text)
        return parsed


@dataclass(frozen=True)
class Change:
    """A row of the change feed."""

    seq: int
    change_type: str
    level: Level
    resource: str
    time: datetime


@dataclass(frozen=True)
class Stats:
    """Counts of the archive."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
