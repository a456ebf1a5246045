"""Query/retrieve from other PACS: C-FIND as SCU, and retrieval by C-MOVE (to us) as a job.

PS3.4 C.4.1 and C.4.2. A retrieval is a job (kind ``retrieve``, queue ``retrieve:NODE``,
at most the node's ``max_associations`` at once): the remote node sends the instances to
our AE title, our C-STORE SCP stores them as from any node (the node must be allowed to
store, and know our AE title as a move destination); the job follows the sub-operation
counts of the C-MOVE answers. A node that cannot be reached makes the job wait and try
again (backoff), like forwarding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import InvalidQuery, NotFound, PeerError
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.records import Actor, Issuer
from openpacs.domain.tags import tag_of, vr_of
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import DicomPeer, PeerAddress
from openpacs.services.jobs import Outcome, Run, Verdict

log = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def keys_from_text(pairs: dict[str, str]) -> dict[str, Any]:
    """Query keys typed as Keyword=value (an empty value asks for the attribute back)."""
    keys: dict[str, Any] = {}
    for keyword, value in pairs.items():
        try:
            tag = tag_of(keyword)
        except (KeyError, ValueError) as exc:
            raise InvalidQuery(f"{keyword!r} is not a DICOM keyword") from exc
        vr = vr_of(tag)
        if vr == "SQ":
            raise InvalidQuery(f"{keyword} is a sequence: not a query key here")
        element: dict[str, Any] = {"vr": vr}
        if value:
            element["Value"] = [{"Alphabetic": value}] if vr == "PN" else [value]
        keys[f"{tag:08X}"] = element
    return keys


class RemoteService:
    """C-FIND against a node, and retrievals from it as jobs; thread-safe."""

    def __init__(
        self,
        index: Index,
        peer: DicomPeer,
        *,
        ae_title: str,
        clock: Callable[[], datetime],
        wake: Callable[[], None],
        store: Callable[[PeerAddress, Issuer], Callable[[bytes], int]] | None = None,
        default_issuer: Issuer | None = None,
    ) -> None:
        self._index = index
        self._peer = peer
        self._ae_title = ae_title
        self._clock = clock
        self._wake = wake
        self._store = store
        self._default_issuer = default_issuer or Issuer()

    def _issuer_of(self, name: str) -> Issuer:
        with self._index.session() as session:
            node = session.node(name)
        return Issuer(node.default_issuer) if node is not None and node.default_issuer else self._default_issuer

    def _address(self, name: str) -> tuple[PeerAddress, int]:
        with self._index.session() as session:
            node = session.node(name)
        if node is None:
            raise NotFound(f"no node named {name!r}")
        return PeerAddress(node.ae_title, node.host, node.port), node.max_associations

    def find(self, node: str, level: str, keys: dict[str, str], actor: Actor) -> list[dict[str, Any]]:
        """The node's answers to a C-FIND (Study Root; Patient Root at PATIENT level)."""
        if level not in LEVELS:
            raise InvalidQuery(f"the level is one of {', '.join(LEVELS)}, not {level!r}")
        address, _ = self._address(node)
        answers = self._peer.find(address, level, keys_from_text(keys))
        now = self._clock()
        with self._index.session(write=True) as session:
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "remote-find",
                        "success",
                        [{"level": "NODE", "uid": node}],
                        {"level": level, "keys": keys, "answers": len(answers)},
                    )
                ]
            )
        return answers

    def retrieve(self, node: str, level: str, uids: list[str], actor: Actor, *, via: str = "move") -> Job:
        """Have the node send studies (series, instances) to us, by C-MOVE or C-GET, as a job."""
        if level not in ("STUDY", "SERIES", "IMAGE"):
            raise InvalidQuery("a retrieval is at STUDY, SERIES or IMAGE level")
        if via not in ("move", "get"):
            raise InvalidQuery(f"a retrieval is by 'move' (C-MOVE) or 'get' (C-GET), not {via!r}")
        if not uids:
            raise InvalidQuery("name at least one UID")
        _, slots = self._address(node)
        now = self._clock()
        job = Job(
            kind=JobKind.RETRIEVE,
            queue=f"retrieve:{node}",
            params={"node": node, "level": level, "uids": uids, "via": via},
            study_instance_uid=uids[0] if level == "STUDY" and len(uids) == 1 else "",
        )
        with self._index.session(write=True) as session:
            pk = session.jobs.add(job, slots, now)
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "remote-retrieve",
                        "success",
                        [{"level": level, "uid": u} for u in uids[:100]],
                        {"node": node, "job": pk},
                    )
                ]
            )
            found = session.jobs.job(pk)
        assert found is not None
        self._wake()
        return found

    def execute(self, run: Run) -> Outcome:
        """The ``retrieve`` executor: one C-MOVE of the job's UIDs to our AE title, or one C-GET."""
        params = run.job.params
        try:
            address, _ = self._address(params["node"])
        except NotFound as exc:
            return Outcome(Verdict.FAILED, exc.reason)

        def progress(counts: dict[str, int]) -> bool:
            run.progress.update(counts)
            return run.beat()

        uids = list(params["uids"])
        try:
            if params.get("via") == "get" and self._store is not None:
                store = self._store(address, self._issuer_of(params["node"]))
                counts = self._peer.get(address, params["level"], uids, store, progress=progress)
            else:
                counts = self._peer.move(address, params["level"], uids, self._ae_title, progress=progress)
        except PeerError as exc:
            return Outcome(Verdict.RETRY, exc.reason)
        run.progress.update(counts)
        if counts.get("failed"):
            return Outcome(Verdict.FAILED, f"{counts['failed']} sub-operations failed at {params['node']}")
        return Outcome(Verdict.DONE)

    def prefetch(self, run: Run) -> Outcome:
        """The ``prefetch`` executor: the patient's prior studies at the node (C-FIND by Patient
        ID), those we lack, newest first, filtered as the rule says, retrieved by one C-MOVE."""
        params = run.job.params
        action = params["action"]
        try:
            address, _ = self._address(action["node"])
        except NotFound as exc:
            return Outcome(Verdict.FAILED, exc.reason)
        keys = {
            "00100020": {"vr": "LO", "Value": [params["patient_id"]]},
            "0020000D": {"vr": "UI"},
            "00080020": {"vr": "DA"},
            "00080061": {"vr": "CS"},
        }
        try:
            answers = self._peer.find(address, "STUDY", keys)
        except PeerError as exc:
            return Outcome(Verdict.RETRY, exc.reason)
        wanted_modalities = {m.strip().upper() for m in str(action.get("modalities", "")).split(",") if m.strip()}
        oldest = ""
        if int(action.get("max_age_days", 0)):
            oldest = (self._clock() - timedelta(days=int(action["max_age_days"]))).strftime("%Y%m%d")
        candidates = []
        with self._index.session() as session:
            for answer in answers:
                uid = dj.text(answer, "0020000D")
                date = dj.text(answer, "00080020")
                modalities = {str(m).upper() for m in dj.values(answer, "00080061")}
                if not uid or uid == params["study"] or session.study(uid) is not None:
                    continue
                if wanted_modalities and modalities and not modalities & wanted_modalities:
                    continue
                if oldest and date and date < oldest:
                    continue
                candidates.append((date, uid))
        chosen = [uid for _, uid in sorted(candidates, reverse=True)[: int(action.get("priors", 0)) or 3]]
        run.progress["priors"] = chosen
        if not chosen:
            return Outcome(Verdict.DONE)

        def progress(counts: dict[str, int]) -> bool:
            run.progress.update(counts)
            return run.beat()

        try:
            counts = self._peer.move(address, "STUDY", chosen, self._ae_title, progress=progress)
        except PeerError as exc:
            return Outcome(Verdict.RETRY, exc.reason)
        run.progress.update(counts)
        if counts.get("failed"):
            return Outcome(Verdict.FAILED, f"{counts['failed']} sub-operations failed at {action['node']}")
        return Outcome(Verdict.DONE)
