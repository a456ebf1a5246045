"""Migration from an old archive: ``openpacs migrate from-node`` and ``from-folder``.

A migration is one resumable job (kind ``migrate``) that goes through three phases,
recording where it is in its progress and each study in ``migration_item``:

1. list: the studies of the source. From a node, by C-FIND at STUDY level (PS3.4 C.4.1),
   day by day over a date range (a large archive answers a whole range badly); from a
   folder, by walking it in a stable order.
2. transfer: study by study, by C-MOVE to our AE title (PS3.4 C.4.2) or by C-GET
   (PS3.4 C.4.3), or by importing the folder's files through the ingest service, at most
   ``rate`` instances a second, and only inside the allowed time windows: outside them
   the job waits (pending) until the next window opens. A restart, a pause or a lost
   node resumes from the first study not yet transferred; studies the archive already
   holds in full are not asked for again.
3. verify: each study is counted there (C-FIND NumberOfStudyRelatedSeries/Instances,
   or the folder's files) and here; a study whose counts differ is a mismatch, and the
   instances missing here are listed (an IMAGE-level C-FIND of the study, or the
   folder's files).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import InvalidQuery, NotFound, OpenPacsError, PeerError
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.migration import ItemState, MigrationItem, Phase
from openpacs.domain.records import Actor, Issuer, Origin, StoreStatus
from openpacs.domain.windows import Windows
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import DicomPeer, PeerAddress
from openpacs.services.importer import ImportService
from openpacs.services.ingest import IngestService
from openpacs.services.jobs import Outcome, Run, Verdict
from openpacs.services.network import iter_files

log = logging.getLogger(__name__)

_BATCH = 100
_MISSING_LISTED = 100
_STUDY_COUNTS: dict[str, dict[str, Any]] = {
    "0020000D": {"vr": "UI"},
    "00100020": {"vr": "LO"},
    "00080020": {"vr": "DA"},
    "00201206": {"vr": "IS"},
    "00201208": {"vr": "IS"},
}


def _date(text: str, what: str) -> str:
    if not text:
        return ""
    try:
        return datetime.strptime(text.replace("-", ""), "%Y%m%d").strftime("%Y%m%d")
    except ValueError:
        raise InvalidQuery(f"{what} is a date, YYYYMMDD or YYYY-MM-DD, not {text!r}") from None


def _int(answer: dict[str, Any], tag: str) -> int | None:
    text = dj.text(answer, tag)
    try:
        return int(text) if text else None
    except ValueError:
        return None


class MigrationService:
    """Starts migrations, runs them (the ``migrate`` executor) and reports on them; thread-safe."""

    def __init__(
        self,
        index: Index,
        peer: DicomPeer,
        ingest: IngestService,
        importer: ImportService,
        *,
        ae_title: str,
        default_issuer: Issuer,
        clock: Callable[[], datetime],
        wake: Callable[[], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._index = index
        self._peer = peer
        self._ingest = ingest
        self._importer = importer
        self._ae_title = ae_title
        self._default_issuer = default_issuer
        self._clock = clock
        self._wake = wake
        self._sleep = sleep

    # -- starting ---------------------------------------------------------------------------

    def from_node(
        self,
        node: str,
        actor: Actor,
        *,
        since: str = "",
        until: str = "",
        via: str = "move",
        rate: float = 0.0,
        windows: list[str] | None = None,
        priority: int = -10,
    ) -> Job:
        """Migrate a node's studies (of a date range, or all) into the archive, as a job."""
        if via not in ("move", "get"):
            raise InvalidQuery(f"a migration retrieves by 'move' (C-MOVE) or 'get' (C-GET), not {via!r}")
        first, last = _date(since, "--since"), _date(until, "--until")
        if first and last and first > last:
            raise InvalidQuery(f"the date range ends ({last}) before it starts ({first})")
        with self._index.session() as session:
            if session.node(node) is None:
                raise NotFound(f"no node named {node!r}")
        params = {"source": "node", "node": node, "since": first, "until": last, "via": via}
        return self._start(params, f"migrate:{node}", actor, rate, windows or [], priority)

    def from_folder(
        self, path: str, actor: Actor, *, rate: float = 0.0, windows: list[str] | None = None, priority: int = -10
    ) -> Job:
        """Import a folder tree (as the server sees it) into the archive, as a job."""
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidQuery(f"{path!r} is not a folder the server can read")
        params = {"source": "folder", "path": str(folder)}
        return self._start(params, f"migrate:folder:{folder}", actor, rate, windows or [], priority)

    def _start(
        self, params: dict[str, Any], queue: str, actor: Actor, rate: float, windows: list[str], priority: int
    ) -> Job:
        if rate < 0:
            raise InvalidQuery("the rate is a number of instances a second (0: as fast as possible)")
        parsed = Windows.parse(windows)
        job = Job(
            kind=JobKind.MIGRATE,
            queue=queue,
            params={**params, "rate": rate, "windows": parsed.texts()},
            priority=priority,
            progress={"phase": str(Phase.LIST)},
        )
        now = self._clock()
        with self._index.session(write=True) as session:
            pk = session.jobs.add(job, 1, now)
            session.add_audit(
                [AuditRecord(now, actor, "migrate", "success", [{"level": "JOB", "uid": str(pk)}], dict(job.params))]
            )
            found = session.jobs.job(pk)
        assert found is not None
        self._wake()
        return found

    # -- reporting --------------------------------------------------------------------------

    def report(self, pk: int, *, states: list[str] | None = None, limit: int = 1000) -> dict[str, Any]:
        """The job, the studies per state, the instances there and here, and the studies asked for."""
        wanted = [s for s in (states or []) if s]
        for state in wanted:
            if state not in {str(s) for s in ItemState}:
                raise InvalidQuery(f"a study's state is one of {', '.join(ItemState)}, not {state!r}")
        with self._index.session() as session:
            job = session.jobs.job(pk)
            if job is None or job.kind is not JobKind.MIGRATE:
                raise NotFound(f"no migration job {pk}")
            counts = session.migration.item_counts(pk)
            items: list[MigrationItem] = []
            after = 0
            while len(items) < limit:
                batch = session.migration.items(pk, wanted, after, min(_BATCH * 10, limit - len(items)))
                if not batch:
                    break
                items.extend(batch)
                after = batch[-1].pk or after
        return {"job": job.to_json(), "counts": counts, "studies": [i.to_json() for i in items]}

    # -- running ----------------------------------------------------------------------------

    def execute(self, run: Run) -> Outcome:
        """The ``migrate`` executor."""
        params = run.job.params
        windows = Windows.parse(list(params.get("windows", [])))
        try:
            if params.get("source") == "folder":
                return self._run_folder(run, windows)
            return self._run_node(run, windows)
        except _Wait as wait:
            run.progress["status"] = f"waiting: outside the allowed windows ({', '.join(windows.texts())})"
            run.progress["waiting_until"] = wait.until.isoformat()
            return Outcome(Verdict.WAIT, not_before=wait.until)
        except _Stop:
            return Outcome(Verdict.RETRY, "paused or stopped")

    def _gate(self, run: Run, windows: Windows) -> None:
        """Raise _Wait outside the allowed windows, _Stop when the job is paused or cancelled."""
        local = self._clock().astimezone()
        if not windows.allows(local):
            opens = windows.next_open(local)
            until = (opens or local + timedelta(hours=1)).astimezone(UTC)
            raise _Wait(until)
        run.progress["status"] = "running"
        run.progress.pop("waiting_until", None)
        if not run.beat():
            raise _Stop()

    def _throttle(self, run: Run, windows: Windows, instances: int, started: float) -> None:
        """Keep to the job's rate: after *instances* since *started*, wait as long as needed."""
        rate = float(run.job.params.get("rate") or 0)
        if rate <= 0 or instances <= 0:
            return
        due = started + instances / rate
        while (left := due - time.monotonic()) > 0:
            self._sleep(min(left, 0.5))
            if not run.beat():
                raise _Stop()

    # -- from a node ------------------------------------------------------------------------

    def _address(self, name: str) -> tuple[PeerAddress, Issuer]:
        with self._index.session() as session:
            node = session.node(name)
        if node is None:
            raise NotFound(f"no node named {name!r}")
        issuer = Issuer(node.default_issuer) if node.default_issuer else self._default_issuer
        return PeerAddress(node.ae_title, node.host, node.port), issuer

    def _run_node(self, run: Run, windows: Windows) -> Outcome:
        params = run.job.params
        try:
            address, issuer = self._address(params["node"])
        except NotFound as exc:
            return Outcome(Verdict.FAILED, exc.reason)
        assert run.job.pk is not None
        self._gate(run, windows)
        try:
            if run.progress.get("phase") == Phase.LIST:
                self._list_node(run, address)
                run.progress["phase"] = str(Phase.TRANSFER)
            if run.progress.get("phase") == Phase.TRANSFER:
                self._transfer_node(run, windows, address, issuer)
                run.progress["phase"] = str(Phase.VERIFY)
            if run.progress.get("phase") == Phase.VERIFY:
                self._verify_node(run, address)
                run.progress["phase"] = str(Phase.DONE)
        except PeerError as exc:
            run.progress["status"] = f"cannot reach {params['node']}: {exc.reason}"
            return Outcome(Verdict.RETRY, exc.reason, progressed=bool(run.progress.pop("_moved", False)))
        self._finish(run)
        return Outcome(Verdict.DONE)

    def _list_node(self, run: Run, address: PeerAddress) -> None:
        params = run.job.params
        assert run.job.pk is not None
        first, last = params.get("since", ""), params.get("until", "")
        if first and last:
            day = datetime.strptime(run.progress.get("listed_through") or first, "%Y%m%d")
            if run.progress.get("listed_through"):
                day += timedelta(days=1)
            end = datetime.strptime(last, "%Y%m%d")
            while day <= end:
                text = day.strftime("%Y%m%d")
                self._list_answers(
                    run, self._peer.find(address, "STUDY", {**_STUDY_COUNTS, "00080020": {"vr": "DA", "Value": [text]}})
                )
                run.progress["listed_through"] = text
                if not run.beat():
                    raise _Stop()
                day += timedelta(days=1)
        else:
            keys = dict(_STUDY_COUNTS)
            if first or last:
                keys["00080020"] = {"vr": "DA", "Value": [f"{first}-{last}"]}
            self._list_answers(run, self._peer.find(address, "STUDY", keys, limit=10_000_000))

    def _list_answers(self, run: Run, answers: list[dict[str, Any]]) -> None:
        assert run.job.pk is not None
        items = [
            MigrationItem(
                study_instance_uid=uid,
                patient_id=dj.text(answer, "00100020"),
                study_date=dj.text(answer, "00080020"),
                there_series=_int(answer, "00201206"),
                there_instances=_int(answer, "00201208"),
            )
            for answer in answers
            if (uid := dj.text(answer, "0020000D"))
        ]
        with self._index.session(write=True) as session:
            session.migration.add_items(run.job.pk, items, self._clock())
            run.progress["studies"] = session.migration.item_counts(run.job.pk)

    def _transfer_node(self, run: Run, windows: Windows, address: PeerAddress, issuer: Issuer) -> None:
        params = run.job.params
        assert run.job.pk is not None
        while True:
            with self._index.session() as session:
                batch = session.migration.items(run.job.pk, [ItemState.PENDING], 0, _BATCH)
            if not batch:
                return
            for item in batch:
                self._gate(run, windows)
                assert item.pk is not None
                with self._index.session() as session:
                    held = session.migration.study_counts([item.study_instance_uid]).get(item.study_instance_uid)
                if held is not None and item.there_instances is not None and held[1] >= item.there_instances > 0:
                    self._record(run, item, ItemState.TRANSFERRED, {"already_here": True})
                    continue
                run.progress["current"] = item.study_instance_uid
                started = time.monotonic()

                def progress(counts: dict[str, int]) -> bool:
                    run.progress["current_counts"] = counts
                    return run.beat()

                uids = [item.study_instance_uid]
                if params.get("via") == "get":
                    counts = self._peer.get(address, "STUDY", uids, self.store_from(address, issuer), progress=progress)
                else:
                    counts = self._peer.move(address, "STUDY", uids, self._ae_title, progress=progress)
                run.progress["_moved"] = True
                run.progress["instances"] = int(run.progress.get("instances", 0)) + int(counts.get("completed", 0))
                if counts.get("status") == 0xFE00:
                    raise _Stop()  # cancelled: this study is asked for again on resume
                state = ItemState.FAILED if counts.get("failed") else ItemState.TRANSFERRED
                self._record(run, item, state, {"counts": counts})
                self._throttle(run, windows, int(counts.get("completed", 0)) + int(counts.get("warning", 0)), started)

    def store_from(self, address: PeerAddress, issuer: Issuer) -> Callable[[bytes], int]:
        """The C-STORE sub-operations of a C-GET, stored as from the node."""
        origin = Origin(
            actor=Actor.dicom(address.ae_title, address.host),
            transport="c-get",
            called_ae=self._ae_title,
            calling_ae=address.ae_title,
            default_issuer=issuer,
        )

        def store(data: bytes) -> int:
            try:
                outcome = self._ingest.store(data, origin)
            except OpenPacsError as exc:
                log.warning("C-GET from %s: an instance refused (0x%04X): %s", address, exc.dimse_status, exc.reason)
                return exc.dimse_status
            return 0xC000 if outcome.status is StoreStatus.REFUSED else 0x0000

        return store

    def _record(self, run: Run, item: MigrationItem, state: ItemState, detail: dict[str, Any]) -> None:
        assert item.pk is not None
        with self._index.session(write=True) as session:
            session.migration.update_item(item.pk, self._clock(), state=state, detail=detail)
        done = run.progress.setdefault("transferred", 0)
        run.progress["transferred"] = int(done) + 1

    def _verify_node(self, run: Run, address: PeerAddress) -> None:
        assert run.job.pk is not None
        after = 0
        states = [ItemState.TRANSFERRED, ItemState.FAILED, ItemState.MISMATCH]
        while True:
            with self._index.session() as session:
                batch = session.migration.items(run.job.pk, states, after, _BATCH)
                here = session.migration.study_counts([i.study_instance_uid for i in batch])
            if not batch:
                return
            for item in batch:
                assert item.pk is not None
                after = item.pk
                answers = self._peer.find(
                    address, "STUDY", {**_STUDY_COUNTS, "0020000D": {"vr": "UI", "Value": [item.study_instance_uid]}}
                )
                there = answers[0] if answers else {}
                there_series, there_instances = _int(there, "00201206"), _int(there, "00201208")
                here_series, here_instances = here.get(item.study_instance_uid, (0, 0))
                detail = dict(item.detail)
                if there_instances is None:
                    # the node does not count (the attribute is optional): compare instance by instance
                    there_uids = self._remote_instances(address, item.study_instance_uid)
                    there_instances = len(there_uids)
                    missing = self._missing(there_uids)
                else:
                    missing = []
                    if here_instances < there_instances:
                        missing = self._missing(self._remote_instances(address, item.study_instance_uid))
                same = here_instances == there_instances and not missing
                if same and there_series is not None:
                    same = here_series == there_series
                detail.pop("missing", None)
                if missing:
                    detail["missing"] = missing[:_MISSING_LISTED]
                    detail["missing_count"] = len(missing)
                with self._index.session(write=True) as session:
                    session.migration.update_item(
                        item.pk,
                        self._clock(),
                        state=ItemState.VERIFIED if same else ItemState.MISMATCH,
                        there_series=there_series,
                        there_instances=there_instances,
                        here_series=here_series,
                        here_instances=here_instances,
                        detail=detail,
                    )
                if not run.beat():
                    raise _Stop()

    def _remote_instances(self, address: PeerAddress, study_uid: str) -> list[str]:
        answers = self._peer.find(
            address,
            "IMAGE",
            {"0020000D": {"vr": "UI", "Value": [study_uid]}, "00080018": {"vr": "UI"}},
            limit=1_000_000,
        )
        return [uid for a in answers if (uid := dj.text(a, "00080018"))]

    def _missing(self, uids: list[str]) -> list[str]:
        with self._index.session() as session:
            present = session.migration.instances_present(uids)
        return [u for u in uids if u not in present]

    def _finish(self, run: Run) -> None:
        assert run.job.pk is not None
        with self._index.session() as session:
            counts = session.migration.item_counts(run.job.pk)
        run.progress.pop("current", None)
        run.progress.pop("current_counts", None)
        run.progress.pop("_moved", None)
        run.progress["studies"] = counts
        run.progress["status"] = (
            f"verified: {counts['verified']} studies match, {counts['mismatch']} mismatches"
            f" ({counts['instances_here']} instances here, {counts['instances_there']} there)"
        )

    # -- from a folder ----------------------------------------------------------------------

    def _run_folder(self, run: Run, windows: Windows) -> Outcome:
        folder = Path(run.job.params["path"])
        if not folder.is_dir():
            return Outcome(Verdict.FAILED, f"{folder} is not a folder the server can read")
        self._gate(run, windows)
        if run.progress.get("phase") in (Phase.LIST, Phase.TRANSFER):
            run.progress["phase"] = str(Phase.TRANSFER)
            self._import_folder(run, windows, folder)
            run.progress["phase"] = str(Phase.VERIFY)
        if run.progress.get("phase") == Phase.VERIFY:
            self._verify_folder(run, folder)
            run.progress["phase"] = str(Phase.DONE)
        self._finish(run)
        return Outcome(Verdict.DONE)

    def _import_folder(self, run: Run, windows: Windows, folder: Path) -> None:
        """Import the files in walking order, resuming after the ``files`` done already."""
        assert run.job.pk is not None
        origin = self._importer.origin()
        origin = Origin(actor=origin.actor, transport="migrate", default_issuer=origin.default_issuer, calling_ae="")
        done = int(run.progress.get("files", 0))
        counts: dict[str, int] = defaultdict(int, run.progress.get("outcomes", {}))
        failed: list[str] = list(run.progress.get("failed_files", []))
        studies: dict[str, MigrationItem] = {}
        started, since_start = time.monotonic(), 0
        for n, path in enumerate(iter_files([folder])):
            if n < done:
                continue
            if n % 20 == 0:
                self._flush_studies(run, studies)
                self._gate(run, windows)
            outcome, study_uid = self._importer.import_file(path, origin)
            kind = outcome.split(":", 1)[0]
            counts[kind] += 1
            if kind == "rejected" and len(failed) < 200:
                failed.append(f"{path}: {outcome.split(':', 1)[1]}")
            if study_uid and study_uid not in studies:
                studies[study_uid] = MigrationItem(study_uid, state=ItemState.TRANSFERRED)
            run.progress.update({"files": n + 1, "outcomes": dict(counts), "failed_files": failed})
            since_start += 1
            self._throttle(run, windows, since_start, started)
        self._flush_studies(run, studies)

    def _flush_studies(self, run: Run, studies: dict[str, MigrationItem]) -> None:
        assert run.job.pk is not None
        if studies:
            with self._index.session(write=True) as session:
                session.migration.add_items(run.job.pk, list(studies.values()), self._clock())
            studies.clear()

    def _verify_folder(self, run: Run, folder: Path) -> None:
        """Count each study's instances in the folder (headers only) and here, by SOP Instance UID."""
        assert run.job.pk is not None
        there: dict[str, dict[str, str]] = defaultdict(dict)  # study -> SOP Instance UID -> series
        meta: dict[str, tuple[str, str]] = {}
        files: dict[str, str] = {}
        for n, path in enumerate(iter_files([folder])):
            try:
                ds = pydicom.dcmread(
                    path,
                    stop_before_pixels=True,
                    specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "StudyDate"],
                )
            except Exception as exc:  # not DICOM: the import listed it as skipped or rejected
                log.debug("verification skips %s: %s", path, exc)
                continue
            study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
            if not study or not sop:
                continue
            there[study][sop] = str(ds.get("SeriesInstanceUID", ""))
            meta.setdefault(study, (str(ds.get("PatientID", "")), str(ds.get("StudyDate", ""))))
            files.setdefault(sop, str(path))
            if n % 200 == 0 and not run.beat():
                raise _Stop()
        now = self._clock()
        uids = sorted(there)
        with self._index.session(write=True) as session:
            session.migration.add_items(
                run.job.pk, [MigrationItem(u, meta[u][0], meta[u][1], ItemState.TRANSFERRED) for u in uids], now
            )
        for start in range(0, len(uids), _BATCH):
            chunk = uids[start : start + _BATCH]
            with self._index.session(write=True) as session:
                here = session.migration.study_counts(chunk)
                rows = session.migration.items_by_uid(run.job.pk, chunk)
                for uid in chunk:
                    sops = there[uid]
                    present = session.migration.instances_present(list(sops))
                    missing = [s for s in sops if s not in present]
                    held_series, _ = here.get(uid, (0, 0))
                    detail: dict[str, Any] = {}
                    if missing:
                        detail = {
                            "missing": [{"sop_instance_uid": s, "file": files[s]} for s in missing[:_MISSING_LISTED]],
                            "missing_count": len(missing),
                        }
                    item = rows.get(uid)
                    if item is None or item.pk is None:
                        continue
                    session.migration.update_item(
                        item.pk,
                        now,
                        state=ItemState.MISMATCH if missing else ItemState.VERIFIED,
                        there_series=len(set(sops.values())),
                        there_instances=len(sops),
                        here_series=held_series,
                        here_instances=len(present),
                        detail=detail,
                    )
            if not run.beat():
                raise _Stop()


class _Wait(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(until.isoformat())
        self.until = until


class _Stop(Exception):
    pass
