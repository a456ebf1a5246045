"""DICOM notifications the server sends, received by a pynetdicom node: Instance Availability
Notification (PS3.4 R) when a study becomes stable (every instance ONLINE) and when an
instance is rejected (UNAVAILABLE); MPPS N-CREATE and N-SET forwarded in order (PS3.4 F.7)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    InstanceAvailabilityNotification,
    ModalityPerformedProcedureStep,
)

from conftest import ServerProcess, free_port, server_on, wait_for
from web import accounts_of, http

RIS_PORT = free_port()


@pytest.fixture(scope="module")
def ris() -> Iterator[list[tuple[str, str, Dataset]]]:
    """A node that takes N-CREATE and N-SET: (operation, SOP Class UID, data set) as received."""
    received: list[tuple[str, str, Dataset]] = []
    lock = threading.Lock()

    def on_create(event: Any) -> tuple[int, Dataset]:
        with lock:
            received.append(("N-CREATE", str(event.request.AffectedSOPClassUID), event.attribute_list))
        return 0, event.attribute_list

    def on_set(event: Any) -> tuple[int, Dataset]:
        with lock:
            received.append(("N-SET", str(event.request.RequestedSOPClassUID), event.modification_list))
        return 0, event.modification_list

    ae = AE(ae_title="RIS")
    ae.add_supported_context(InstanceAvailabilityNotification)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    scp = ae.start_server(
        ("127.0.0.1", RIS_PORT), block=False, evt_handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)]
    )
    try:
        yield received
    finally:
        scp.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "OPENPACS_ROUTING__STABLE_AFTER_SECONDS": "0.5",
        "OPENPACS_ROUTING__RETRY_BASE_SECONDS": "0.2",
        "OPENPACS_WORKFLOW__AVAILABILITY_NODES": json.dumps(["ris"]),
        "OPENPACS_WORKFLOW__MPPS_FORWARD_NODES": json.dumps(["ris"]),
    }
    for running in server_on("sqlite", tmp_path_factory, env):
        running.cli("node", "add", "ris", "--ae-title", "RIS", "--host", "127.0.0.1", "--port", str(RIS_PORT))
        yield running


def _availability(received: list[tuple[str, str, Dataset]], study: str) -> list[Dataset]:
    return [d for op, cls, d in received if cls == InstanceAvailabilityNotification and d.StudyInstanceUID == study]


def test_availability_on_stable_and_on_rejection(server: ServerProcess, ris: list[tuple[str, str, Dataset]]) -> None:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    study = str(generate_uid())
    images = []
    for _ in range(2):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
        assert assoc.send_c_store(ds).Status == 0
        images.append(ds)
    assoc.release()
    (online,) = wait_for(lambda: _availability(ris, study))
    (series,) = online.ReferencedSeriesSequence
    assert sorted(i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence) == sorted(
        str(d.SOPInstanceUID) for d in images
    )
    assert {(i.InstanceAvailability, i.RetrieveAETitle) for i in series.ReferencedSOPSequence} == {
        ("ONLINE", server.ae_title)
    }
    with http(server, accounts_of(server)["admin"]) as client:
        rejected = client.post(
            "/api/qa/reject",
            json={"level": "instance", "uid": str(images[0].SOPInstanceUID), "reason": "blurred", "code": "113001"},
        )
        assert rejected.status_code == 200, rejected.text
    notes = wait_for(lambda: len(_availability(ris, study)) >= 2 and _availability(ris, study))
    unavailable = notes[-1].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert [(i.ReferencedSOPInstanceUID, i.InstanceAvailability) for i in unavailable] == [
        (images[0].SOPInstanceUID, "UNAVAILABLE")
    ]


def test_mpps_is_forwarded_in_order(server: ServerProcess, ris: list[tuple[str, str, Dataset]]) -> None:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    uid = str(generate_uid())
    created = Dataset()
    created.PatientID, created.PatientName, created.Modality = "FWD1", "Forward^Me", "CT"
    created.ScheduledStepAttributesSequence = []
    created.PerformedProcedureStepStatus = "IN PROGRESS"
    assert assoc.send_n_create(created, ModalityPerformedProcedureStep, uid)[0].Status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0
    assoc.release()

    def forwarded() -> list[tuple[str, str]]:
        return [(op, d.PerformedProcedureStepStatus) for op, cls, d in ris if cls == ModalityPerformedProcedureStep]

    assert wait_for(lambda: len(forwarded()) >= 2 and forwarded()) == [
        ("N-CREATE", "IN PROGRESS"),
        ("N-SET", "COMPLETED"),
    ]
