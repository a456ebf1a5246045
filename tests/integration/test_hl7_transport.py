"""The HL7 MLLP listener of a running server: every real message of ../shared/testdata/hl7 sent
with `mllp_send --loose` gets an ACK on one connection; frames split across reads and
several in one read; broken, truncated and oversized frames get AR or are logged and
the listener stays up; the message store answers by REST and CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SHARED, ServerProcess, require, start_server
from web import accounts_of

START, END = b"\x0b", b"\x1c\x0d"
A08 = (
    b"MSH|^~\\&|RIS|HOSP|OPENPACS|HOSP|20261128120000||ADT^A08^ADT_A01|MSG0001|P|2.5.1||||||UNICODE UTF-8\r"
    b"EVN|A08|20261128120000\r"
    b"PID|||HL7PAT1^^^HOSP^MR||M\xc3\xbcller^J\xc3\xbcrgen^^Jr^Dr||19700101|M\r"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("hl7")
    running = start_server(
        base / "data", f"sqlite:///{base / 'index.sqlite3'}", extra_env={"OPENPACS_HL7__MAX_MESSAGE_BYTES": "100000"}
    )
    try:
        yield running
    finally:
        running.stop()


def _exchange(port: int, *chunks: bytes, answers: int = 1) -> list[bytes]:
    """Send the chunks as they are (one send each), and read *answers* framed replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            sock.sendall(chunk)
        buffer = b""
        while buffer.count(END) < answers:
            data = sock.recv(65536)
            if not data:
                break
            buffer += data
    return [f.lstrip(START) for f in buffer.split(END) if f.strip()]


def _msa(reply: bytes) -> list[str]:
    """MSA's fields, split on the ACK's own field separator (MSH-1)."""
    segment = next(s for s in reply.split(b"\r") if s.startswith(b"MSA"))
    return segment.decode().split(chr(reply[3]))


def test_every_real_message_gets_an_ack_on_one_connection(server: ServerProcess, tmp_path: Path) -> None:
    folder = SHARED / "testdata" / "hl7"
    require(folder.is_dir(), f"{folder}")
    files = sorted(folder.rglob("*.hl7"))
    assert len(files) > 100
    # one file of every message; the byte order marks some files start with are taken off here
    # (mllp_send --loose splits on MSH|^~\&|), the listener's own tolerance of them is tested below
    joined = b"\n".join(f.read_bytes().removeprefix(b"\xef\xbb\xbf").strip() for f in files)
    sent = joined.count(b"MSH|^~\\&|")
    (tmp_path / "all.hl7").write_bytes(joined)
    mllp_send = Path(sys.executable).parent / "mllp_send"
    result = subprocess.run(
        [str(mllp_send), "--loose", "--file", str(tmp_path / "all.hl7"), "--port", str(server.hl7_port), "127.0.0.1"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    acks = [line for line in result.stdout.split(b"\r") if line.startswith(b"MSA|")]
    assert len(acks) == sent, result.stdout.decode(errors="replace")[-2000:]
    refused = [a for a in acks if not a.startswith((b"MSA|AA|", b"MSA|CA|"))]
    assert refused == [], refused  # every real message is taken (the consumer decides what it means)
    # enhanced mode (MSH-15 AL, SU or ER) gets a commit ACK, original mode an application ACK
    enhanced = [m for m in joined.split(b"MSH|^~\\&|")[1:] if m.split(b"\r")[0].split(b"\n")[0].split(b"|")[12:13]
                in ([b"AL"], [b"SU"], [b"ER"])]  # fmt: skip
    assert sum(a.startswith(b"MSA|CA|") for a in acks) == len(enhanced) > 0
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        counts = http.get("/api/hl7/messages", params={"limit": 1}).json()["counts"]
        # stored, then applied or skipped by the consumer (or waiting for it): none refused
        assert sum(n for status, n in counts.items() if status != "rejected") >= sent, counts


def test_frames_split_and_joined_and_the_ack_mirrors_the_message(server: ServerProcess) -> None:
    framed = START + A08 + END
    # split at every few bytes in separate sends, then two frames in one send
    pieces = [framed[n : n + 7] for n in range(0, len(framed), 7)]
    (first,) = _exchange(server.hl7_port, *pieces)
    assert _msa(first)[:3] == ["MSA", "AA", "MSG0001"]
    msh = first.split(b"\r")[0].decode().split("|")
    assert (msh[2], msh[3], msh[4], msh[5]) == ("OPENPACS", "HOSP", "RIS", "HOSP")  # sender and receiver mirrored
    assert msh[8] == "ACK^A08^ACK" and msh[11] == "2.5.1"
    second = A08.replace(b"MSG0001", b"MSG0002")
    third = b"\xef\xbb\xbf" + A08.replace(b"MSG0001", b"MSG0003").replace(b"\r", b"\r\n") + b"  \n"
    replies = _exchange(server.hl7_port, START + second + END + START + third + END, answers=2)
    assert [_msa(r)[1:3] for r in replies] == [["AA", "MSG0002"], ["AA", "MSG0003"]]


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"PID|||1\rEVN|A08\r", "does not start with an MSH segment"),
        (b"MSH#^~\\&#RIS#HOSP#A#B#20261128##ADT^A08#X1#P#2.5.1\r", ""),  # another separator: read as such
        (b"MSH|^~\\&|RIS|HOSP|A|B|20261128||ADT^A08|X2|P|9.9\r", "version '9.9' is not supported"),
        (b"MSH|^~\\&|RIS|HOSP|A|B|20261128||ADT^A08|X3|Q|2.5.1\r", "processing ID 'Q'"),
        (b"MSH|^~\\&|RIS|HOSP|A|B|20261128||ADT^A08||P|2.5.1\r", "MSH-10"),
        (b"MSHA^~\\&A", "not a field separator"),
        (b"MSH|^~\\&|RIS|HOSP|A|B|20261128||ADT^A08|X4|P|2.5.1||||||KLINGON\r", "character set 'KLINGON'"),
    ],
)
def test_broken_messages_get_ar_with_the_reason_and_are_kept(server: ServerProcess, message: bytes, why: str) -> None:
    (reply,) = _exchange(server.hl7_port, START + message + END)
    msa = _msa(reply)
    if not why:
        assert msa[1] == "AA"
        return
    assert msa[1] == "AR", reply
    err = next(s for s in reply.split(b"\r") if s.startswith(b"ERR")).decode()
    assert why in err
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        rejected = http.get("/api/hl7/messages", params={"status": "rejected", "limit": 1000}).json()["messages"]
        assert any(why in m["error"] for m in rejected)


def test_oversized_and_truncated_frames_never_stop_the_listener(server: ServerProcess) -> None:
    big = START + b"MSH|^~\\&|RIS|HOSP|A|B|20261128||ADT^A08|BIG|P|2.5.1\r" + b"NTE|" + b"x" * 200_000 + END
    (reply,) = _exchange(server.hl7_port, big)
    assert _msa(reply)[1] == "AR" and b"larger than the limit" in reply
    # a frame cut short by the next one: the first is dropped (logged), the second answered
    cut = START + A08[:40] + START + A08.replace(b"MSG0001", b"MSG0004") + END
    (after,) = _exchange(server.hl7_port, cut)
    assert _msa(after)[1:3] == ["AA", "MSG0004"]
    # a connection that ends inside a frame, then garbage: the listener goes on
    with socket.create_connection(("127.0.0.1", server.hl7_port), timeout=10) as sock:
        sock.sendall(START + A08[:30])
    with socket.create_connection(("127.0.0.1", server.hl7_port), timeout=10) as sock:
        sock.sendall(b"\x00\xff" * 1000)
    (last,) = _exchange(server.hl7_port, START + A08.replace(b"MSG0001", b"MSG0005") + END)
    assert _msa(last)[1:3] == ["AA", "MSG0005"]
    log = server.wait_for_log("ended inside a frame", "cut short by the next one")
    assert "ended inside a frame" in log and "cut short by the next one" in log


def test_the_store_is_searched_and_shown_by_rest_and_cli(server: ServerProcess) -> None:
    (reply,) = _exchange(server.hl7_port, START + A08.replace(b"MSG0001", b"MSG0006") + END)
    assert _msa(reply)[1] == "AA"
    with httpx.Client(base_url=server.base_url, timeout=30, headers=accounts_of(server)["admin"].bearer) as http:
        found = http.get("/api/hl7/messages", params={"patient_id": "HL7PAT1", "control_id": "MSG0006"}).json()
        (message,) = found["messages"]
        assert (message["message_type"], message["trigger"], message["sending_application"]) == ("ADT", "A08", "RIS")
        assert message["charset"] == "UNICODE UTF-8" and message["status"] in ("received", "processed")
        shown = http.get(f"/api/hl7/messages/{message['id']}").json()
        pid = next(s for s in shown["segments"] if s["name"] == "PID")
        assert pid["fields"]["PID-5"] == "Müller^Jürgen^^Jr^Dr"
        assert "Müller" in shown["raw"]
        assert http.get("/api/hl7/messages/999999").status_code == 404
        assert http.get("/api/hl7/messages", params={"status": "nonsense"}).status_code == 400
        text = http.get("/api/hl7/messages", params={"text": "Jürgen"}).json()["messages"]
        assert {m["control_id"] for m in text} >= {"MSG0006"}
    listed = json.loads(server.cli("hl7", "messages", "--patient-id", "HL7PAT1", "--json").stdout)
    assert "MSG0006" in {m["control_id"] for m in listed["messages"]}
    shown_cli = server.cli("hl7", "show", str(message["id"])).stdout
    assert "PID-5" in shown_cli and "Müller^Jürgen^^Jr^Dr" in shown_cli
