"""The only module that knows concrete adapters: builds the application from Settings,
starts its doors and stops them (ARCHITECTURE.md section 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from openpacs.adapters.index.engine import SqlIndex
from openpacs.adapters.storage.filesystem import FilesystemBlobStore
from openpacs.dicomweb.peer import StowClient
from openpacs.dimse.commitment import CommitmentScu
from openpacs.dimse.negotiation import is_storage_sop_class
from openpacs.dimse.normalized import NormalizedScu
from openpacs.dimse.peer import DimsePeer
from openpacs.dimse.scp import DimseServices
from openpacs.dimse.server import DimseConfig, DimseServer
from openpacs.domain.addresses import is_loopback
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.hl7_orders import mapping_with
from openpacs.domain.hl7_senders import SenderDirectory, SenderPolicy
from openpacs.domain.jobs import JobKind
from openpacs.domain.orders import ProcedureRow
from openpacs.domain.records import Actor, ActorType, Issuer, Node
from openpacs.domain.rules import Action, ActionKind, Condition, Rule, RuleEvent
from openpacs.hl7.client import MllpPeer
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import IndexSession
from openpacs.ports.peers import Hl7Peer
from openpacs.services.archive import ArchiveService
from openpacs.services.commit import GroupCommitter
from openpacs.services.commitment import CommitmentService
from openpacs.services.commitment_scp import CommitmentScpService
from openpacs.services.deletion import DeletionService
from openpacs.services.derive import DerivationService
from openpacs.services.forwarding import ForwardExecutor
from openpacs.services.hl7_messages import Hl7MessageService
from openpacs.services.hl7_outbound import Hl7Destination, Hl7OutboundService
from openpacs.services.hl7_processing import Hl7Processor
from openpacs.services.importer import ImportService
from openpacs.services.ingest import IngestPolicy, IngestService
from openpacs.services.jobs import Executor, JobRunner, JobService, JobSettings
from openpacs.services.migration import MigrationService
from openpacs.services.mpps import MppsService
from openpacs.services.network import NetworkService
from openpacs.services.nodes import NodeService
from openpacs.services.notifications import NotificationService
from openpacs.services.orders import OrderService
from openpacs.services.outbound import OutboundService, PartService
from openpacs.services.procedures import ProcedureService
from openpacs.services.qa_runner import Editable
from openpacs.services.query import QueryService
from openpacs.services.reading_lists import ReadingService
from openpacs.services.rebuild import RebuildService
from openpacs.services.reconcile import ReconcileService
from openpacs.services.remote import RemoteService
from openpacs.services.rendering import RenderService
from openpacs.services.report_documents import ReportDocuments
from openpacs.services.retrieve import RetrieveService
from openpacs.services.routing import RoutingService
from openpacs.services.routing import RoutingSettings as RoutingServiceSettings
from openpacs.services.sweeper import SweeperService
from openpacs.services.users import LoginPolicy, UserService
from openpacs.services.workflow import WorkflowService
from openpacs.services.workflow_rules import WorkflowRuleService
from openpacs.services.worklist import WorklistService
from openpacs.settings import Settings, default_viewer_dir

log = logging.getLogger("openpacs")


def utcnow() -> datetime:
    """The clock of the services."""
    return datetime.now(UTC)


@dataclass
class Application:
    """Adapters and services built from Settings."""

    settings: Settings
    index: SqlIndex
    blobs: BlobStore
    committer: GroupCommitter
    ingest: IngestService
    query: QueryService
    nodes: NodeService
    outbound: OutboundService
    retrieve: RetrieveService
    archive: ArchiveService
    network: NetworkService
    importer: ImportService
    sweeper: SweeperService
    peer: DimsePeer
    users: UserService
    deletion: DeletionService
    parts: PartService
    rendering: RenderService
    reconcile: ReconcileService
    rebuild: RebuildService
    runner: JobRunner
    jobs: JobService
    routing: RoutingService
    remote: RemoteService
    migration: MigrationService
    commitments: CommitmentService
    hl7: Hl7MessageService
    hl7_processor: Hl7Processor
    orders: OrderService
    hl7_outbound: Hl7OutboundService
    worklist: WorklistService
    mpps: MppsService
    commitment_scp: CommitmentScpService
    workflow: WorkflowService
    procedures: ProcedureService
    workflow_rules: WorkflowRuleService
    notifications: NotificationService
    reading: ReadingService
    _closed: bool = field(default=False)

    def close(self) -> None:
        """Stop the writer and release the database."""
        if self._closed:
            return
        self._closed = True
        self.ingest.close()
        self.committer.close()
        self.index.close()


def build(settings: Settings, *, blobs: BlobStore | None = None, migrate: bool = True) -> Application:
    """Build adapters and services (no listener is started)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = SqlIndex(settings.effective_database_url, migrate=migrate)
    if blobs is None:
        blobs = FilesystemBlobStore(settings.storage_path, fsync=settings.storage.fsync)
    identity = settings.identity
    default_issuer = Issuer(
        identity.default_issuer, identity.default_issuer_universal_id, identity.default_issuer_universal_id_type
    )
    committer = GroupCommitter(index, clock=utcnow, grace_seconds=settings.storage.deletion_grace_seconds)
    ingest = IngestService(
        index,
        blobs,
        committer,
        IngestPolicy(
            duplicate_policy=settings.dicom.duplicate_policy,
            rejected_resend=settings.dicom.rejected_resend,
            rejected_resend_by_code={str(k): str(v) for k, v in settings.dicom.rejected_resend_by_code.items()},
            max_instance_bytes=settings.dicom.max_instance_bytes,
            max_nesting_depth=settings.dicom.max_nesting_depth,
            bulk_data_threshold=settings.dicom.bulk_data_threshold,
        ),
        utcnow,
    )
    nodes = NodeService(
        index,
        listen_host=settings.host,
        accept_unknown=settings.dicom.accept_unknown_calling_aes,
        default_issuer=default_issuer,
        clock=utcnow,
    )
    peer = DimsePeer(
        ae_title=settings.ae_title, max_pdu=settings.dicom.max_pdu_length, timeout=settings.dicom.dimse_timeout
    )
    outbound = OutboundService(blobs, ae_title=settings.ae_title, clock=utcnow)
    routing_settings = settings.routing
    stow_headers = {"Authorization": f"Bearer {routing_settings.stow_token}"} if routing_settings.stow_token else {}
    deletion = DeletionService(index, grace_seconds=settings.storage.deletion_grace_seconds, clock=utcnow)
    commitments = CommitmentService(
        index,
        CommitmentScu(
            ae_title=settings.ae_title, max_pdu=settings.dicom.max_pdu_length, timeout=settings.dicom.dimse_timeout
        ),
        deletion,
        clock=utcnow,
        wait=routing_settings.commitment_wait_seconds,
    )
    executors: dict[JobKind, Executor] = {
        JobKind.FORWARD: ForwardExecutor(
            index,
            outbound,
            peer,
            clock=utcnow,
            stow=StowClient(outbound.encode, headers=stow_headers),
            commitments=commitments,
            derive=DerivationService(index, outbound, ingest, clock=utcnow),
        )
    }
    runner = JobRunner(
        index,
        executors=executors,
        settings=JobSettings(
            workers=routing_settings.workers,
            retry_base=routing_settings.retry_base_seconds,
            retry_max=routing_settings.retry_max_seconds,
        ),
        clock=utcnow,
        holder=f"{settings.effective_node_name}:{os.getpid()}",
    )
    reconcile = ReconcileService(
        index,
        blobs,
        ingest,
        editable=Editable(
            tuple(settings.qa.patient_attributes),
            tuple(settings.qa.study_attributes),
            tuple(settings.qa.series_attributes),
        ),
        clock=utcnow,
        purge_after=timedelta(days=settings.qa.purge_after_days),
        deletion_grace=timedelta(seconds=settings.storage.deletion_grace_seconds),
    )
    importer = ImportService(ingest, default_issuer=default_issuer)
    migration = MigrationService(
        index,
        peer,
        ingest,
        importer,
        ae_title=settings.ae_title,
        default_issuer=default_issuer,
        clock=utcnow,
        wake=runner.wake,
    )
    remote = RemoteService(
        index,
        peer,
        ae_title=settings.ae_title,
        clock=utcnow,
        wake=runner.wake,
        store=migration.store_from,
        default_issuer=default_issuer,
    )
    executors[JobKind.RETRIEVE] = remote.execute
    executors[JobKind.PREFETCH] = remote.prefetch
    executors[JobKind.MIGRATE] = migration.execute
    senders = sender_directory(settings)
    orders = OrderService(index, clock=utcnow)
    hl7_outbound = Hl7OutboundService(
        index,
        hl7_peer(),
        utcnow,
        tuple(
            Hl7Destination(
                name=d.name,
                host=d.host,
                port=d.port,
                events=tuple(d.events),
                structure=d.structure,
                sending_application=d.sending_application,
                sending_facility=d.sending_facility,
                receiving_application=d.receiving_application,
                receiving_facility=d.receiving_facility,
                timeout=d.timeout_seconds,
            )
            for d in settings.hl7.destinations
        ),
        runner.wake,
    )
    executors[JobKind.HL7_SEND] = hl7_outbound.execute
    commitment_scp = CommitmentScpService(
        index,
        CommitmentScu(
            ae_title=settings.ae_title, max_pdu=settings.dicom.max_pdu_length, timeout=settings.dicom.dimse_timeout
        ),
        clock=utcnow,
        is_storage_class=is_storage_sop_class,
        wake=runner.wake,
        blobs=blobs,
        verify=settings.workflow.commitment_verify,
    )
    executors[JobKind.COMMITMENT_REPORT] = commitment_scp.execute
    executors[JobKind.COMMITMENT_VERIFY] = commitment_scp.verify
    notifications = NotificationService(
        index,
        NormalizedScu(
            ae_title=settings.ae_title, max_pdu=settings.dicom.max_pdu_length, timeout=settings.dicom.dimse_timeout
        ),
        clock=utcnow,
        ae_title=settings.ae_title,
        availability_nodes=settings.workflow.availability_nodes,
        mpps_nodes=settings.workflow.mpps_forward_nodes,
        wake=runner.wake,
    )
    executors[JobKind.NOTIFY] = notifications.execute
    workflow = WorkflowService(index, clock=utcnow)
    workflow_rules = WorkflowRuleService(index, hl7_outbound, clock=utcnow, wake=runner.wake)

    def on_workflow_event(session: IndexSession, event: str, study_uid: str, procedures: list[ProcedureRow]) -> None:
        if event == "study-stable":
            workflow_rules.on_stable(session, study_uid, procedures)

    workflow.on_event = on_workflow_event
    return Application(
        settings=settings,
        index=index,
        blobs=blobs,
        committer=committer,
        ingest=ingest,
        query=QueryService(
            index,
            committer,
            ae_title=settings.ae_title,
            fold_names=not identity.person_name_case_sensitive,
            clock=utcnow,
        ),
        nodes=nodes,
        outbound=outbound,
        retrieve=RetrieveService(index, outbound, nodes, peer, committer, clock=utcnow),
        archive=ArchiveService(index, clock=utcnow),
        network=NetworkService(nodes, peer, ingest),
        importer=importer,
        sweeper=SweeperService(index, blobs, grace_seconds=settings.storage.deletion_grace_seconds, clock=utcnow),
        peer=peer,
        users=UserService(
            index,
            clock=utcnow,
            policy=LoginPolicy(
                max_failures=settings.http.max_failed_logins,
                lockout_seconds=settings.http.login_lockout_seconds,
                session_hours=settings.http.session_hours,
            ),
        ),
        deletion=deletion,
        parts=PartService(outbound, blobs),
        rendering=RenderService(outbound),
        reconcile=reconcile,
        rebuild=RebuildService(index, blobs, ingest, clock=utcnow),
        runner=runner,
        jobs=JobService(index, clock=utcnow, wake=runner.wake),
        routing=RoutingService(
            index,
            settings=RoutingServiceSettings(stable_after=timedelta(seconds=routing_settings.stable_after_seconds)),
            clock=utcnow,
            wake=runner.wake,
        ),
        remote=remote,
        migration=migration,
        commitments=commitments,
        hl7=Hl7MessageService(
            index,
            clock=utcnow,
            default_charset=settings.hl7.default_charset,
            senders=senders,
            process_timeout=settings.hl7.process_timeout_seconds,
            committer=committer,
        ),
        hl7_processor=Hl7Processor(
            index,
            reconcile,
            orders,
            clock=utcnow,
            default_issuer=identity.default_issuer,
            authorities=dict(settings.hl7.authorities),
            default_charset=settings.hl7.default_charset,
            senders=senders,
            merged_id_policy=settings.hl7.merged_id_policy,
        ),
        orders=orders,
        hl7_outbound=hl7_outbound,
        worklist=WorklistService(index, orders, clock=utcnow, retention_days=settings.workflow.worklist_retention_days),
        mpps=MppsService(index, clock=utcnow, forward=notifications.forward_mpps),
        commitment_scp=commitment_scp,
        workflow=workflow,
        procedures=ProcedureService(index, clock=utcnow),
        workflow_rules=workflow_rules,
        notifications=notifications,
        reading=ReadingService(index, clock=utcnow),
    )


def hl7_peer() -> Hl7Peer:
    """The MLLP sender (the outbound notifications, ``openpacs hl7 send``)."""
    return MllpPeer()


def sender_directory(settings: Settings) -> SenderDirectory:
    """The ``[[hl7.senders]]`` of the configuration (a bad field mapping stops the start)."""
    policies = []
    for n, entry in enumerate(settings.hl7.senders, start=1):
        try:
            mapping = mapping_with(entry.mapping)
        except ValueError as exc:
            raise ValueError(f"hl7.senders[{n}].mapping: {exc}") from exc
        policies.append(
            SenderPolicy(
                application=entry.application,
                facility=entry.facility,
                addresses=tuple(entry.addresses),
                ack_mode=entry.ack_mode,
                charset=entry.charset,
                default_issuer=entry.default_issuer,
                authorities=dict(entry.authorities),
                mapping=mapping,
            )
        )
    accept = settings.hl7.accept_unknown_senders
    return SenderDirectory(tuple(policies), is_loopback(settings.host) if accept is None else accept)


def seed_routes(app: Application) -> None:
    """Create the routing rules of the configuration file that the database does not have yet."""
    rules = []
    for seed in app.settings.routes:
        try:
            if seed.prefetch_from:
                action = Action(
                    ActionKind.PREFETCH,
                    node=seed.prefetch_from,
                    priors=seed.priors,
                    modalities=seed.prior_modalities,
                    max_age_days=seed.prior_max_age_days,
                )
            elif seed.stow_url:
                action = Action(ActionKind.STOW, url=seed.stow_url, transfer_syntax=seed.transfer_syntax)
            else:
                action = Action(
                    ActionKind.FORWARD,
                    node=seed.to,
                    transfer_syntax=seed.transfer_syntax,
                    commit=seed.commit,
                    delete_after=seed.delete_after,
                    lossy=seed.lossy,
                    quality=seed.quality,
                )
            conditions = [Condition.parse(text) for text in seed.when]
        except OpenPacsError as exc:
            log.error("routing rule %s of the configuration is not usable: %s", seed.name, exc.reason)
            continue
        rules.append(
            Rule(seed.name, RuleEvent(seed.on), conditions, [action], priority=seed.priority, source="configuration")
        )
    if rules:
        app.routing.seed(rules, Actor(ActorType.SYSTEM, "configuration"))


class LeasedDuty:
    """A singleton duty (ARCHITECTURE.md section 5): a loop that runs *work* only while this
    process holds the database lease *lease*; *work* returns True while there is more to do."""

    def __init__(self, app: Application, lease: str, work: Callable[[], bool], interval: float = 0.25) -> None:
        self._app = app
        self._lease = lease
        self._work = work
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=lease, daemon=True)
        self._holder = f"{app.settings.effective_node_name}:{id(self)}"

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._app.index.release_lease(self._lease, self._holder)

    def _run(self) -> None:
        # the lease (30 s) is renewed every 10 s, not on every turn: on SQLite a renewal is a write
        held, renew_at = False, 0.0
        while not self._stop.is_set():
            try:
                if not held or time.monotonic() >= renew_at:
                    held = self._app.index.try_lease(self._lease, self._holder, ttl_seconds=30)
                    renew_at = time.monotonic() + 10
                if held:
                    while self._work() and not self._stop.is_set():
                        pass
            except Exception:
                held = False
                log.exception("%s failed", self._lease)
            self._wake.wait(self._interval)
            self._wake.clear()


def change_feed_duty(app: Application) -> LeasedDuty:
    """The change-feed listeners and the stability timer (the job workers run in every process)."""

    def dispatch() -> bool:
        app.routing.mark_stable()
        routed = app.routing.consume()
        workflow = app.workflow.consume() + app.workflow_rules.consume() + app.notifications.consume()
        return bool(app.hl7_outbound.consume() + workflow + routed)

    return LeasedDuty(app, "change-feed", dispatch)


def hl7_duty(app: Application) -> LeasedDuty:
    """The one consumer that applies stored HL7 messages, in arrival order; it also deletes
    handled messages past their retention, once an hour."""
    purged_at = [0.0]

    def turn() -> bool:
        busy = app.hl7_processor.process_pending() > 0
        if not busy and time.monotonic() - purged_at[0] > 3600:
            purged_at[0] = time.monotonic()
            removed = app.hl7.purge(app.settings.hl7.retention_days)
            if removed:
                log.info("HL7: %d messages past their retention deleted", removed)
        return busy

    duty = LeasedDuty(app, "hl7", turn, interval=1.0)
    app.hl7.notify = duty.wake  # a message stored by this process is applied at once
    app.hl7_processor.busy = app.hl7.busy
    if app.settings.hl7.reports_as_dicom:
        app.hl7_processor.documents = ReportDocuments(app.index, app.ingest, clock=utcnow)
    app.hl7_processor.on_processed = lambda pk, outcome: app.hl7.processed(
        pk, outcome.status, outcome.note, outcome.location
    )
    return duty


def seed_nodes(app: Application) -> None:
    """Create the nodes of the configuration file that the database does not have yet."""
    seeds = [
        Node(
            name=n.name,
            ae_title=n.ae_title,
            host=n.host,
            port=n.port,
            allow_store=n.allow_store,
            allow_find=n.allow_find,
            allow_get=n.allow_get,
            allow_move_destination=n.allow_move_destination,
            check_host=n.check_host,
            default_issuer=n.default_issuer,
            max_associations=n.max_associations,
        )
        for n in app.settings.nodes
    ]
    if seeds:
        app.nodes.seed(seeds, Actor(ActorType.SYSTEM, "configuration"))


class Housekeeping:
    """Singleton duties held by a database lease: the storage sweeper."""

    LEASE = "storage-sweeper"

    def __init__(self, app: Application) -> None:
        self._app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._holder = f"{app.settings.effective_node_name}:{id(self)}"

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and give the lease back."""
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._app.index.release_lease(self.LEASE, self._holder)

    def _run(self) -> None:
        storage = self._app.settings.storage
        first = True
        while not self._stop.is_set():
            try:
                if self._app.index.try_lease(self.LEASE, self._holder, ttl_seconds=3 * storage.sweep_interval_seconds):
                    report = self._app.sweeper.sweep(storage.orphan_scan_hours if first else 1)
                    first = False
                    if report.deleted_pending or report.deleted_orphans:
                        log.info(
                            "storage sweep: %d pending deletions done, %d orphans removed",
                            report.deleted_pending,
                            report.deleted_orphans,
                        )
            except Exception:
                log.exception("storage sweep failed")
            self._stop.wait(storage.sweep_interval_seconds)


def dimse_server(app: Application) -> DimseServer:
    """The DICOM listener of an application."""
    settings = app.settings
    return DimseServer(
        DimseConfig(
            host=settings.host,
            port=settings.dicom_port,
            ae_title=settings.ae_title,
            max_pdu=settings.dicom.max_pdu_length,
            acse_timeout=settings.dicom.acse_timeout,
            network_timeout=settings.dicom.network_timeout,
            max_associations=settings.dicom.max_associations,
            check_called_ae=settings.dicom.check_called_ae_title,
            reuse_port=settings.dicom.reuse_port,
        ),
        DimseServices(
            nodes=app.nodes,
            ingest=app.ingest,
            query=app.query,
            retrieve=app.retrieve,
            commitments=app.commitments,
            worklist=app.worklist,
            mpps=app.mpps,
            commitment_scp=app.commitment_scp,
        ),
    )


def http_app(app: Application, dicom_port: int) -> Any:
    """The ASGI application of the HTTP service."""
    from openpacs import __version__
    from openpacs.asgi import create_app
    from openpacs.http.context import HttpServices, HttpSettings

    settings = app.settings
    return create_app(
        HttpServices(
            settings=HttpSettings(
                ae_title=settings.ae_title,
                dicom_port=dicom_port,
                cors_origins=tuple(settings.http.cors_origins),
                viewer_path=str(settings.http.viewer_dir or default_viewer_dir()),
                version=__version__,
                max_stow_bytes=settings.http.max_stow_bytes,
                public_url=settings.http.public_url,
                details=dict(describe(app)),
            ),
            users=app.users,
            archive=app.archive,
            query=app.query,
            retrieve=app.retrieve,
            outbound=app.outbound,
            ingest=app.ingest,
            nodes=app.nodes,
            network=app.network,
            deletion=app.deletion,
            parts=app.parts,
            rendering=app.rendering,
            reconcile=app.reconcile,
            jobs=app.jobs,
            routing=app.routing,
            remote=app.remote,
            migration=app.migration,
            hl7=app.hl7,
            orders=app.orders,
            worklist=app.worklist,
            procedures=app.procedures,
            mpps=app.mpps,
            commitment_scp=app.commitment_scp,
            workflow_rules=app.workflow_rules,
            reading=app.reading,
        )
    )


def first_start(app: Application) -> None:
    """On the very first start (no account yet), create 'admin' and print its one-time password once."""
    password = app.users.ensure_initial_admin()
    if password is not None:
        banner = (
            "\n"
            "  First start: an administrator account was created.\n"
            "    user name: admin\n"
            f"    password:  {password}\n"
            "  This password is shown once and must be changed at the first login.\n"
        )
        # printed to the console, never to the log (ARCHITECTURE: secrets never reach the logs)
        print(banner, flush=True)


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT."""
    import gc

    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn without its own signal handling: ours stops every door in order."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = build(settings)
    seed_nodes(app)
    first_start(app)
    # the ingest path allocates many short-lived dicts: collect young objects less often,
    # and keep what start-up built out of the collector's way
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    dimse = dimse_server(app)
    dimse.start()
    housekeeping = Housekeeping(app)
    housekeeping.start()
    seed_routes(app)
    dispatcher = change_feed_duty(app)
    dispatcher.start()
    hl7_consumer = hl7_duty(app)
    hl7_consumer.start()
    app.runner.start()
    server = _Server(
        uvicorn.Config(
            http_app(app, dimse.port),
            host=settings.host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=settings.http.access_log,
            lifespan="off",
        )
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            server.should_exit = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop, signum)
        mllp = None
        if settings.hl7_port:
            from openpacs.hl7.server import MllpServer

            mllp = MllpServer(
                app.hl7.receive,
                app.hl7.too_large,
                host=settings.host,
                port=settings.hl7_port,
                max_message_bytes=settings.hl7.max_message_bytes,
            )
            await mllp.start()
        log.info("HTTP service on http://%s:%d (health at /health)", settings.host, settings.http_port)
        try:
            await server.serve()
        finally:
            if mllp is not None:
                await mllp.stop()

    try:
        import uvloop

        # uvloop's transports write large bodies (WADO-RS) without copying them into a buffer
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    finally:
        dimse.stop()
        dispatcher.stop()
        hl7_consumer.stop()
        app.runner.stop()
        housekeeping.stop()
        app.close()
        log.info("stopped")


def configure_logging(level: str) -> None:
    """Log lines with time, level and source."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pynetdicom", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def describe(app: Application) -> dict[str, Any]:
    """What the CLI prints about where the data is."""
    return {
        "database": app.index.dialect,
        "data_dir": str(app.settings.data_dir.resolve()),
        "storage": str(app.settings.storage_path),
    }


def upgrade_database(settings: Settings) -> str | None:
    """Apply pending migrations; return the revision reached (``openpacs db upgrade``)."""
    from openpacs.adapters.index.engine import create_index_engine, schema_revision, upgrade_schema

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_index_engine(settings.effective_database_url)
    try:
        upgrade_schema(engine)
        return schema_revision(engine)
    finally:
        engine.dispose()
