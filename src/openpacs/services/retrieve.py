"""RetrieveService: C-MOVE and C-GET (PS3.4 C.4.2, C.4.3) on the outbound pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openpacs.domain.errors import InvalidQuery, NotFound, PeerError, UnknownMoveDestination
from openpacs.domain.matching import MatchType, Model, parse_query
from openpacs.domain.records import Actor, StoredInstance
from openpacs.domain.tags import UNIQUE_KEYWORD, Level
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import DicomPeer, PeerAddress, SendResult
from openpacs.services.commit import GroupCommitter
from openpacs.services.nodes import NodeService
from openpacs.services.outbound import OutboundService


@dataclass(frozen=True)
class RetrieveRequest:
    """The instances a C-MOVE or C-GET names."""

    level: Level
    uids: tuple[str, ...]
    instances: list[StoredInstance]


class RetrieveService:
    """Resolves retrieve identifiers and sends instances; thread-safe."""

    def __init__(
        self,
        index: Index,
        outbound: OutboundService,
        nodes: NodeService,
        peer: DicomPeer,
        committer: GroupCommitter,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._committer = committer
        self.outbound = outbound
        self._nodes = nodes
        self._peer = peer
        self._clock = clock

    def resolve(self, identifier: dict[str, Any], model: Model) -> RetrieveRequest:
        """The instances named by a C-MOVE/C-GET identifier (unique keys, PS3.4 C.4.2.2.1)."""
        query = parse_query(identifier, model)
        keyword = UNIQUE_KEYWORD[query.level]
        cond = query.condition(keyword)
        if cond is None or cond.kind not in (MatchType.SINGLE, MatchType.UID_LIST):
            raise InvalidQuery(f"a {query.level} level retrieve needs {keyword} (single value or list)")
        uids = cond.values
        with self._index.session() as session:
            instances = session.stored_instances(query.level, uids)
        return RetrieveRequest(query.level, tuple(uids), instances)

    def destination(self, ae_title: str) -> PeerAddress:
        """The address of a C-MOVE destination (raises UnknownMoveDestination, A801)."""
        node = self._nodes.move_destination(ae_title)
        if node is None:
            raise UnknownMoveDestination(f"move destination {ae_title!r} is not a known node")
        return PeerAddress(node.ae_title, node.host, node.port)

    def move(
        self,
        request: RetrieveRequest,
        destination: PeerAddress,
        actor: Actor,
        *,
        move_originator: tuple[str, int] | None,
        progress: Callable[[str, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> SendResult:
        """C-STORE the request's instances to *destination* over one association."""
        result = SendResult(failed={i.sop_instance_uid: "not sent" for i in request.instances})
        try:
            result = self._peer.send(
                destination,
                (self.outbound.outgoing(i) for i in request.instances),
                move_originator=move_originator,
                progress=progress,
                cancelled=cancelled,
            )
        except PeerError as exc:
            result = SendResult(failed={i.sop_instance_uid: exc.reason for i in request.instances})
            raise
        finally:
            self.audit_retrieve(request, actor, "move", result, destination=str(destination))
        return result

    def audit_retrieve(
        self, request: RetrieveRequest, actor: Actor, action: str, result: SendResult, destination: str = ""
    ) -> None:
        """Record a C-MOVE or C-GET in the audit."""
        outcome = "success" if not result.failed else ("partial" if result.completed else "failure")
        record = AuditRecord(
            time=self._clock(),
            actor=actor,
            action=action,
            outcome=outcome,
            resources=[{"level": str(request.level), "uid": uid} for uid in request.uids[:100]],
            details={
                "destination": destination,
                "completed": len(result.completed),
                "warnings": len(result.warnings),
                "failed": len(result.failed),
            },
        )
        self._committer.submit_later(lambda _s, batch: batch.audit.append(record))

    def instances(self, study_uid: str, series_uid: str = "", sop_instance_uid: str = "") -> list[StoredInstance]:
        """The instances of a study, series or instance named by its UIDs (raises NotFound)."""
        if sop_instance_uid:
            level, uid = Level.IMAGE, sop_instance_uid
        elif series_uid:
            level, uid = Level.SERIES, series_uid
        else:
            level, uid = Level.STUDY, study_uid
        with self._index.session() as session:
            found = session.stored_instances(level, [uid])
        found = [
            i
            for i in found
            if i.study_instance_uid == study_uid and (not series_uid or i.series_instance_uid == series_uid)
        ]
        if not found:
            raise NotFound(f"no {str(level).lower().replace('image', 'instance')} {uid} in study {study_uid}")
        return found

    def record_read(self, actor: Actor, action: str, resources: list[dict[str, str]], details: dict[str, Any]) -> None:
        """Audit a read through DICOMweb or the API, like C-FIND and C-MOVE (in the next transaction)."""
        record = AuditRecord(self._clock(), actor, action, "success", resources[:100], details)
        self._committer.submit_later(lambda _s, batch: batch.audit.append(record))
