"""The server process: clean stop on SIGTERM and SIGINT; the change feed in commit order."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import start_server
from dimse_client import c_echo
from helpers import application
from openpacs.domain.tags import Level
from openpacs.ports.index import ChangeRecord


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    server = start_server(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}")
    assert c_echo(server.dicom_port) == 0
    started = time.monotonic()
    assert server.stop(sig) == 0
    assert time.monotonic() - started < 15
    log = server.log()
    assert f"received {sig.name}, stopping" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_change_feed_is_served_in_commit_order(tmp_path: Path, database_url: str) -> None:
    """Two writers: the second waits for the first; no row is seen while an earlier one may commit."""
    app = application(tmp_path, database_url)
    try:
        now = app.committer._clock()
        first_holds = threading.Event()
        release_first = threading.Event()
        second_done = threading.Event()

        def first() -> None:
            with app.index.session(write=True) as session:
                session.add_changes([ChangeRecord("test_first", Level.STUDY, "1.1")], now)
                first_holds.set()
                release_first.wait(10)

        def second() -> None:
            first_holds.wait(10)
            with app.index.session(write=True) as session:
                session.add_changes([ChangeRecord("test_second", Level.STUDY, "1.2")], now)
            second_done.set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        first_holds.wait(10)
        time.sleep(0.5)
        # the first transaction has a sequence number but has not committed: nothing is served,
        # and the second writer waits rather than taking a number that could commit earlier
        assert app.archive.changes_since(0, 10) == []
        assert not second_done.is_set()
        release_first.set()
        for thread in threads:
            thread.join(10)
        changes = app.archive.changes_since(0, 10)
        assert [(c.seq, c.change_type) for c in changes] == [(1, "test_first"), (2, "test_second")]
    finally:
        app.close()
