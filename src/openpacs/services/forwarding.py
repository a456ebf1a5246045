"""Forwarding jobs: the instances of one study to one destination, in instance order, over
one association (C-STORE, PS3.4 B.2) or in STOW-RS requests (PS3.18 10.5).

A job covers a range of the study's instance keys (``domain/jobs.py``). It sends what is
left of it from ``progress.position``, so that a retry after the destination came back
does not start over; delivery is at least once. The answers a destination gives to an
instance it already holds (success, a warning, 0x0111 Duplicate SOP Instance) count as
delivered; an instance it refuses for itself (a poison instance) is parked with its
status and the reason, an alert is raised, and the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from openpacs.domain import transfer_syntaxes as tsx
from openpacs.domain.errors import CannotDerive, NoPixelData, PeerError
from openpacs.domain.records import Actor, ActorType, Node, StoredInstance
from openpacs.domain.rules import Action, ActionKind, Rule, RuleEvent
from openpacs.domain.tags import Level
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import DicomPeer, OutgoingInstance, PeerAddress
from openpacs.services.commitment import CommitmentService
from openpacs.services.derive import DerivationService
from openpacs.services.jobs import Outcome, Run, Verdict
from openpacs.services.outbound import OutboundService
from openpacs.services.routing import conditions_of, values_of

log = logging.getLogger(__name__)

#: answers that say the destination holds the instance already
_DUPLICATE = ("status 0x0111",)


class ForwardExecutor:
    """Runs ``forward`` jobs; one per worker at a time, thread-safe."""

    def __init__(
        self,
        index: Index,
        outbound: OutboundService,
        peer: DicomPeer,
        *,
        clock: Callable[[], datetime],
        stow: Callable[[str, list[StoredInstance], tuple[str, ...]], dict[str, str]] | None = None,
        commitments: CommitmentService | None = None,
        derive: DerivationService | None = None,
    ) -> None:
        self._index = index
        self._outbound = outbound
        self._peer = peer
        self._clock = clock
        self._stow = stow
        self._commitments = commitments
        self._derive = derive

    def __call__(self, run: Run) -> Outcome:
        job = run.job
        assert job.pk is not None
        action = Action.from_json(job.params["action"])
        with self._index.session() as session:
            after, upto = session.jobs.range_of(job.pk)
            extra = [int(p) for p in job.params.get("extra_pks", [])]
            instances = session.stored_instances(
                Level.STUDY, [job.study_instance_uid], hidden=True, pk_range=(after, upto or after, extra)
            )
            node = session.node(action.node) if action.kind is ActionKind.FORWARD else None
        rule = Rule("job", RuleEvent(job.params.get("event", "instance")), conditions_of(job.params["conditions"]), [])
        keywords = rule.keywords()
        # visible instances and rejection notes, in instance order
        todo = [
            i
            for i in instances
            if (i.hidden is None or i.hidden == "rejection-note") and rule.matches(values_of(i, keywords))
        ]
        progress = run.progress
        progress.setdefault("position", 0)
        progress["total"] = len(todo)
        for name in ("sent", "warnings", "duplicates", "parked"):
            progress.setdefault(name, 0)
        if action.kind is ActionKind.FORWARD and node is None:
            return Outcome(Verdict.FAILED, f"node {action.node!r} no longer exists")
        accepted = (action.transfer_syntax,) if action.transfer_syntax else None
        start = int(progress["position"])
        remaining = todo[start:]
        if not remaining:
            return self._commit(run, action, node, todo)
        if not run.beat():
            return Outcome(Verdict.RETRY, "paused or stopped")
        try:
            if action.kind is ActionKind.FORWARD:
                assert node is not None
                address = PeerAddress(node.ae_title, node.host, node.port)
                outgoing = self._outgoing_all(remaining, action, accepted, run)
                sent = [o.sop_instance_uid for o in outgoing]
                failures, interrupted, attempted = self._send(address, outgoing, run)
            else:
                if self._stow is None:
                    return Outcome(Verdict.FAILED, "STOW-RS forwarding is not available")
                sent = [i.sop_instance_uid for i in remaining]
                failures, interrupted, attempted = self._stow_all(action.url, remaining, accepted or (), run)
        except PeerError as exc:
            return Outcome(Verdict.RETRY, exc.reason)
        except _Stopped:
            return Outcome(Verdict.RETRY, "paused or stopped")
        parked = [(uid, _status(reason), reason) for uid, reason in failures.items() if reason != interrupted]
        now = self._clock()
        delivered = [uid for uid in sent[:attempted] if uid not in failures]
        if delivered:
            # the copies that left the archive: an undo of a correction lists them (provenance)
            record = AuditRecord(
                now,
                Actor(ActorType.RULE, str(job.params.get("rule") or "manual")),
                "forward-sent",
                "success" if not parked else "partial",
                [{"level": "STUDY", "uid": job.study_instance_uid}]
                + [{"level": "IMAGE", "uid": uid} for uid in delivered[:100]],
                {"destination": job.queue, "job": job.pk, "instances": len(delivered)},
            )
            with self._index.session(write=True) as session:
                session.add_audit([record])
        if parked:
            with self._index.session(write=True) as session:
                session.jobs.park(job.pk, parked, now)
                session.jobs.add_alert(
                    "instance-parked",
                    f"{len(parked)} instances of study {job.study_instance_uid} refused by {job.queue}: {parked[0][2]}",
                    {"job": job.pk, "study": job.study_instance_uid, "instances": [p[0] for p in parked[:100]]},
                    now,
                )
        progress["parked"] += len(parked)
        progress["position"] = start + attempted
        run.beat()
        if interrupted or progress["position"] < len(todo):
            return Outcome(Verdict.RETRY, interrupted or "paused or stopped", attempted > 0)
        return self._commit(run, action, node, todo)

    def _commit(self, run: Run, action: Action, node: Node | None, todo: list[StoredInstance]) -> Outcome:
        """Once the study is delivered: ask the node for storage commitment if the rule says so
        (once per job: a retry after an unreachable node asks again)."""
        if not action.commit or node is None or self._commitments is None or run.progress.get("commitment"):
            return Outcome(Verdict.DONE)
        assert run.job.pk is not None
        with self._index.session() as session:
            parked = {p.sop_instance_uid for p in session.jobs.parked(run.job.pk)}
        if action.lossy and self._derive is not None:
            # the node holds the lossy copies: it commits to those
            todo = [self._derive.find(i, action.lossy, action.quality) or i for i in todo]
        refs = [(i.sop_class_uid, i.sop_instance_uid) for i in todo if i.sop_instance_uid not in parked]
        if not refs:
            return Outcome(Verdict.DONE)
        try:
            run.progress["commitment"] = self._commitments.request(
                node, refs, job=run.job.pk, study=run.job.study_instance_uid, delete_after=action.delete_after
            )
        except PeerError as exc:
            return Outcome(Verdict.RETRY, f"storage commitment: {exc.reason}")
        run.beat()
        return Outcome(Verdict.DONE)

    def _outgoing_all(
        self, todo: list[StoredInstance], action: Action, accepted: tuple[str, ...] | None, run: Run
    ) -> list[OutgoingInstance]:
        """What goes out for each instance: the instance itself, or with a lossy rule its lossy
        copy (made now if need be: the job keeps its lease while it compresses)."""
        if not action.lossy or self._derive is None:
            return [self._outgoing(i, accepted) for i in todo]
        out = []
        for instance in todo:
            out.append(self._lossy_outgoing(instance, action))
            if not run.beat():
                raise _Stopped()
        return out

    def _lossy_outgoing(self, instance: StoredInstance, action: Action) -> OutgoingInstance:
        assert self._derive is not None
        try:
            copy = self._derive.lossy(instance, action.lossy, action.quality)
        except NoPixelData:
            return self._outbound.outgoing(instance)  # a report or a presentation state goes as it is
        except CannotDerive as exc:
            reason = exc.reason

            def refuse(accepted: tuple[str, ...]) -> tuple[str, bytes | memoryview]:
                raise CannotDerive(reason)  # parked with the reason, the rest goes on

            return OutgoingInstance(
                instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax_uid, refuse
            )
        return self._outbound.outgoing(copy)

    def _send(self, peer: PeerAddress, outgoing: list[OutgoingInstance], run: Run) -> tuple[dict[str, str], str, int]:
        """C-STORE over one association, in order: (refusals, why it ended early or '', answered)."""
        progress = run.progress
        going = [True]

        def answered(uid: str, outcome: int) -> None:
            progress["position"] = progress.get("position", 0) + 1
            if outcome == 0:
                progress["sent"] += 1
            elif outcome == 1:
                progress["sent"] += 1
                progress["warnings"] += 1
            going[0] = run.beat()  # time-throttled: at most one index write a second

        start = int(progress["position"])
        result = self._peer.send(peer, outgoing, progress=answered, cancelled=lambda: not going[0])
        progress["position"] = start  # the caller sets where it stopped
        failures: dict[str, str] = {}
        interrupted = ""
        for uid, reason in result.failed.items():
            if reason.startswith(_DUPLICATE):
                progress["duplicates"] += 1
                progress["sent"] += 1
            elif reason.startswith("association with"):
                interrupted = reason
                failures[uid] = reason
            else:
                failures[uid] = reason
        uids = [o.sop_instance_uid for o in outgoing]
        attempted = _attempted(uids, failures, interrupted) if interrupted else result.attempted
        return failures, interrupted, attempted

    def _stow_all(
        self, url: str, todo: list[StoredInstance], accepted: tuple[str, ...], run: Run
    ) -> tuple[dict[str, str], str, int]:
        """STOW-RS in batches of 50; a batch the server cannot take raises (the job retries)."""
        assert self._stow is not None
        failures: dict[str, str] = {}
        done = 0
        for first in range(0, len(todo), 50):
            if not run.beat():
                break
            batch = todo[first : first + 50]
            try:
                refused = self._stow(url, batch, accepted)
            except PeerError as exc:
                return failures, exc.reason, done
            failures.update(refused)
            run.progress["sent"] += len(batch) - len(refused)
            done += len(batch)
        return failures, "", done

    def _outgoing(self, instance: StoredInstance, accepted: tuple[str, ...] | None) -> OutgoingInstance:
        if accepted is None:
            return self._outbound.outgoing(instance)
        wanted = accepted
        # the rule's syntax is offered with the stored one as a fallback only when it is lossless
        syntax = wanted[0] if tsx.choose(instance.transfer_syntax_uid, wanted) else instance.transfer_syntax_uid
        return OutgoingInstance(
            sop_class_uid=instance.sop_class_uid,
            sop_instance_uid=instance.sop_instance_uid,
            transfer_syntax_uid=syntax,
            data=lambda offered: self._outbound.encode(instance, tuple(s for s in offered if s in wanted) or offered),
        )


def _attempted(uids: list[str], failures: dict[str, str], interrupted: str) -> int:
    """How many of the chunk were answered before the association ended."""
    for n, uid in enumerate(uids):
        if failures.get(uid) == interrupted:
            return n
    return len(uids)


class _Stopped(Exception):
    """The job was paused or cancelled, or the worker stops."""


def _status(reason: str) -> str:
    return reason.split(":", maxsplit=1)[0].removeprefix("status ")[:16]
