"""The one Settings tree: defaults, a TOML file, ``OPENPACS_*`` environment variables.

Precedence, highest first: command line options, environment variables, the TOML
file named by ``--config`` or ``OPENPACS_CONFIG``, the defaults below. Every field is
documented in ``docs/configuration.md`` (a test fails when one is not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DicomSettings(BaseModel):
    """The DICOM upper layer service (PS3.8) and the storage policy of the archive."""

    max_pdu_length: int = Field(
        1_048_576,
        ge=4096,
        description="Maximum PDU length we accept (PS3.8 D.1); large PDUs are much faster.",
    )
    accept_unknown_calling_aes: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Whether calling AE titles that are not configured nodes may echo, store, "
            "find and get. 'auto': yes while the server listens on loopback only."
        ),
    )
    duplicate_policy: Literal["keep-first", "overwrite", "reject"] = Field(
        "keep-first",
        description="What a C-STORE of an already stored SOP Instance UID does.",
    )
    rejected_resend: Literal["refuse", "ignore", "restore"] = Field(
        "refuse",
        description="What a store of a rejected or soft-deleted SOP Instance UID does (IOCM).",
    )
    rejected_resend_by_code: dict[
        Literal["113001", "113037", "113038", "113039", "deleted"], Literal["refuse", "ignore", "restore"]
    ] = Field(
        default_factory=dict,
        description="rejected_resend for one rejection code (or deleted), e.g. {113001 = 'restore'}.",
    )
    max_instance_bytes: int = Field(4 * 1024**3, ge=1024, description="Largest instance accepted, in bytes.")
    max_nesting_depth: int = Field(12, ge=1, le=64, description="Deepest sequence nesting accepted in a data set.")
    bulk_data_threshold: int = Field(
        1024,
        ge=64,
        description=(
            "Binary values longer than this many bytes are left out of the header kept "
            "in the index (they stay in the stored file)."
        ),
    )
    acse_timeout: float = Field(30.0, gt=0, description="Seconds to wait for association negotiation.")
    dimse_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a DIMSE response.")
    network_timeout: float = Field(120.0, gt=0, description="Seconds of silence after which an association is aborted.")
    max_associations: int = Field(64, ge=1, description="Concurrent associations accepted.")
    check_called_ae_title: bool = Field(
        False, description="Reject associations whose Called AE Title is not ours (PS3.8 7.1.1.4)."
    )
    reuse_port: bool = Field(
        False,
        description=(
            "Set SO_REUSEPORT on the DICOM listener, so that several server processes on one "
            "machine share the port (with PostgreSQL)."
        ),
    )


class StorageSettings(BaseModel):
    """Where instance files are kept."""

    kind: Literal["filesystem"] = Field("filesystem", description="Blob store technology.")
    path: Path | None = Field(None, description="Folder of the filesystem store (default DATA_DIR/storage).")
    fsync: bool = Field(
        True,
        description="fsync each file and its folder before acknowledging. Turn off only for tests of throwaway data.",
    )
    deletion_grace_seconds: float = Field(
        600.0, ge=0, description="Seconds a superseded or orphaned file is kept before removal."
    )
    sweep_interval_seconds: float = Field(
        60.0, gt=0, description="Seconds between runs of the pending-deletion sweeper."
    )
    orphan_scan_hours: int = Field(
        24, ge=1, description="How many hours of recent storage the orphan scan looks at on start."
    )


class IdentitySettings(BaseModel):
    """Patient identifier domains (ADR 0002)."""

    default_issuer: str = Field(
        "", description="Issuer of Patient ID applied when an object carries none (namespace ID)."
    )
    default_issuer_universal_id: str = Field("", description="Universal Entity ID of the default issuer (e.g. an OID).")
    default_issuer_universal_id_type: str = Field(
        "", description="Universal Entity ID Type of the default issuer (e.g. ISO)."
    )
    person_name_case_sensitive: bool = Field(
        False, description="Person name matching in queries is case sensitive when true."
    )


class QaSettings(BaseModel):
    """Corrections (``openpacs qa``, ``/api/qa``): which attributes an administrator may edit."""

    patient_attributes: list[str] = Field(
        [
            "PatientName",
            "PatientID",
            "IssuerOfPatientID",
            "PatientBirthDate",
            "PatientBirthTime",
            "PatientSex",
            "OtherPatientNames",
            "EthnicGroup",
            "PatientComments",
        ],
        description="Keywords update-patient may change (PatientID and issuer also move the identifier).",
    )
    study_attributes: list[str] = Field(
        [
            "StudyDescription",
            "AccessionNumber",
            "ReferringPhysicianName",
            "StudyID",
            "StudyDate",
            "StudyTime",
        ],
        description="Keywords update-study may change.",
    )
    purge_after_days: float = Field(
        30.0,
        ge=0,
        description="Days a rejected or soft-deleted instance stays restorable before qa purge may remove it.",
    )
    series_attributes: list[str] = Field(
        ["SeriesDescription", "BodyPartExamined", "SeriesNumber", "Laterality", "ProtocolName"],
        description="Keywords update-series may change.",
    )


class RoutingSettings(BaseModel):
    """Routing and the job queue (issue 5)."""

    stable_after_seconds: float = Field(
        60.0, gt=0, description="A study is stable (complete) this long after its last instance."
    )
    workers: int = Field(4, ge=1, le=64, description="Job workers of this process (forwarding, retrieval).")
    retry_base_seconds: float = Field(2.0, gt=0, description="First wait before a job is tried again.")
    retry_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between tries (the wait doubles up to this)."
    )
    stow_token: str = Field("", description="Bearer token sent with STOW-RS forwarding (empty: none).")
    commitment_wait_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long a storage commitment request waits for the report on its own association;"
        " later reports come on an association the node opens to us.",
    )


class WorkflowSettings(BaseModel):
    """The radiology workflow (issue 7): worklist, MPPS, storage commitment, availability."""

    worklist_retention_days: int = Field(
        30,
        ge=0,
        description="Worklist entries leave the worklist this many days after their scheduled date, or once"
        " their step is completed or discontinued (0: only when completed or discontinued).",
    )
    mpps_forward_nodes: list[str] = Field(
        default_factory=list, description="Nodes (by name) that receive a copy of every MPPS N-CREATE and N-SET."
    )
    commitment_verify: bool = Field(
        False,
        description="After answering a storage commitment request from the index, re-read each committed"
        " instance's file in the background and check its ingest checksum (alert commitment-verify-failed).",
    )
    availability_nodes: list[str] = Field(
        default_factory=list,
        description="Nodes (by name) sent an Instance Availability Notification when a study becomes complete"
        " (stable) or when instances become unavailable (rejection, deletion).",
    )


class Hl7SenderSettings(BaseModel):
    """One sending system (an ``[[hl7.senders]]`` entry): who it is and how it is treated."""

    application: str = Field("", description="Sending application (MSH-3); empty: any.")
    facility: str = Field("", description="Sending facility (MSH-4); empty: any.")
    addresses: list[str] = Field(
        default_factory=list, description="IP addresses or networks (CIDR) it may connect from; empty: any."
    )
    ack_mode: Literal["after-store", "after-process"] = Field(
        "after-store",
        description="after-store: AA once the message is durably stored (processing errors go to the error"
        " queue); after-process: AA once applied, AE with an ERR segment naming the field when it fails.",
    )
    charset: str = Field("", description="MSH-18 value assumed for its messages without MSH-18.")
    default_issuer: str | None = Field(
        None, description="Issuer of its patient IDs with an unlisted authority (default: identity.default_issuer)."
    )
    authorities: dict[str, str] = Field(
        default_factory=dict, description="Assigning authority (PID-3.4) -> issuer, for this sender."
    )
    mapping: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description='Field mappings replacing the defaults, e.g. {accession_number = "OBR-3",'
        ' station_ae_title = ["OBR-21"]}; names in docs/hl7-interface.md.',
    )


Hl7Event = Literal["study-received", "study-complete", "patient-changes"]


class Hl7DestinationSettings(BaseModel):
    """A system notified over HL7 (an ``[[hl7.destinations]]`` entry)."""

    name: str = Field(description="Unique name (its job queue is hl7:NAME).")
    host: str = Field(description="Host name or address of its MLLP listener.")
    port: int = Field(ge=1, le=65535, description="Its MLLP port.")
    events: list[Hl7Event] = Field(
        default_factory=lambda: ["study-received", "study-complete"],  # type: ignore[arg-type]
        description="What it is told: study-received (first instance), study-complete (stable), patient-changes"
        " (an administrator's patient update, merge or change of ID: ADT A08, A40, A47).",
    )
    structure: Literal["ORM", "OMI"] = Field(
        "ORM", description="Status updates as ORM^O01 (v2.3.1) or OMI^O23 (v2.5.1)."
    )
    sending_application: str = Field("OPENPACS", description="MSH-3 of what we send.")
    sending_facility: str = Field("", description="MSH-4 of what we send.")
    receiving_application: str = Field("", description="MSH-5 of what we send.")
    receiving_facility: str = Field("", description="MSH-6 of what we send.")
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="How long to wait for each ACK.")


class Hl7Settings(BaseModel):
    """The HL7 interface (issue 6)."""

    destinations: list[Hl7DestinationSettings] = Field(
        default_factory=list, description="Systems notified over HL7 ([[hl7.destinations]])."
    )

    senders: list[Hl7SenderSettings] = Field(
        default_factory=list, description="Known sending systems, first match wins ([[hl7.senders]])."
    )
    accept_unknown_senders: bool | None = Field(
        None,
        description="Take messages from senders not listed; default: only while the listener is on loopback"
        " (hl7_host), otherwise they are refused with AR.",
    )
    process_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="How long an after-process ACK waits for the message to be applied."
    )
    retention_days: int = Field(
        90,
        ge=0,
        description="Processed, skipped and rejected messages older than this are deleted (0: kept);"
        " failed and waiting messages are kept until handled.",
    )
    reports_as_dicom: bool = Field(
        False,
        description="Also store each report received (ORU^R01) as a DICOM object in its study: Encapsulated PDF,"
        " Encapsulated CDA or Basic Text SR.",
    )
    merged_id_policy: Literal["follow", "reject"] = Field(
        "follow",
        description="A message naming a patient ID already merged into another: follow (apply it to the"
        " surviving patient) or reject (the message fails and waits in the error queue).",
    )

    max_message_bytes: int = Field(
        16 * 1024**2, ge=1024, description="Largest HL7 message accepted; a larger one is answered AR."
    )
    default_charset: str = Field(
        "",
        description="Character set of messages without MSH-18, as an MSH-18 value (8859/1, UNICODE UTF-8...);"
        " empty: UTF-8 when the bytes are valid UTF-8, else 8859/1.",
    )
    authorities: dict[str, str] = Field(
        default_factory=dict,
        description="Assigning authority (PID-3.4) -> issuer of Patient ID; an authority not listed is the"
        " site's own domain (identity.default_issuer).",
    )


class RouteSeed(BaseModel):
    """A routing rule created on start when no rule of that name exists yet."""

    name: str = Field(description="Unique name of the rule.")
    to: str = Field("", description="Node to forward to by C-STORE.")
    stow_url: str = Field("", description="DICOMweb service to forward to by STOW-RS (instead of to).")
    when: list[str] = Field(
        default_factory=list, description="Conditions: Keyword=wildcard, Keyword==exact, Keyword~=regex."
    )
    on: Literal["instance", "stable"] = Field("instance", description="Fire per instance or on study stable.")
    transfer_syntax: str = Field("", description="Send in this transfer syntax (lossless transcoding).")
    priority: int = Field(0, description="Higher first.")
    prefetch_from: str = Field("", description="Fetch the patient's prior studies from this node (instead of to).")
    priors: int = Field(3, ge=1, le=50, description="Prefetch: how many prior studies, newest first.")
    prior_modalities: str = Field("", description="Prefetch: only priors with these modalities (CT,MR).")
    prior_max_age_days: int = Field(0, ge=0, description="Prefetch: only priors at most this old (0: any).")
    commit: bool = Field(False, description="Ask the node (to) for storage commitment once a study is delivered.")
    delete_after: bool = Field(False, description="Delete here what the node committed to (needs commit).")
    lossy: str = Field(
        "", description="Send a lossy copy in this transfer syntax (JPEG-LS near-lossless or JPEG 2000)."
    )
    quality: int = Field(0, ge=0, description="Lossy: the JPEG-LS NEAR value (1-255) or JPEG 2000 ratio (2-200).")


class NodeSeed(BaseModel):
    """A DICOM node created on start when no node of that name exists yet."""

    name: str = Field(description="Unique name of the node.")
    ae_title: str = Field(description="Its AE title.")
    host: str = Field(description="Host name or address.")
    port: int = Field(ge=1, le=65535, description="TCP port of its DICOM service.")
    allow_store: bool = Field(True, description="It may send us instances (C-STORE).")
    allow_find: bool = Field(True, description="It may query (C-FIND).")
    allow_get: bool = Field(True, description="It may retrieve with C-GET and C-MOVE.")
    allow_move_destination: bool = Field(True, description="It may be the destination of a C-MOVE.")
    check_host: bool = Field(False, description="Refuse associations with its AE title from other addresses.")
    default_issuer: str = Field("", description="Issuer of Patient ID for its objects that carry none.")
    max_associations: int = Field(2, ge=1, le=64, description="Forwarding jobs to it that may run at once.")


#: the OHIF viewer release the setup command installs (npm package @ohif/app)
OHIF_VERSION = "3.13.2"


def default_viewer_dir() -> Path:
    """Where the setup command installs the OHIF viewer: a cache outside the source tree."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "openpacs" / f"ohif-{OHIF_VERSION}"


class HttpSettings(BaseModel):
    """The HTTP service: DICOMweb, the admin API, the console and the viewer."""

    access_log: bool = Field(False, description="Log every HTTP request.")
    public_url: str = Field(
        "",
        description=(
            "The URL clients reach this server at, e.g. https://pacs.example.org behind a reverse proxy; "
            "used in the URLs of DICOMweb answers. Default: taken from each request."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins of other web applications allowed to call DICOMweb and the API from a browser "
            '(e.g. ["https://viewer.example.org"]; "*" allows any origin, without credentials).'
        ),
    )
    viewer_dir: Path | None = Field(
        None,
        description=(
            "Folder of the OHIF viewer's files (its dist folder); default the cache the setup command fills, "
            "~/.cache/openpacs/ohif-VERSION."
        ),
    )
    session_hours: float = Field(12.0, gt=0, description="Hours a console session lasts after logging in.")
    max_failed_logins: int = Field(
        5, ge=1, description="Failed logins of one name from one address before it is refused for a while."
    )
    login_lockout_seconds: float = Field(300.0, gt=0, description="Seconds a name stays refused after that.")
    max_stow_bytes: int = Field(
        64 * 1024**3,
        ge=1024,
        description="Largest STOW-RS request body accepted, in bytes (streamed: never held in memory).",
    )


class Settings(BaseSettings):
    """Everything OpenPACS can be told. See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="OPENPACS_",
        env_nested_delimiter="__",
        extra="forbid",
    )
    toml_file: ClassVar[Path | None] = None

    data_dir: Path = Field(Path("openpacs-data"), description="Folder of the embedded index and files.")
    host: str = Field("127.0.0.1", description="Address every listener binds to.")
    dicom_port: int = Field(11112, ge=0, le=65535, description="DICOM (DIMSE) port.")
    http_port: int = Field(8042, ge=0, le=65535, description="HTTP port.")
    hl7_port: int = Field(2575, ge=0, le=65535, description="HL7 MLLP port (0: no HL7 listener).")
    ae_title: str = Field("OPENPACS", description="Our AE title.")
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the index (postgresql+psycopg://...); default an SQLite file DATA_DIR/index.sqlite3."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    node_name: str = Field("", description="Name of this node as holder of database leases (default host name).")
    dicom: DicomSettings = Field(default_factory=DicomSettings, description="DICOM service.")  # type: ignore[arg-type]
    storage: StorageSettings = Field(default_factory=StorageSettings, description="File storage.")  # type: ignore[arg-type]
    identity: IdentitySettings = Field(default_factory=IdentitySettings, description="Patient identity.")  # type: ignore[arg-type]
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP service.")  # type: ignore[arg-type]
    qa: QaSettings = Field(default_factory=QaSettings, description="Corrections.")  # type: ignore[arg-type]
    nodes: list[NodeSeed] = Field(default_factory=list, description="DICOM nodes seeded on start.")
    routing: RoutingSettings = Field(default_factory=RoutingSettings, description="Routing and jobs.")  # type: ignore[arg-type]
    hl7: Hl7Settings = Field(default_factory=Hl7Settings, description="The HL7 interface.")  # type: ignore[arg-type]
    routes: list[RouteSeed] = Field(default_factory=list, description="Routing rules seeded on start.")
    workflow: WorkflowSettings = Field(default_factory=WorkflowSettings, description="Radiology workflow.")  # type: ignore[arg-type]

    @field_validator("ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 16 or "\\" in value:
            raise ValueError("an AE title has 1 to 16 characters and no backslash")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        """The index URL, with the embedded SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def storage_path(self) -> Path:
        """The folder of the filesystem blob store."""
        return (self.storage.path or self.data_dir / "storage").resolve()

    @property
    def effective_node_name(self) -> str:
        """This node's name."""
        return self.node_name or os.uname().nodename


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings from a TOML file (or ``OPENPACS_CONFIG``), the environment and overrides.

    Overrides whose value is ``None`` are ignored, so that command line options that
    were not given leave the environment and the file in charge.
    """
    path = config_file or (Path(os.environ["OPENPACS_CONFIG"]) if os.environ.get("OPENPACS_CONFIG") else None)
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"configuration file not found: {path}")

    class _Settings(Settings):
        toml_file: ClassVar[Path | None] = path

    given = {key: value for key, value in overrides.items() if value is not None}
    return _Settings(**given)
