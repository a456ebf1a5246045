"""MLLP framing on bytes: split frames, several in one read, noise, oversized and truncated frames."""

from __future__ import annotations

from openpacs.hl7.mllp import END, START, Frame, FrameDecoder, frame

A = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5.1\rPID|||1\r"
B = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|2|P|2.5.1\r"


def test_one_frame_and_several_in_one_read() -> None:
    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(frame(A)) == [Frame(A)]
    assert decoder.feed(frame(A) + b"\r\n" + frame(B)) == [Frame(A), Frame(B)]


def test_a_frame_split_at_every_byte_comes_out_whole() -> None:
    decoder = FrameDecoder(1 << 20)
    found: list[Frame] = []
    for byte in frame(A) + frame(B):
        found += decoder.feed(bytes([byte]))
    assert found == [Frame(A), Frame(B)]
    assert decoder.pending == b""


def test_the_end_marker_split_between_reads() -> None:
    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(START + A + b"\x1c") == []
    assert decoder.feed(b"\r" + frame(B)) == [Frame(A), Frame(B)]


def test_an_oversized_frame_is_reported_once_and_skipped() -> None:
    decoder = FrameDecoder(100)
    big = START + b"X" * 60
    assert decoder.feed(big) == []
    assert decoder.feed(b"Y" * 60) == [Frame(b"", too_large=True)]
    assert decoder.feed(b"Z" * 500 + END + frame(B[:90])) == [Frame(B[:90])]


def test_a_frame_cut_short_by_the_next_one_is_reported_truncated() -> None:
    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(START + A[:20] + frame(B)) == [Frame(A[:20], truncated=True), Frame(B)]
    assert decoder.feed(START + b"MSH|half") == []
    assert decoder.pending == b"MSH|half"


def test_noise_outside_frames_is_dropped() -> None:
    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(b"\r\n  garbage" + frame(A) + b"\n") == [Frame(A)]
