"""The services the HTTP doors call, handed to them through the ASGI application's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from fastapi import Request

from openpacs.services.archive import ArchiveService
from openpacs.services.commitment_scp import CommitmentScpService
from openpacs.services.deletion import DeletionService
from openpacs.services.hl7_messages import Hl7MessageService
from openpacs.services.ingest import IngestService
from openpacs.services.jobs import JobService
from openpacs.services.migration import MigrationService
from openpacs.services.mpps import MppsService
from openpacs.services.network import NetworkService
from openpacs.services.nodes import NodeService
from openpacs.services.orders import OrderService
from openpacs.services.outbound import OutboundService, PartService
from openpacs.services.procedures import ProcedureService
from openpacs.services.query import QueryService
from openpacs.services.reading_lists import ReadingService
from openpacs.services.reconcile import ReconcileService
from openpacs.services.remote import RemoteService
from openpacs.services.rendering import RenderService
from openpacs.services.retrieve import RetrieveService
from openpacs.services.routing import RoutingService
from openpacs.services.users import UserService
from openpacs.services.workflow_rules import WorkflowRuleService
from openpacs.services.worklist import WorklistService


@dataclass(frozen=True)
class HttpSettings:
    """What the HTTP doors need to know of the configuration."""

    ae_title: str
    dicom_port: int
    cors_origins: tuple[str, ...] = ()
    viewer_path: str = ""
    version: str = ""
    max_stow_bytes: int = 64 * 1024**3
    public_url: str = ""
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpServices:
    """Services of the archive, as the HTTP doors see them."""

    settings: HttpSettings
    users: UserService
    archive: ArchiveService
    query: QueryService
    retrieve: RetrieveService
    outbound: OutboundService
    ingest: IngestService
    nodes: NodeService
    network: NetworkService
    deletion: DeletionService
    parts: PartService
    rendering: RenderService
    reconcile: ReconcileService
    jobs: JobService
    routing: RoutingService
    remote: RemoteService
    migration: MigrationService
    hl7: Hl7MessageService
    orders: OrderService
    worklist: WorklistService
    procedures: ProcedureService
    mpps: MppsService
    commitment_scp: CommitmentScpService
    workflow_rules: WorkflowRuleService
    reading: ReadingService


def services(request: Request) -> HttpServices:
    """The services of the application handling *request*."""
    return cast(HttpServices, request.app.state.services)
